"""The config file's JSON Schema (draft 2020-12), for editors and validators.

pydantic writes the schema from the models in ``mlpbp.run.config``; this module makes it strict
JSON Schema (pydantic leaves the bounds of some annotated numbers as ``ge``/``gt``/``le``/``lt``,
keywords a validator ignores) and gives every key a description and its default."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mlpbp.run.config import Config, section_model

# One line per key, as a user reads it in an editor's hover. A key without one fails the tests.
DESCRIPTIONS = {
    "seed": "One seed for the split, the initial weights and the shuffling: same seed, same run.",
    "data": "Where the rows come from and how they are split and scaled.",
    "data.dataset": "A bundled (digits, iris) or generated (xor, quadrants, moons, circles, spirals, gaussians,"
    " sine) dataset; exactly one of dataset and path.",
    "data.path": "A table: CSV/TSV with a header row (.csv, .txt, .tsv), Parquet, NPZ with arrays X and y, or "
    "an NPY pair (the X file or a folder of X.npy, y.npy); a relative path is taken from the config file's "
    "folder. Exactly one of dataset and path.",
    "data.target": "The column to predict, or a list of columns for multi-output regression (default: the last "
    "column; NPZ/NPY: y).",
    "data.task": "classification or regression (default: inferred and said why: text, booleans and at most "
    "max_classes distinct integers classify, other numbers regress).",
    "data.label_separator": "Multi-label classification: the target column's cells are label sets split by "
    "this, e.g. '|' for 'news|sport' (null: one label per row). Without it, several 0/1 target columns with "
    "task: classification or loss binary_cross_entropy are one label each.",
    "data.delimiter": "The CSV delimiter, one character (default: sniffed from the first lines among , ; tab |).",
    "data.features": "The feature columns (default: every column but the targets, id and drop).",
    "data.drop": "Columns to ignore.",
    "data.id": "An id column: never a feature; predict copies it into its output.",
    "data.weight": "A column of per-row weights (e.g. survey weights; never a feature): the loss, its "
    "gradient and curvature, every metric and early stopping use the weighted mean, a row of weight 2 "
    "counting as that row twice. Each cell must be a finite number >= 0 (null: every row weighs 1). In a "
    "folder of .npy files, the file NAME.npy beside X.npy.",
    "data.columns": "Column kinds that override the inferred ones: numeric, categorical (one-hot or embedded: "
    "data.categorical), date (days "
    "since 1970-01-01), time (time of day, cyclic), datetime (days plus cyclic time of day) or drop.",
    "data.max_classes": "A numeric target with more distinct values than this is regression.",
    "data.max_categories": "A one-hot column with more levels is refused, and so is any categorical column with "
    "more distinct values than this and than half the training rows (it is usually a name or an ID: drop it or "
    "make it the id).",
    "data.missing": "Missing cells: impute (default: training median; a 'missing' category for categorical "
    "columns; a note names each column and count), error (name them) or drop_rows.",
    "data.handle_unknown": "A category that training never saw (in validation/test rows, predict, evaluate): "
    "infrequent (default: the column's 'infrequent' level, all zeros without one), ignore (all zeros) or error.",
    "data.na_values": "Cells that mean missing, besides pandas' default list ('', NA, N/A, NaN, null, None, "
    "#N/A, ...): e.g. ['?', '-'].",
    "data.date_format": "A strptime format for text dates and times (e.g. '%d/%m/%Y'), or a mapping column -> "
    "format (null: the recognised formats, see docs/how-to/tabular.md).",
    "data.bad_lines": "CSV lines with the wrong number of fields: error (name the first) or skip (counted in a note).",
    "data.min_frequency": "Categories with fewer training rows share one 'infrequent' level (1: keep every category).",
    "data.numeric": "Numeric columns: auto (standardize; when skewed, log1p if never negative and skewed right, "
    "else quantile; a regression target more linear in the column than in its log1p keeps it standardized), "
    "standardize, quantile (to a normal), log1p (sign(x)·log(1+|x|), then standardized), "
    "robust (median and IQR), none, or ple (piecewise-linear encoding, Gorishniy et al. 2022: one input column per "
    "quantile bin, clip((x - b[t-1]) / (b[t] - b[t-1]), 0, 1)), or periodic (the column as auto transforms it, "
    "then sin(2π c x) and cos(2π c x) for trainable frequencies c, Gorishniy et al. 2022; see "
    "data.periodic_frequencies); or a mapping column -> transform (the rest: auto).",
    "data.ple_bins": "The quantile bins of a data.numeric: ple column (fewer when values repeat), each one input "
    "column.",
    "data.ple_embedding": "A learned embedding of each data.numeric: ple column: its bins' columns through a "
    "linear layer of this width and a ReLU of their own (the paper's PLE-LR) before the hidden layers (null: "
    "the encoding goes to the first hidden layer as it is).",
    "data.periodic_frequencies": "The trainable frequencies c_1..c_k of each data.numeric: periodic column: "
    "[sin(2π c_i x), cos(2π c_i x)] for i = 1..k, 2k values per column.",
    "data.periodic_sigma": "The standard deviation (> 0) of the normal the periodic frequencies start from, in "
    "cycles per standard deviation of the (transformed) column: the most important setting (the paper tunes it "
    "from 0.01 to 100); a larger sigma starts from faster waves.",
    "data.periodic_embedding": "The width of the linear layer and ReLU of its own that each data.numeric: periodic "
    "column's sines and cosines go through (the paper's PLR embedding); null: the 2k values go to the first "
    "hidden layer as they are.",
    "data.categorical": "Categorical columns: auto (one-hot up to 16 levels, counted after rare categories share "
    "the infrequent level; a learned embedding above), onehot or embedding (each level a learned vector, an "
    "unseen level a reserved row that stays zero); or a mapping column -> encoding (the rest: auto).",
    "data.embedding_dim": "The width of an embedded column's vectors, for every embedded column or as a mapping "
    "column -> width (null: fastai's rule min(600, round(1.6·levels^0.56))).",
    "data.target_transform": "Regression targets: standardize, log1p, quantile or none (null: standardize, or "
    "none when standardize is false); metrics are in the target's own units.",
    "data.test_path": "A separate table whose rows are the test split (test metrics and plots); relative to the "
    "config file's folder.",
    "data.test_fraction": "Share of rows held out for the final metrics (0: report training metrics).",
    "data.validation_fraction": "Share of rows held out for the validation loss and early stopping.",
    "data.standardize": "Scale inputs (and regression targets) to mean 0, variance 1, fitted on the training "
    "split only and stored in model.npz.",
    "data.n_samples": "Rows to generate (generated datasets only).",
    "data.noise": "Noise of a generated dataset (null: the generator's default, 0 for xor, else 0.1).",
    "model": "The network: hidden widths, activation, loss and initialisation.",
    "model.hidden": "Hidden layer widths; the input and output widths come from the data.",
    "model.dropout": "Inverted dropout after each hidden activation of model.hidden, the probability of zeroing "
    "a unit in training (0: none; in [0, 1)). Predictions run in evaluation mode, without it.",
    "model.norm": "Normalisation before each hidden activation of model.hidden: none, batch (batch_norm: batch "
    "statistics in training, running ones in evaluation) or layer (layer_norm over the features).",
    "model.layers": "Every hidden module in order, instead of model.hidden: names (relu, batch_norm, ...) or "
    "one-key mappings with options ({linear: 128}, {dropout: 0.1}, {residual: [...]}, {add: [...]}, "
    "{concat: [...]}); the output linear layer is appended.",
    "model.activation": "The activation after every hidden layer (the output layer is linear); the enum lists "
    "every registered one.",
    "model.loss": "The loss of the output, e.g. cross_entropy (softmax) or square (null: cross_entropy for "
    "classification, square for regression).",
    "model.delta": "huber: the threshold δ where the loss turns from squared (|r| <= δ) to linear (null: 1.0 "
    "with huber; another loss refuses it); saved in model.npz.",
    "model.alpha": "quantile: the quantile α in (0, 1) the pinball loss fits (null: 0.5, the median, with "
    "quantile; another loss refuses it); saved in model.npz.",
    "model.init": "Weight initialisation, e.g. he or glorot (null: He for kinked activations such as relu, "
    "else Glorot).",
    "train": "The optimiser and its schedule.",
    "train.epochs": "Passes over the training rows.",
    "train.batch_size": "Rows per gradient step (1: per-example SGD; null: 32, or every training row for newton_cg).",
    "train.optimizer": "The optimiser that takes the steps (sgd: stochastic gradient descent; adam, adamw; "
    "lbfgs: full-batch L-BFGS; newton_cg: Hessian-free Newton; the enum lists every registered one).",
    "train.max_iter": "lbfgs: L-BFGS iterations per epoch (each epoch starts a fresh memory).",
    "train.tolerance": "lbfgs: stop once the largest gradient component is at most this.",
    "train.history_size": "lbfgs: curvature pairs (s, y) kept.",
    "train.curvature": "newton_cg: the products CG runs on, gauss_newton (positive semi-definite) or hessian.",
    "train.damping": "newton_cg: the initial Levenberg-Marquardt damping λ of (C + λI)p = −∇J, then adapted.",
    "train.cg_max_iter": "newton_cg: curvature products per conjugate-gradient solve at most.",
    "train.sharpness_every": "Every N epochs, the top Hessian eigenvalue on sharpness_rows training rows, "
    "beside 2/learning_rate (null: off).",
    "train.sharpness_rows": "Rows of the fixed seeded sample the sharpness is measured on.",
    "train.class_weight": "Per-example loss weights by class: null, balanced (n / (classes x count), as "
    "scikit-learn), or a mapping {label: weight} (unlisted classes weigh 1).",
    "train.beta1": "adam/adamw: decay of the running mean of the gradient.",
    "train.beta2": "adam/adamw: decay of the running mean of the squared gradient.",
    "train.eps": "adam/adamw: added to the root of the squared-gradient mean, against division by 0.",
    "train.learning_rate": "The step size α of θ := θ − α∇J, the start of a schedule (null: the optimizer's "
    "default, 0.001 for adam and adamw, else 0.05).",
    "train.momentum": "Heavy-ball momentum μ (0: plain SGD).",
    "train.nesterov": "Nesterov momentum (needs momentum > 0).",
    "train.weight_decay": "L2 decay: the gradient gains weight_decay·θ, as in PyTorch's SGD; adamw decays the "
    "weights apart from the gradient (null: the optimizer's default, 0.01 for adamw, else 0).",
    "train.schedule": "How the learning rate changes per epoch, e.g. constant, step (step_size, gamma), cosine "
    "or inverse_time (decay); the enum lists every registered one.",
    "train.step_size": "step schedule: epochs between decays; plateau: epochs without a better validation loss "
    "before a decay.",
    "train.gamma": "step and plateau schedules: the factor of each decay.",
    "train.decay": "inverse_time schedule: α / (1 + decay·epoch).",
    "train.warmup": "Epochs at the start whose learning rate rises linearly to the schedule's (0: none).",
    "train.patience": "Early stopping: epochs without a better validation loss before stopping, keeping "
    "the best epoch's weights and batch_norm running statistics (null: off).",
    "train.threads": "BLAS threads: auto (chosen per shape and machine) or a number; OPENBLAS_NUM_THREADS "
    "and OMP_NUM_THREADS win when set.",
    "train.dtype": "The floating-point type of the network and data: float32 (fast), float64 (for checks).",
    "output": "Where the run's files go.",
    "output.dir": "Output directory; a relative path is taken from the config file's folder (null: "
    "runs/<config file name> in the working directory).",
    "output.tensorboard": "Write TensorBoard event files into the output directory: every epoch's losses, "
    "metrics, learning rate and sharpness (needs mlpbp[tensorboard]).",
    "output.histogram_every": "With tensorboard: histograms of each layer's weights and gradients every N "
    "epochs (null: none).",
    "tune": "mlpbp tune's search: the metric, the pruner and the space (mlpbp train ignores this section).",
    "tune.metric": "The epoch-table column to optimise, e.g. val_loss or val_accuracy; each trial's value is "
    "the one of the weights the run keeps (the last epoch's, or the best under early stopping).",
    "tune.direction": "minimize or maximize (null: inferred from the metric, losses fall and accuracies rise).",
    "tune.pruner": "Stop unpromising trials early from their per-epoch values: median, hyperband or none.",
    "tune.warmup_epochs": "Epochs every trial trains before the pruner may stop it (null: a quarter of train.epochs).",
    "tune.space": "The search space: dotted config keys, each a range {low, high, log, step} (integers for an "
    "integer key) or {choices: [...]}, e.g. train.learning_rate: {low: 1.0e-4, high: 0.1, log: true}.",
}

# pydantic's names for bounds it did not translate, and JSON Schema's.
_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def _strict_bounds(node: Any) -> Any:
    if isinstance(node, dict):
        return {_BOUNDS.get(k, k): _strict_bounds(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_strict_bounds(v) for v in node]
    return node


def _default(field) -> Any:
    value = field.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _section_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    sub, keyed = section_model(model.model_fields[name].annotation)
    return None if keyed else sub  # a mapping's entries are described by the mapping's key


def json_schema() -> dict:
    """The config's JSON Schema: standard bound keywords, and every key with a description
    and (unless required) its default."""
    schema = _strict_bounds(Config.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mlpbp run config"
    defs = schema.get("$defs", {})

    def describe(model: type[BaseModel], props: dict, prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            prop = props[name]
            prop["description"] = DESCRIPTIONS.get(key, "")
            if not field.is_required():
                prop["default"] = _default(field)
            sub = _section_model(model, name)
            if sub is not None:
                describe(sub, defs[sub.__name__]["properties"], f"{key}.")

    describe(Config, schema["properties"], "")
    # The rule pydantic checks in code: exactly one of dataset and path.
    defs["DataConfig"]["oneOf"] = [
        {"required": ["dataset"], "properties": {"path": {"type": "null"}}},
        {"required": ["path"], "properties": {"dataset": {"type": "null"}}},
    ]
    return schema
