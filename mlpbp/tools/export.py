"""A trained model as one ONNX graph, preprocessing included, built with ``onnx.helper``.

Inputs: one tensor of shape [N, 1] per raw column, named as the training file's header wrote the
column (spaces around the name included: the reader strips them, the graph's input keeps them),
so a deployment feeds the columns it reads by name: float32 for numbers (dates: days since
1970-01-01; NaN for a missing value when the model imputes), strings for categories, matched as
``mlpbp predict`` matches them: spaces around a cell ignored, a missing-value token (pandas'
list and data.na_values) the missing category. The graph fills missing values, one-hot encodes
categories (an embedded column's levels become codes, whose rows the network's embedding
Gathers), concatenates, standardises ((x − mean) / scale, the training split's), runs every
layer (Gemm, activation), and ends in

- classifiers: ``label`` (string [N], the class name) and, for cross-entropy networks,
  ``probabilities`` (float32 [N, classes], softmax, columns in the order of the classes);
- regressors: ``prediction`` (float32 [N, outputs], in the target's own units).

Weights are stored as float32 (a float64-trained model is rounded once). Opset ``OPSET``; a graph
with a categorical column ``STRING_OPSET`` (its cells are matched by RegexFullMatch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpbp.data.cells import DAY_S, NA_VALUES
from mlpbp.engine.activations import ACTIVATIONS, ELU_ALPHA, LEAKY_SLOPE
from mlpbp.engine.network import MLP
from mlpbp.errors import MlpbpError
from mlpbp.io import atomic_open
from mlpbp.results import Result, asked
from mlpbp.run.model import TrainedModel
from mlpbp.run.model_file import load_model

OPSET = 17
IR_VERSION = 8  # the oldest IR that carries opset 17: runtimes from onnxruntime 1.11 on load it
# A graph with a categorical column matches its cells with RegexFullMatch (opset 20, IR 9:
# onnxruntime 1.17 on), so that spaces around a cell are ignored as the CSV reader ignores them.
STRING_OPSET = 20
STRING_IR_VERSION = 9
ML_OPSET = 3  # ai.onnx.ml
MISSING_CATEGORY = "missing"  # the category `data.missing: impute` files an empty cell under
# What the reader strips around a cell (pyarrow's utf8_trim_whitespace) and a header name
# (str.strip): the same set, Unicode White_Space; tests/tools check it against both.
WHITESPACE = (0x9, 0xA, 0xB, 0xC, 0xD, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B))
WHITESPACE += (0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
_SPACES = "[" + "".join(f"\\x{{{c:x}}}" for c in WHITESPACE) + "]*"
# pyarrow's spellings of a boolean cell, which predict reads as the category true or false when
# every cell of the column is one
_BOOLEANS = {"true": ("1", "True", "TRUE", "true"), "false": ("0", "False", "FALSE", "false")}

# Each activation as ONNX nodes: (op type, attributes). identity needs none.
ACTIVATION_OPS = {
    "identity": None,
    "relu": ("Relu", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": LEAKY_SLOPE}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "softplus": ("Softplus", {}),
    "elu": ("Elu", {"alpha": ELU_ALPHA}),
    "sin": ("Sin", {}),
}


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise MlpbpError("ONNX export needs the onnx package: pip install 'mlpbp[onnx]'") from None
    return onnx


def to_onnx(model: TrainedModel, name: str = "mlpbp"):
    """The ONNX ModelProto of ``model`` (checked with onnx.checker)."""
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    net = model.net
    # by the function's own name, so an alias (logistic for sigmoid) exports as what it is
    fn_name = ACTIVATIONS[net.activation].name if net.activation in ACTIVATIONS else net.activation
    if isinstance(net, MLP) and fn_name not in ACTIVATION_OPS:
        raise MlpbpError(
            f"cannot export activation {net.activation!r} to ONNX (exportable: {', '.join(ACTIVATION_OPS)})"
        )
    f32 = np.float32
    inits, nodes = [], []

    def const(cname: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), cname))
        return cname

    notes: list[str] = []
    inputs, encoded = _encode_inputs(model, const, nodes, notes)
    nodes.append(helper.make_node("Concat", encoded, ["features"], axis=1, name="concat_features"))
    pre = model.x_scaler
    nodes.append(helper.make_node("Sub", ["features", const("x_mean", pre.mean.astype(f32))], ["x_centered"]))
    nodes.append(helper.make_node("Div", ["x_centered", const("x_scale", pre.scale.astype(f32))], ["h0"]))
    if isinstance(net, MLP):
        h = "h0"
        linears = net.linears
        act = ACTIVATION_OPS[fn_name]
        for r, layer in enumerate(linears, start=1):
            W = const(f"W{r}", layer.params["W"].astype(f32))  # (out, in): Gemm with transB
            b = const(f"b{r}", layer.params["b"].astype(f32))
            z = f"z{r}"
            nodes.append(helper.make_node("Gemm", [h, W, b], [z], transB=1, name=f"linear{r}"))
            h = z
            if r < len(linears) and act is not None:
                op, attrs = act
                nodes.append(helper.make_node(op, [z], [f"a{r}"], name=f"{net.activation}{r}", **attrs))
                h = f"a{r}"
    else:
        h = _graph_nodes(net, "h0", const, nodes, helper)
    outputs = []
    # A model that does not impute scores no row with a missing cell (predict leaves its cells
    # empty under drop_rows, refuses it under error); its graph would give such a row NaN
    # outputs but a label (ArgMax of NaN: the first class), and a row whose missing cell is a
    # category a real prediction. So those rows get the label "" and NaN outputs.
    holes = _missing_rows(model, inputs, const, nodes)

    def unless_missing(value: str, out: str, fill) -> str:
        if holes is None:
            return value
        mask = holes
        if fill.dtype == object:  # the label, [N]
            nodes.append(
                helper.make_node(
                    "Squeeze", [holes, const("row_missing_axis", np.array([1], np.int64))], ["row_missing_n"]
                )
            )
            mask = "row_missing_n"
        nodes.append(helper.make_node("Where", [mask, const(f"{out}_missing", fill), value], [out]))
        return out

    if model.task == "classification":
        nodes.append(helper.make_node("ArgMax", [h], ["class_index"], axis=1, keepdims=0))
        classes = np.array(model.classes, dtype=object)
        labels = helper.make_tensor("classes", TensorProto.STRING, [len(classes)], [c.encode() for c in classes])
        inits.append(labels)
        label = "label" if holes is None else "class_label"
        nodes.append(helper.make_node("Gather", ["classes", "class_index"], [label], axis=0))
        unless_missing(label, "label", np.array([""], dtype=object))
        outputs.append(helper.make_tensor_value_info("label", TensorProto.STRING, ["N"]))
        if net.loss_name == "cross_entropy":
            p = "probabilities" if holes is None else "class_probabilities"
            nodes.append(helper.make_node("Softmax", [h], [p], axis=1))
            unless_missing(p, "probabilities", np.array([np.nan], f32))
            outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(classes)]))
    else:
        transforms = getattr(model.y_scaler, "transforms", None)
        if transforms is not None:  # back to the target's units: unscale, then each output's inverse transform
            nodes.append(helper.make_node("Mul", [h, const("y_scale", model.y_scaler.scale.astype(f32))], ["y_scaled"]))
            nodes.append(
                helper.make_node("Add", ["y_scaled", const("y_mean", model.y_scaler.mean.astype(f32))], ["y_z"])
            )
            columns = []
            for k, t in enumerate(transforms):
                nodes.append(
                    helper.make_node(
                        "Slice",
                        [
                            "y_z",
                            const(f"y{k}_start", np.array([k], np.int64)),
                            const(f"y{k}_end", np.array([k + 1], np.int64)),
                            const(f"y{k}_axes", np.array([1], np.int64)),
                        ],
                        [f"y{k}_z"],
                    )
                )
                columns.append(_transform_nodes(f"y{k}_z", t, f"y{k}_inv", const, nodes, inverse=True))
            nodes.append(helper.make_node("Concat", columns, ["prediction"], axis=1))
        elif model.y_scaler is not None:  # back to the target's units
            nodes.append(helper.make_node("Mul", [h, const("y_scale", model.y_scaler.scale.astype(f32))], ["y_scaled"]))
            nodes.append(
                helper.make_node("Add", ["y_scaled", const("y_mean", model.y_scaler.mean.astype(f32))], ["prediction"])
            )
        else:
            nodes.append(helper.make_node("Identity", [h], ["prediction"]))
        if holes is not None:  # the node that wrote the prediction writes it for unless_missing
            node = next(n for n in nodes if "prediction" in n.output)
            node.output[list(node.output).index("prediction")] = "raw_prediction"
            unless_missing("raw_prediction", "prediction", np.array([np.nan], f32))
        outputs.append(helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["N", net.widths[-1]]))
    inner = {o for node in nodes for o in node.output} | {t.name for t in inits}
    clash = [i.name for i in inputs if i.name in inner]
    if clash:  # an input and a value inside the graph may not share a name
        raise MlpbpError(
            f"cannot export: column {clash[0]!r} has the name of a value inside the ONNX graph; rename the column"
        )
    used = {n for node in nodes for n in node.input}  # a periodic module's frequencies go in as B
    graph = helper.make_graph(nodes, name, inputs, outputs, [t for t in inits if t.name in used])
    strings = any(c.kind == "categorical" for c in model.x_scaler.columns)
    proto = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", STRING_OPSET if strings else OPSET),
            helper.make_opsetid("ai.onnx.ml", ML_OPSET),
        ],
        producer_name="mlpbp",
        doc_string=f"{model.task} MLP {'-'.join(map(str, net.widths))} ({net.activation}); inputs: one float32 "
        "[N, 1] tensor per feature column, named as the column",
    )
    proto.ir_version = STRING_IR_VERSION if strings else IR_VERSION
    # ONNX metadata are strings: a multi-output regression's targets comma-separated
    props = {"target": ",".join(model.target_names)} if model.target_name else {}
    renamed = {i.name: c.name for i, c in zip(inputs, model.x_scaler.columns) if i.name != c.name}
    if renamed:  # inputs named as the file's header wrote them: the columns they are
        props["columns"] = json.dumps(renamed)
    if notes:  # what the graph does otherwise than predict, one line each
        props["notes"] = "\n".join(notes)
    if props:
        helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _piecewise_linear(x: str, xk: np.ndarray, yk: np.ndarray, prefix: str, const, nodes) -> str:
    """Nodes computing np.interp(x, xk, yk) for x [N, 1]: y₀ + Σₖ clip((x − xₖ)/(xₖ₊₁ − xₖ), 0, 1)·(yₖ₊₁ − yₖ),
    the same piecewise-linear function, clamped to the end values."""
    from onnx import helper

    f32 = np.float32
    if xk.size < 2:
        nodes.append(helper.make_node("Mul", [x, const(f"{prefix}_zero", np.zeros(1, f32))], [f"{prefix}_z0"]))
        nodes.append(
            helper.make_node("Add", [f"{prefix}_z0", const(f"{prefix}_y0", yk[:1].astype(f32))], [f"{prefix}_out"])
        )
        return f"{prefix}_out"
    lo, width = xk[:-1], np.diff(xk)
    nodes.append(helper.make_node("Sub", [x, const(f"{prefix}_lo", lo.astype(f32)[None, :])], [f"{prefix}_d"]))
    nodes.append(
        helper.make_node("Div", [f"{prefix}_d", const(f"{prefix}_w", width.astype(f32)[None, :])], [f"{prefix}_t"])
    )
    nodes.append(
        helper.make_node(
            "Clip",
            [f"{prefix}_t", const(f"{prefix}_0", np.array(0, f32)), const(f"{prefix}_1", np.array(1, f32))],
            [f"{prefix}_c"],
        )
    )
    nodes.append(
        helper.make_node(
            "MatMul", [f"{prefix}_c", const(f"{prefix}_dy", np.diff(yk).astype(f32)[:, None])], [f"{prefix}_s"]
        )
    )
    nodes.append(helper.make_node("Add", [f"{prefix}_s", const(f"{prefix}_y0", yk[:1].astype(f32))], [f"{prefix}_out"]))
    return f"{prefix}_out"


def _transform_nodes(x: str, t, prefix: str, const, nodes, inverse: bool = False) -> str:
    """A column's monotone transform (mlpbp.data.transforms.Transform) or its inverse as nodes."""
    from onnx import helper

    if t is None or t.is_identity:
        return x
    if t.kind == "quantile":
        xk, zk = t.knots
        return (
            _piecewise_linear(x, zk, xk, prefix, const, nodes)
            if inverse
            else _piecewise_linear(x, xk, zk, prefix, const, nodes)
        )
    # log1p: sign(x)·log(1 + |x|); its inverse sign(z)·(exp(|z|) − 1)
    nodes.append(helper.make_node("Sign", [x], [f"{prefix}_sign"]))
    nodes.append(helper.make_node("Abs", [x], [f"{prefix}_abs"]))
    one = const(f"{prefix}_one", np.ones(1, np.float32))
    if inverse:
        nodes.append(helper.make_node("Exp", [f"{prefix}_abs"], [f"{prefix}_exp"]))
        nodes.append(helper.make_node("Sub", [f"{prefix}_exp", one], [f"{prefix}_mag"]))
    else:
        nodes.append(helper.make_node("Add", [f"{prefix}_abs", one], [f"{prefix}_1p"]))
        nodes.append(helper.make_node("Log", [f"{prefix}_1p"], [f"{prefix}_mag"]))
    nodes.append(helper.make_node("Mul", [f"{prefix}_sign", f"{prefix}_mag"], [f"{prefix}_out"]))
    return f"{prefix}_out"


def _literal(text: str) -> str:
    """``text`` as an RE2 pattern that matches it alone (every character but letters and digits
    as its code point, so no character is special)."""
    return "".join(ch if ch.isascii() and ch.isalnum() else f"\\x{{{ord(ch):x}}}" for ch in text)


def _integer(word: str) -> bool:
    return word.lstrip("-").isdigit() and word.isascii() and not (len(word) > 1 and word.lstrip("-")[0] == "0")


def _spellings(word: str, numeric: bool, boolean: bool) -> str:
    """The RE2 pattern of the cells predict reads as the category ``word`` (spaces around them
    aside): the word; for a column of integers also the spellings pyarrow reads as that number
    (+3, 03, 3.0); for a column of booleans pyarrow's spellings of true and false."""
    if numeric and _integer(word):
        digits = word.lstrip("-")
        sign = "-" if word.startswith("-") else "\\+?"
        body = "0+" if digits == "0" else f"0*{digits}"
        return f"(?:{'[-+]?' if digits == '0' else sign}{body}(?:\\.0*)?)"
    if boolean and word in _BOOLEANS:
        return "(?:" + "|".join(_BOOLEANS[word]) + ")"
    return _literal(word)


def _cell_patterns(col, pre) -> tuple[list[str], list[str], str | None]:
    """A categorical column's words (its categories, then its rare ones, then the cells that are
    missing), each word's RE2 pattern, and a note when the graph matches cells differently from
    predict. The reader strips spaces around a cell, so each pattern allows them; a missing-value
    token is matched as the reader nulls it (stripped, for a model with data.na_values; as
    written, pyarrow's own list, for one from before)."""
    special = {MISSING_CATEGORY, col.infrequent}
    words = col.categories + col.rare
    values = [w for w in words if w not in special]
    numeric = bool(values) and all(_integer(w) for w in values)  # read from a column of integers
    boolean = bool(values) and not numeric and set(values) <= set(_BOOLEANS)
    patterns = [_SPACES + _spellings(w, numeric, boolean) + _SPACES for w in words]
    if pre.missing == "impute" and MISSING_CATEGORY in col.categories:
        holes, hole_patterns = _hole_patterns(pre, words)
        patterns += hole_patterns
        words = words + holes
    note = None
    if numeric or boolean:
        what = "integers" if numeric else "booleans"
        shown = "3, +3, 03, 3.0 as 3" if numeric else "True, TRUE, 1 as true"
        note = (
            f"column '{col.name}': its categories were read from {what}; the graph reads every cell"
            f" that spells one ({shown}) as that category, predict only when every cell of the column is one"
        )
    return words, patterns, note


def _hole_patterns(pre, words: list[str]) -> tuple[list[str], list[str]]:
    """The cells the reader makes missing in a categorical column (none of its ``words``) and
    their RE2 patterns: stripped, for a model with data.na_values; as written, pyarrow's own
    list, for one from before."""
    if pre._tokens is None:
        holes = [t for t in NA_VALUES if t not in words]
        return holes, [_literal(t) for t in holes]
    holes = [t for t in ["", *sorted(pre._tokens - {""})] if t not in words]
    return holes, [_SPACES + _literal(t) + _SPACES for t in holes]


def _missing_rows(model: TrainedModel, inputs, const, nodes) -> str | None:
    """For a model that does not impute (data.missing: drop_rows or error), a bool [N, 1] value
    true in the rows with a missing cell, which predict leaves empty or refuses: NaN in a number,
    date or time, a missing-value token in a category. None for a model that imputes."""
    from onnx import helper

    pre = model.x_scaler
    if pre.missing == "impute":
        return None
    flags = []
    for j, (col, i) in enumerate(zip(pre.columns, inputs)):
        if col.kind == "categorical":
            _, patterns = _hole_patterns(pre, col.categories + col.rare)
            pattern = "|".join(f"(?:{p})" for p in patterns)
            nodes.append(helper.make_node("RegexFullMatch", [i.name], [f"c{j}_hole"], pattern=pattern))
        else:
            nodes.append(helper.make_node("IsNaN", [i.name], [f"c{j}_hole"]))
        flags.append(f"c{j}_hole")
    out = flags[0]
    for k, flag in enumerate(flags[1:], start=1):
        nodes.append(helper.make_node("Or", [out, flag], [f"row_missing{k}"]))
        out = f"row_missing{k}"
    nodes.append(helper.make_node("Identity", [out], ["row_missing"]))
    return "row_missing"


def _encode_inputs(model: TrainedModel, const, nodes, notes: list[str]) -> tuple[list, list[str]]:
    """One graph input per raw column and the nodes that turn it into the network's columns:
    numbers (and dates, as days since 1970-01-01) with missing values (NaN) filled by the
    training median when the model imputes, then their transform (quantile, log1p); times of
    day and datetimes (float64 seconds since midnight / since 1970-01-01) as days and cyclic
    pairs; categories one-hot (rare ones in their infrequent level; an unseen one: that level
    under handle_unknown: infrequent, else all zeros; embedded: the level's code, an unseen one
    the reserved row's), each cell matched as predict matches it (``_cell_patterns``). What the
    graph cannot do as predict does goes to ``notes``, one line each."""
    from onnx import TensorProto, helper

    pre = model.x_scaler
    inputs, encoded = [], []
    input_names = [pre.header.get(c.name, c.name) for c in pre.columns]  # as the training file's header wrote them
    if len(set(input_names)) != len(input_names):
        raise MlpbpError("cannot export: feature names repeat, and ONNX inputs need distinct names")
    for j, col in enumerate(pre.columns):
        name, categories, fill = input_names[j], col.categories, col.fill
        if col.kind == "categorical":
            inputs.append(helper.make_tensor_value_info(input_names[j], TensorProto.STRING, ["N", 1]))
            # An empty cell (or a missing-value token) is the "missing" category when the model
            # imputes: more words whose columns the matrix below adds into the "missing" one;
            # rare categories are words folded into the infrequent level.
            vocab, patterns, note = _cell_patterns(col, pre)
            if note:
                notes.append(note)
            hot = []
            for k, pattern in enumerate(patterns):  # column k of the one-hot: the cell is vocab[k]
                nodes.append(helper.make_node("RegexFullMatch", [input_names[j]], [f"c{j}_is{k}"], pattern=pattern))
                nodes.append(helper.make_node("Cast", [f"c{j}_is{k}"], [f"c{j}_hot{k}"], to=TensorProto.FLOAT))
                hot.append(f"c{j}_hot{k}")
            nodes.append(helper.make_node("Concat", hot, [f"c{j}_onehot"], axis=1))  # an unseen category: all zeros
            out = f"c{j}_onehot"
            if len(vocab) > len(categories):
                fold = np.eye(len(vocab), len(categories), dtype=np.float32)
                for k, word in enumerate(vocab[len(categories) :], start=len(categories)):
                    target = col.infrequent if word in col.rare else MISSING_CATEGORY
                    fold[k, categories.index(target)] = 1.0
                nodes.append(helper.make_node("MatMul", [out, const(f"c{j}_fold", fold)], [f"c{j}_folded"]))
                out = f"c{j}_folded"
            if col.infrequent is not None and pre.handle_unknown == "infrequent":
                # an unseen category (a row of zeros) joins the infrequent level: + (1 − Σ row)·e
                nodes.append(
                    helper.make_node(
                        "ReduceSum", [out, const(f"c{j}_axis", np.array([1], np.int64))], [f"c{j}_sum"], keepdims=1
                    )
                )
                nodes.append(
                    helper.make_node("Sub", [const(f"c{j}_one", np.ones(1, np.float32)), f"c{j}_sum"], [f"c{j}_unseen"])
                )
                e = np.zeros((1, len(categories)), np.float32)
                e[0, categories.index(col.infrequent)] = 1.0
                nodes.append(helper.make_node("Mul", [f"c{j}_unseen", const(f"c{j}_e", e)], [f"c{j}_extra"]))
                nodes.append(helper.make_node("Add", [out, f"c{j}_extra"], [f"c{j}_known"]))
                out = f"c{j}_known"
            if col.embedded:  # the level's code, whose row the network's embedding Gathers
                out = _embedding_code(out, len(categories), f"c{j}", const, nodes)
            encoded.append(out)
            continue
        if col.kind in ("time", "datetime"):
            inputs.append(helper.make_tensor_value_info(name, TensorProto.DOUBLE, ["N", 1]))
            x = name
            if fill is not None:
                nodes.append(helper.make_node("IsNaN", [name], [f"c{j}_nan"]))
                nodes.append(
                    helper.make_node(
                        "Where", [f"c{j}_nan", const(f"c{j}_fill", np.array([fill])), name], [f"c{j}_filled"]
                    )
                )
                x = f"c{j}_filled"
            parts = []
            if col.kind == "datetime":
                nodes.append(helper.make_node("Div", [x, const(f"c{j}_day", np.array([DAY_S]))], [f"c{j}_days64"]))
                nodes.append(helper.make_node("Cast", [f"c{j}_days64"], [f"c{j}_days"], to=TensorProto.FLOAT))
                parts.append(f"c{j}_days")
            for p, period in (("day", DAY_S), ("hour", 3600.0)):
                # x mod period as np.mod does (x − ⌊x/period⌋·period), then the angle
                nodes.append(helper.make_node("Div", [x, const(f"c{j}_{p}_p", np.array([period]))], [f"c{j}_{p}_q"]))
                nodes.append(helper.make_node("Floor", [f"c{j}_{p}_q"], [f"c{j}_{p}_fl"]))
                nodes.append(helper.make_node("Sub", [f"c{j}_{p}_q", f"c{j}_{p}_fl"], [f"c{j}_{p}_frac"]))
                nodes.append(
                    helper.make_node(
                        "Mul", [f"c{j}_{p}_frac", const(f"c{j}_{p}_2pi", np.array([2 * np.pi]))], [f"c{j}_{p}_a64"]
                    )
                )
                nodes.append(helper.make_node("Cast", [f"c{j}_{p}_a64"], [f"c{j}_{p}_a"], to=TensorProto.FLOAT))
                nodes.append(helper.make_node("Sin", [f"c{j}_{p}_a"], [f"c{j}_{p}_sin"]))
                nodes.append(helper.make_node("Cos", [f"c{j}_{p}_a"], [f"c{j}_{p}_cos"]))
                parts += [f"c{j}_{p}_sin", f"c{j}_{p}_cos"]
            nodes.append(helper.make_node("Concat", parts, [f"c{j}_time"], axis=1))
            encoded.append(f"c{j}_time")
            continue
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1]))
        x = name
        if fill is not None:
            nodes.append(helper.make_node("IsNaN", [name], [f"c{j}_nan"]))
            fill_c = const(f"c{j}_fill", np.array([fill], np.float32))
            nodes.append(helper.make_node("Where", [f"c{j}_nan", fill_c, name], [f"c{j}_filled"]))
            x = f"c{j}_filled"
        if col.ple is not None:
            encoded.append(_ple_nodes(x, col.ple, f"c{j}_ple", const, nodes))
            continue
        encoded.append(_transform_nodes(x, col.transform, f"c{j}_t", const, nodes))
    return inputs, encoded


def _ple_nodes(x: str, ple, prefix: str, const, nodes) -> str:
    """A piecewise-linear encoding (``PiecewiseLinear.encode``) of x [N, 1] as nodes: [N, T]."""
    from onnx import helper

    f32 = np.float32
    lo, hi = ple.bounds()
    edges = ple.edges
    nodes.append(helper.make_node("Sub", [x, const(f"{prefix}_b", edges[:-1].astype(f32)[None, :])], [f"{prefix}_d"]))
    width = const(f"{prefix}_w", np.diff(edges).astype(f32)[None, :])
    nodes.append(helper.make_node("Div", [f"{prefix}_d", width], [f"{prefix}_t"]))
    nodes.append(
        helper.make_node("Max", [f"{prefix}_t", const(f"{prefix}_lo", lo.astype(f32)[None, :])], [f"{prefix}_m"])
    )
    nodes.append(
        helper.make_node("Min", [f"{prefix}_m", const(f"{prefix}_hi", hi.astype(f32)[None, :])], [f"{prefix}_e"])
    )
    return f"{prefix}_e"


def _embedding_code(onehot: str, n: int, prefix: str, const, nodes) -> str:
    """An embedded column's code from its one-hot row, as ``Preprocessor`` writes it: the level's
    index, or ``n`` (the embedding's reserved row) for an unseen category left as a row of zeros:
    onehot · [0, 1, …, n−1]ᵀ + (1 − Σ onehot)·n. Matching the cells through the one-hot keeps
    one reading of cells (``_cell_patterns``) for both encodings."""
    from onnx import helper

    idx = np.arange(n, dtype=np.float32)[:, None]
    nodes.append(helper.make_node("MatMul", [onehot, const(f"{prefix}_idx", idx)], [f"{prefix}_code0"]))
    nodes.append(
        helper.make_node(
            "ReduceSum", [onehot, const(f"{prefix}_cax", np.array([1], np.int64))], [f"{prefix}_hsum"], keepdims=1
        )
    )
    nodes.append(
        helper.make_node("Sub", [const(f"{prefix}_c1", np.ones(1, np.float32)), f"{prefix}_hsum"], [f"{prefix}_miss"])
    )
    nodes.append(
        helper.make_node("Mul", [f"{prefix}_miss", const(f"{prefix}_n", np.array([n], np.float32))], [f"{prefix}_res"])
    )
    nodes.append(helper.make_node("Add", [f"{prefix}_code0", f"{prefix}_res"], [f"{prefix}_code"]))
    return f"{prefix}_code"


@dataclass
class ExportResult(Result):
    """What ``export_onnx`` wrote (``mlpbp export --json``)."""

    path: str
    bytes: int
    opset: int  # the default domain's opset
    inputs: list[str]  # the graph's inputs, in order: one per raw column
    outputs: list[str]
    notes: list[str] | None = asked()  # what the graph does otherwise than predict (none: absent)


def export_onnx(model_path: str | Path, out_path: str | Path) -> ExportResult:
    """Write ``model_path`` as ONNX to ``out_path`` (atomically); returns what it wrote."""
    model = load_model(model_path)
    if model.multilabel:
        raise MlpbpError(
            f"cannot export {model_path}: a multi-label model (sigmoid outputs, label sets) has no ONNX export yet;"
            " mlpbp predict writes its label sets"
        )
    proto = to_onnx(model, name=Path(model_path).parent.name or "mlpbp")
    data = proto.SerializeToString()
    with atomic_open(out_path, "wb") as f:
        f.write(data)
    props = {p.key: p.value for p in proto.metadata_props}
    return ExportResult(
        str(out_path),
        len(data),
        next(o.version for o in proto.opset_import if o.domain == ""),
        [i.name for i in proto.graph.input],
        [o.name for o in proto.graph.output],
        props["notes"].split("\n") if "notes" in props else None,
    )


EXPORTABLE = ("linear", "dropout", "batch_norm", "layer_norm", "add", "concat", "select", "embedding", "periodic")


def _graph_nodes(net, x: str, const, nodes: list, helper) -> str:
    """The network's graph of modules as ONNX nodes from value ``x``, in evaluation mode
    (dropout is the identity, batch_norm uses its running statistics); the output's name. A
    module of another kind may give its own nodes: ``to_onnx(helper, inputs, output, const)``
    returning a list of nodes; otherwise it is refused in one line."""
    f32 = np.float32
    names = [x]
    for i, (m, srcs, pnames, bnames) in enumerate(
        zip(net.layers, net.sources, net.layer_param_names, net.layer_buffer_names), start=1
    ):
        ins, out, kind = [names[j] for j in srcs], f"v{i}", m.kind
        p = {k: const(n, m.params[k].astype(f32)) for k, n in pnames.items()}
        if kind == "linear":
            nodes.append(helper.make_node("Gemm", [ins[0], p["W"], *([p["b"]] if "b" in p else [])], [out], transB=1))
        elif kind in ACTIVATION_OPS:
            op, attrs = ACTIVATION_OPS[kind] or ("Identity", {})
            nodes.append(helper.make_node(op, ins, [out], **attrs))
        elif kind == "dropout":
            nodes.append(helper.make_node("Identity", ins, [out]))
        elif kind == "batch_norm":
            stats = [const(bnames[k], m.buffers[k].astype(f32)) for k in ("running_mean", "running_var")]
            nodes.append(
                helper.make_node("BatchNormalization", [ins[0], p["gamma"], p["beta"], *stats], [out], epsilon=m.eps)
            )
        elif kind == "layer_norm":
            nodes.append(
                helper.make_node("LayerNormalization", [ins[0], p["gamma"], p["beta"]], [out], axis=-1, epsilon=m.eps)
            )
        elif kind == "add":
            nodes.append(helper.make_node("Sum", ins, [out]))
        elif kind == "concat":
            nodes.append(helper.make_node("Concat", ins, [out], axis=1))
        elif kind == "select":
            idx = const(f"{out}_columns", np.array(m.columns, np.int64))
            nodes.append(helper.make_node("Gather", [ins[0], idx], [out], axis=1))
        elif kind == "embedding":  # the code's row, or the reserved last row (see Embedding.codes)
            c = f"{out}_code"
            nodes.append(
                helper.make_node("Gather", [ins[0], const(f"{c}_col", np.array(m.column, np.int64))], [c], axis=1)
            )
            nodes.append(helper.make_node("Floor", [c], [f"{c}_floor"]))
            nodes.append(helper.make_node("Equal", [c, f"{c}_floor"], [f"{c}_int"]))
            nodes.append(helper.make_node("GreaterOrEqual", [c, const(f"{c}_zero", np.array(0, f32))], [f"{c}_ge"]))
            nodes.append(helper.make_node("Less", [c, const(f"{c}_n", np.array(m.categories, f32))], [f"{c}_lt"]))
            nodes.append(helper.make_node("And", [f"{c}_int", f"{c}_ge"], [f"{c}_a"]))
            nodes.append(helper.make_node("And", [f"{c}_a", f"{c}_lt"], [f"{c}_ok"]))
            nodes.append(helper.make_node("Where", [f"{c}_ok", c, f"{c}_n"], [f"{c}_row"]))
            nodes.append(helper.make_node("Cast", [f"{c}_row"], [f"{c}_index"], to=7))  # int64
            nodes.append(helper.make_node("Gather", [p["E"], f"{c}_index"], [out], axis=0))
        elif kind == "periodic":  # z = u B, B[i, i·k + j] = 2π c_ij; [sin z_i, cos z_i] per column i
            _periodic_nodes(m, ins[0], out, const, nodes, helper)
        elif hasattr(m, "to_onnx"):
            nodes.extend(m.to_onnx(helper, ins, out, const))
        else:
            allowed = ", ".join(EXPORTABLE + tuple(ACTIVATION_OPS))
            raise MlpbpError(f"cannot export module {kind!r} to ONNX (exportable: {allowed}; or give it to_onnx)")
        names.append(out)
    return names[-1]


def _periodic_nodes(m, u: str, out: str, const, nodes: list, helper) -> None:
    """A ``periodic`` module as MatMul, Sin, Cos, Concat and Gather: z = u B with B (d, d·k) block
    diagonal (row i holds 2π c_i in columns i·k … i·k + k − 1), then the sines and cosines put
    back in the module's order (column i's k sines, then its k cosines)."""
    c = np.asarray(m.params["frequencies"], np.float64)
    d, k = c.shape
    B = np.zeros((d, d * k))
    for i in range(d):
        B[i, i * k : (i + 1) * k] = 2 * np.pi * c[i]
    z = f"{out}_z"
    nodes.append(helper.make_node("MatMul", [u, const(f"{out}_B", B.astype(np.float32))], [z]))
    nodes.append(helper.make_node("Sin", [z], [f"{out}_sin"]))
    nodes.append(helper.make_node("Cos", [z], [f"{out}_cos"]))
    nodes.append(helper.make_node("Concat", [f"{out}_sin", f"{out}_cos"], [f"{out}_sc"], axis=1))
    # [sin block | cos block] (each d·k, column-major by input column) -> per column [sin_i, cos_i]
    order = [half * d * k + i * k + j for i in range(d) for half in (0, 1) for j in range(k)]
    nodes.append(
        helper.make_node("Gather", [f"{out}_sc", const(f"{out}_order", np.array(order, np.int64))], [out], axis=1)
    )
