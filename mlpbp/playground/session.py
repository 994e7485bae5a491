"""One playground session: a config built from the page's controls, trained step by step with
the engine `mlpbp train` uses, and everything the page draws of it.

The session trains exactly as ``mlpbp.run.trainer.Trainer`` does (the same ``prepare`` of the
data, the same network, optimizer and shuffling stream, one ``net.train_step`` per batch), so the
config it writes out reproduces its run: ``mlpbp train`` on it reaches the same training loss at
the last completed epoch. Nothing here knows about HTTP; the server turns calls into messages.
"""

from __future__ import annotations

import base64
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from mlpbp.engine.activations import ACTIVATIONS, get_activation
from mlpbp.engine.curvature import Curvature, extreme_eigenvalues
from mlpbp.engine.losses import LOSSES
from mlpbp.engine.optim import OPTIMIZERS, Optimizer
from mlpbp.engine.schedules import learning_rate_at
from mlpbp.errors import ArgumentError, ConfigError, DataError, MlpbpError, ResourceError
from mlpbp.run.config import config_from_dict
from mlpbp.run.metrics import compute_metrics
from mlpbp.run.model_file import TrainedModel, save_model
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer
from mlpbp.tools.gradcheck import check_network

# The page's data sets and the generator each one is (an upload is data.path instead).
DATASETS = {
    "spirals": "spirals",
    "xor": "quadrants",
    "circles": "circles",
    "gaussians": "gaussians",
    "regression": "sine",
    "moons": "moons",
}
UPLOAD = "upload"


@dataclass(frozen=True)
class Limits:
    """Caps that bound a session's memory and time; each is reported in the page when hit."""

    max_points: int = 2000
    max_width: int = 64
    max_layers: int = 6  # hidden layers
    max_sessions: int = 32
    max_upload_bytes: int = 1_000_000
    max_steps_per_update: int = 200
    idle_timeout_s: float = 1800.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


DEFAULTS = {
    "dataset": "spirals",
    "points": 500,
    "noise": 0.1,
    "test_fraction": 0.2,
    "seed": 0,
    "hidden": [8, 8],
    "activation": "tanh",
    "loss": "cross_entropy",
    "optimizer": "adam",  # spirals in ~1500 steps (test accuracy 0.97); sgd at 0.1 reaches 0.73
    "learning_rate": 0.03,
    "momentum": 0.0,
    "batch_size": 10,
    "weight_decay": 0.0,
    "steps_per_update": 5,
    "sharpness_every": 100,
}
GRID = 40  # the output's decision regions: GRID × GRID cells
UNIT_GRID = GRID // 2  # each hidden unit's
CURVE = 200  # points along the x axis for 1-D inputs
SHARPNESS_ROWS = 500


def options() -> dict:
    """What the page's menus offer: the registries' names (a registered activation shows up)."""
    first_order = [n for n in OPTIMIZERS if issubclass(OPTIMIZERS.lookup(n), Optimizer)]
    return {
        "datasets": [*DATASETS, UPLOAD],
        "activations": list(ACTIVATIONS),
        "losses": list(LOSSES),
        "optimizers": first_order,
    }


def _number(settings: dict, key: str, kind, lo, hi, hint: str = "") -> float | int:
    value = settings.get(key, DEFAULTS.get(key))
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and int(value) != value):
        raise ArgumentError(f"{key}: {value!r} is not {'an integer' if kind is int else 'a number'}")
    if not (lo <= value <= hi) or (isinstance(value, float) and not math.isfinite(value)):
        raise ArgumentError(f"{key}: {value} is outside {lo} .. {hi}{hint}")
    return kind(value)


def _hidden(value, limits: Limits) -> list[int]:
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,]+", value.strip()) if p]
        if not all(re.fullmatch(r"\d+", p) for p in parts):
            raise ArgumentError(f"hidden: {value!r} is not a list of widths such as 8, 8")
        value = [int(p) for p in parts]
    if not isinstance(value, list) or not all(isinstance(w, int) and not isinstance(w, bool) for w in value):
        raise ArgumentError(f"hidden: {value!r} is not a list of widths such as [8, 8]")
    if len(value) > limits.max_layers:
        raise ResourceError(f"hidden: {len(value)} hidden layers; the playground allows at most {limits.max_layers}")
    for w in value:
        if not 1 <= w <= limits.max_width:
            raise ResourceError(f"hidden: width {w}; the playground allows widths 1 .. {limits.max_width}")
    return value


def _choice(settings: dict, key: str, allowed) -> str:
    value = settings.get(key, DEFAULTS.get(key))
    if value not in allowed:
        raise ArgumentError(f"{key}: unknown {key} {value!r} (allowed: {', '.join(allowed)})")
    return value


def parse_settings(settings: dict, limits: Limits, uploaded: bool = False) -> dict:
    """The page's controls, checked: each wrong value is one line naming the control and what
    it allows."""
    if not isinstance(settings, dict):
        raise ArgumentError("settings must be an object of control values")
    known = set(DEFAULTS)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ArgumentError(f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    opts = options()
    s = {
        "dataset": _choice(settings, "dataset", opts["datasets"]),
        "points": _number(settings, "points", int, 10, limits.max_points, " (the playground's cap on points)"),
        "noise": _number(settings, "noise", float, 0.0, 2.0),
        "test_fraction": _number(settings, "test_fraction", float, 0.0, 0.9),
        "seed": _number(settings, "seed", int, 0, 2**31 - 1),
        "hidden": _hidden(settings.get("hidden", DEFAULTS["hidden"]), limits),
        "activation": _choice(settings, "activation", opts["activations"]),
        "loss": _choice(settings, "loss", opts["losses"]),
        "optimizer": _choice(settings, "optimizer", opts["optimizers"]),
        "learning_rate": _number(settings, "learning_rate", float, 1e-6, 10.0),
        "momentum": _number(settings, "momentum", float, 0.0, 0.999),
        "batch_size": _number(settings, "batch_size", int, 1, limits.max_points),
        "weight_decay": _number(settings, "weight_decay", float, 0.0, 1.0),
        "steps_per_update": _number(settings, "steps_per_update", int, 1, limits.max_steps_per_update),
        "sharpness_every": _number(settings, "sharpness_every", int, 0, 10_000, " (0: never)"),
    }
    if s["dataset"] == UPLOAD and not uploaded:
        raise DataError("dataset upload: choose a CSV file first")
    return s


def config_dict(s: dict, epochs: int, path: str | None = None) -> dict:
    """The `mlpbp train` config of these settings: what the session trains and what it writes."""
    if path is not None:
        data = {"path": path}
    else:
        data = {"dataset": DATASETS[s["dataset"]], "n_samples": s["points"], "noise": s["noise"]}
    data |= {"test_fraction": s["test_fraction"], "validation_fraction": 0.0}
    loss = s["loss"]
    train = {
        "epochs": max(1, epochs),
        "batch_size": s["batch_size"],
        "optimizer": s["optimizer"],
        "learning_rate": s["learning_rate"],
        "weight_decay": s["weight_decay"],
        "dtype": "float64",
    }
    if s["optimizer"] == "sgd":
        train["momentum"] = s["momentum"]
    return {
        "seed": s["seed"],
        "data": data,
        "model": {"hidden": s["hidden"], "activation": s["activation"], "loss": loss},
        "train": train,
    }


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, np.uint8).tobytes()).decode("ascii")


def _signed_columns(a: np.ndarray) -> tuple[list[str], list[float]]:
    """Each column's values in [-m, m] as bytes 0..255 (127.5 is zero), m = its max |a|: a
    diverging colour map per picture. A diverged run (NaN, inf) draws flat, not as garbage."""
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    m = np.max(np.abs(a), axis=0) if a.shape[0] else np.zeros(a.shape[1])
    scaled = np.rint((a / np.where(m == 0, 1.0, m) + 1) * 127.5).astype(np.uint8)
    return [_b64(scaled[:, j]) for j in range(a.shape[1])], [float(v) for v in m]


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class Session:
    """One tab's playground: settings, data, network, optimizer and the history of the run."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._dir = tempfile.TemporaryDirectory(prefix="mlpbp-playground-")
        self.upload_name: str | None = None  # the file name the browser gave (never a path here)
        self.settings = parse_settings({}, self.limits)
        self.reset()

    def close(self) -> None:
        self._dir.cleanup()

    # ---- set up -------------------------------------------------------------------------
    @property
    def _upload_path(self) -> Path:
        return Path(self._dir.name) / "upload.csv"

    def upload(self, name: str, content: bytes) -> dict:
        """Take a CSV (bytes) the page sent: 1 or 2 feature columns and a target, read by
        mlpbp's own table reader. The server keeps it under a name of its own."""
        if len(content) > self.limits.max_upload_bytes:
            raise ResourceError(
                f"upload: {len(content):,} bytes; the playground accepts files up to {self.limits.max_upload_bytes:,}"
            )
        base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(name or "upload.csv")).name)[:80] or "upload.csv"
        if not base.lower().endswith((".csv", ".txt", ".tsv")):
            raise DataError(f"upload: {base} is not a .csv file")
        previous = (self.upload_name, self._upload_path.read_bytes() if self._upload_path.exists() else None)
        self._upload_path.write_bytes(content)
        self.upload_name = base
        try:
            return self.configure({**self.settings, "dataset": UPLOAD})
        except MlpbpError:
            self.upload_name = previous[0]
            if previous[1] is None:
                self._upload_path.unlink()
            else:
                self._upload_path.write_bytes(previous[1])
            raise

    def configure(self, settings: dict) -> dict:
        """New settings: a fresh run from step 0 (what the page shows must be what the config
        it downloads reproduces). On a bad value the session keeps its previous run."""
        merged = {**self.settings, **settings} if isinstance(settings, dict) else settings
        s = parse_settings(merged, self.limits, uploaded=self.upload_name is not None)
        old = self.settings
        self.settings = s
        try:
            self.reset()  # assigns nothing until everything is built
        except MlpbpError:
            self.settings = old
            raise
        return self.describe()

    def _config(self, epochs: int):
        s = self.settings
        path = str(self._upload_path) if s["dataset"] == UPLOAD else None
        return config_from_dict(config_dict(s, epochs, path), base_dir=Path(self._dir.name), name="playground")

    def _hide_path(self, e: MlpbpError) -> MlpbpError:
        """Messages about the upload name the browser's file, never the server's copy."""
        text = str(e).replace(str(self._upload_path), self.upload_name or "upload.csv")
        return type(e)(text.replace(self._dir.name + "/", ""))

    def reset(self) -> None:
        """Step 0 of the current settings: data prepared, the network initialised from the seed."""
        cfg = self._config(1)
        try:
            data = prepare(cfg)
        except MlpbpError as e:
            raise self._hide_path(e) from None
        X = data.train[0]
        if X.shape[1] not in (1, 2):
            raise DataError(
                f"{self.upload_name or 'data'}: {X.shape[1]} input columns after encoding; the playground draws"
                " 1 or 2 (a CSV of x0[, x1] and a target)"
            )
        if X.shape[0] < 2:
            raise DataError(f"{self.upload_name or 'data'}: {X.shape[0]} training rows; need at least 2")
        if X.shape[0] + data.test[0].shape[0] > self.limits.max_points:
            raise ResourceError(
                f"{self.upload_name}: {X.shape[0] + data.test[0].shape[0]} rows; the playground allows at most"
                f" {self.limits.max_points} points"
            )
        try:
            self.trainer = Trainer(cfg, data, out_dir=self._dir.name)
        except (ValueError, MlpbpError) as e:
            raise ConfigError(f"network: {e}") from None
        if not isinstance(self.trainer.opt, Optimizer):
            raise ConfigError(f"optimizer {self.settings['optimizer']} trains whole epochs; pick sgd, adam or adamw")
        self.cfg, self.data, self.net, self.opt = cfg, data, self.trainer.net, self.trainer.opt
        self.epoch, self.step_in_epoch, self.steps = 0, 0, 0
        self.order: np.ndarray | None = None
        self.epochs_done: list[dict] = []  # the history `mlpbp train` writes, one record per epoch
        self.curve: list[dict] = []  # the page's loss curves: one point per update
        self.sharpness: list[dict] = []
        self.diverged: str | None = None
        rows = min(SHARPNESS_ROWS, X.shape[0])
        pick = np.sort(np.random.default_rng([self.settings["seed"], 3]).choice(X.shape[0], rows, replace=False))
        self._sharp_sample = (X[pick], data.train[1][pick])
        self._grid = self._make_grid()

    # ---- training -----------------------------------------------------------------------
    def _begin_epoch(self) -> None:
        # As Trainer._epoch: a fresh order from the shuffling stream, the epoch's learning rate.
        t = self.cfg.train
        self.order = self.trainer.rng.permutation(self.data.train[0].shape[0])
        self.opt.learning_rate = learning_rate_at(
            self.epoch, t.learning_rate, t.schedule, t.epochs, t.step_size, t.gamma, t.decay
        )

    def advance(self, n_steps: int) -> None:
        """``n_steps`` optimizer steps (θ := θ − α∇J on one batch each), crossing epochs as
        ``mlpbp train`` does. A non-finite loss stops the run and says so."""
        if self.diverged:
            return
        X, y = self.data.train
        bs = self.cfg.train.batch_size
        per_epoch = math.ceil(X.shape[0] / bs)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for _ in range(n_steps):
                if self.order is None:
                    self._begin_epoch()
                rows = self.order[self.step_in_epoch * bs : (self.step_in_epoch + 1) * bs]
                loss = self.net.train_step(X[rows], y[rows], self.opt)
                if not math.isfinite(loss):
                    self.diverged = (
                        f"diverged at step {self.steps + 1} (loss {loss}); lower the learning rate and press Reset"
                    )
                    return
                self.steps += 1
                self.step_in_epoch += 1
                if self.step_in_epoch == per_epoch:
                    self._end_epoch()
        every = self.settings["sharpness_every"]
        if every and (not self.sharpness or self.steps - self.sharpness[-1]["step"] >= every):
            self._measure_sharpness()

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.step_in_epoch, self.order = 0, None
        d = self.data
        train = compute_metrics(self.net, *d.train, d.y_scaler)
        self.epochs_done.append({"epoch": self.epoch, "step": self.steps, "train_loss": train["loss"]})

    def _measure_sharpness(self) -> None:
        X, y = self._sharp_sample
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            op = Curvature(self.net, X, y, "hessian")
            top = extreme_eigenvalues(op.matvec, op.shape[0], top_k=1, tol=1e-3, max_steps=60, seed=0).top[0]
        lr = self.opt.learning_rate
        self.sharpness.append({"step": self.steps, "top": _finite(top), "limit": 2.0 / lr})

    # ---- what the page draws ------------------------------------------------------------
    def _make_grid(self) -> dict:
        X = np.concatenate([self.data.train[0], self.data.test[0]])
        lo, hi = X.min(axis=0), X.max(axis=0)
        pad = 0.1 * np.maximum(hi - lo, 1e-9)
        lo, hi = lo - pad, hi + pad
        if X.shape[1] == 1:
            xs = np.linspace(lo[0], hi[0], CURVE)[:, None]
            return {"lo": lo, "hi": hi, "out": xs}

        def cells(n: int) -> np.ndarray:  # cell centres, row 0 at the top (largest x1)
            g0 = lo[0] + (np.arange(n) + 0.5) * (hi[0] - lo[0]) / n
            g1 = hi[1] - (np.arange(n) + 0.5) * (hi[1] - lo[1]) / n
            a, b = np.meshgrid(g0, g1)
            return np.column_stack([a.ravel(), b.ravel()])

        return {"lo": lo, "hi": hi, "out": cells(GRID)}

    def layers(self, X: np.ndarray) -> list[dict]:
        """The forward pass in the lecture's symbols from ``net.params``: for r = 1..R,
        z⁽ʳ⁾ = W⁽ʳ⁾a⁽ʳ⁻¹⁾ + b⁽ʳ⁾ and a⁽ʳ⁾ = σ(z⁽ʳ⁾), with a⁽⁰⁾ = x and the output o = z⁽ᴿ⁾ linear."""
        fn = get_activation(self.net.activation)
        R = len(self.net.widths) - 1
        a, out = np.asarray(X, np.float64), []
        for r in range(1, R + 1):
            z = a @ self.net.params[f"W{r}"].T + self.net.params[f"b{r}"]
            a = fn.f(z, np.empty_like(z)) if r < R else z
            out.append({"z": z, "a": a})
        return out

    def _outputs_for_page(self, o: np.ndarray) -> np.ndarray:
        """What a colour shows at a point: class probabilities for cross-entropy, else o."""
        if self.net.loss_name == "cross_entropy":
            e = np.exp(o - o.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return o

    def frame(self) -> dict:
        """One live update: losses, gradient norms, sharpness, and the output's and every
        hidden unit's picture over the input plane (or line)."""
        d, net = self.data, self.net
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            J, grads = net.loss_and_grad(*d.train)  # full-batch ∇J: the norm the page plots per layer
            test = net.loss(*d.test) if d.test[0].shape[0] else None
            out, units = self._pictures()
        R = len(net.widths) - 1
        norms = [_finite(np.sqrt(np.sum(grads[f"W{r}"] ** 2) + np.sum(grads[f"b{r}"] ** 2))) for r in range(1, R + 1)]
        point = {"step": self.steps, "train": _finite(J), "test": _finite(test) if test is not None else None}
        if not self.curve or self.curve[-1]["step"] != self.steps:
            self.curve.append(point)
        if len(self.curve) > 2000:  # bounded memory: keep every other old point
            self.curve = self.curve[:1000:2] + self.curve[1000:]
        last = self.epochs_done[-1] if self.epochs_done else None
        return {
            "type": "frame",
            **point,
            "epoch": self.epoch,
            "epoch_loss": last,  # the loss `mlpbp train` reports for the last completed epoch
            "accuracy": self._accuracy(),
            "grad_norms": norms,
            "sharpness": self.sharpness[-1] if self.sharpness else None,
            "learning_rate": self.opt.learning_rate,
            "output": out,
            "units": units,
            "diverged": self.diverged,
        }

    def _accuracy(self) -> dict | None:
        if self.data.task != "classification":
            return None
        (Xtr, ytr), (Xte, yte) = self.data.train, self.data.test
        hits = self.net.predict(np.concatenate([Xtr, Xte])) == np.concatenate([ytr, yte])  # one pass for both
        acc = {"train": float(np.mean(hits[: len(ytr)]))}
        if len(yte):
            acc["test"] = float(np.mean(hits[len(ytr) :]))
        return acc

    def _pictures(self) -> tuple[dict, list[dict]]:
        """The output's picture and every hidden unit's, from one forward pass over the grid
        (a unit's picture is every other cell of it in each direction: UNIT_GRID = GRID / 2)."""
        layers = self.layers(self._grid["out"])
        if self.data.train[0].shape[1] == 2:
            keep = np.arange(GRID * GRID).reshape(GRID, GRID)[::2, ::2].ravel()
        else:
            keep = slice(None)
        units = []
        for r, layer in enumerate(layers[:-1], start=1):
            data, scales = _signed_columns(layer["a"][keep])
            units += [{"layer": r, "unit": i + 1, "data": d, "scale": m} for i, (d, m) in enumerate(zip(data, scales))]
        p = self._outputs_for_page(layers[-1]["a"])
        if self.data.task == "classification":
            if p.shape[1] == 2 and self.net.loss_name == "cross_entropy":  # P(class 1) − P(class 0)
                data, scale = _signed_columns((p[:, 1] - p[:, 0])[:, None])
                return {"kind": "signed", "data": data[0], "scale": scale[0]}, units
            conf = np.clip(np.nan_to_num(p.max(axis=1)), 0, 1) * 255
            return {"kind": "classes", "data": _b64(p.argmax(axis=1)), "conf": _b64(conf), "k": p.shape[1]}, units
        o = p[:, 0]
        data, scale = _signed_columns((o - np.mean(o))[:, None])
        return {"kind": "signed", "data": data[0], "scale": scale[0], "values": [_finite(v) for v in o]}, units

    def describe(self) -> dict:
        """What the page needs once per run: the points, the grid, the network's shape."""
        d = self.data
        lo, hi = self._grid["lo"], self._grid["hi"]

        def rows(X, y):
            y = y if d.task == "classification" else y[:, 0]
            return [[*map(float, x), float(t)] for x, t in zip(X, y)]

        return {
            "type": "state",
            "settings": self.settings,
            "upload": self.upload_name,
            "task": d.task,
            "classes": d.classes,
            "inputs": d.train[0].shape[1],
            "widths": self.net.widths,
            "n_params": self.net.n_params,
            "bounds": {"lo": lo.tolist(), "hi": hi.tolist()},
            "grid": GRID,
            "unit_grid": UNIT_GRID,
            "train": rows(*d.train),
            "test": rows(*d.test),
            "steps_per_epoch": math.ceil(d.train[0].shape[0] / self.cfg.train.batch_size),
        }

    # ---- one example, step by step ------------------------------------------------------
    def example(self, part: str, index: int) -> dict:
        """One example's forward pass (z and a at every layer) and backward pass (∂J/∂z, ∂J/∂a,
        ∂J/∂W, ∂J/∂b), written out by the chain rule from the parameters, beside the engine's
        gradient for the same example (they must agree to rounding)."""
        if part not in ("train", "test"):
            raise ArgumentError(f"example: part {part!r} is not train or test")
        X, y = getattr(self.data, part)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < X.shape[0]:
            raise ArgumentError(f"example: index {index!r} is outside 0 .. {X.shape[0] - 1} of the {part} points")
        x, t = X[index : index + 1], y[index : index + 1]
        net, R = self.net, len(self.net.widths) - 1
        fn = get_activation(net.activation)
        J, grads = net.loss_and_grad(x, t)
        fwd = self.layers(x)
        a_prev = [x[0], *(layer["a"][0] for layer in fwd[:-1])]
        # ∂J/∂o for one example is ∂J/∂b⁽ᴿ⁾ (∂z/∂b = I): the loss's own derivative, any loss.
        dz = grads[f"b{R}"].copy()
        back = [None] * R
        for r in range(R, 0, -1):
            W = net.params[f"W{r}"]
            entry = {"dz": dz, "dW": np.outer(dz, a_prev[r - 1]), "db": dz}
            if r > 1:
                da = W.T @ dz  # ∂J/∂a⁽ʳ⁻¹⁾ = W⁽ʳ⁾ᵀ ∂J/∂z⁽ʳ⁾
                z = fwd[r - 2]["z"][0]
                entry["da_prev"] = da
                dz = da * fn.df(z, fwd[r - 2]["a"][0], np.empty_like(z))  # ⊙ σ'(z⁽ʳ⁻¹⁾)
            back[r - 1] = entry
        agree = max(
            max(float(np.max(np.abs(back[r - 1]["dW"] - grads[f"W{r}"]))) for r in range(1, R + 1)),
            max(float(np.max(np.abs(back[r - 1]["db"] - grads[f"b{r}"]))) for r in range(1, R + 1)),
        )
        rows = []
        for r in range(1, R + 1):
            W = net.params[f"W{r}"]
            rows.append(
                {
                    "layer": r,
                    "W_shape": list(W.shape),
                    "z": fwd[r - 1]["z"][0].tolist(),
                    "a": fwd[r - 1]["a"][0].tolist() if r < R else None,
                    "dz": back[r - 1]["dz"].tolist(),
                    "da": back[r]["da_prev"].tolist() if r < R else None,
                    "dW": back[r - 1]["dW"].tolist(),
                    "db": back[r - 1]["db"].tolist(),
                }
            )
        target = int(t[0]) if self.data.task == "classification" else float(t[0, 0])
        return {
            "type": "example",
            "part": part,
            "index": index,
            "x": x[0].tolist(),
            "target": target,
            "loss": float(J),
            "loss_name": net.loss_name,
            "activation": net.activation,
            "layers": rows,
            "engine_max_abs_diff": agree,
        }

    def gradcheck(self, rows: int = 32) -> dict:
        """``check_network`` on up to ``rows`` training points: each parameter's largest relative
        error against central differences (float64), and the layer-input and HVP checks."""
        X, y = self.data.train
        report = check_network(self.net, X[:rows], y[:rows])
        return {
            "type": "gradcheck",
            "ok": report.ok,
            "rows": int(min(rows, X.shape[0])),
            "checks": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "param": c.param,
                    "shape": list(c.shape),
                    "max_rel_err": _finite(c.max_rel_err),
                    "checked": c.checked,
                    "skipped": c.skipped,
                    "status": c.status,
                }
                for c in report.checks
            ],
        }

    # ---- take it with you ---------------------------------------------------------------
    def config_yaml(self) -> str:
        """The config `mlpbp train` reproduces this run's last completed epoch with (epoch 1
        before one has completed); an upload is named by its file name, to sit beside the YAML."""
        path = self.upload_name if self.settings["dataset"] == UPLOAD else None
        d = config_dict(self.settings, self.epoch, path)
        d["output"] = {"dir": "runs/playground"}
        last = self.epochs_done[-1] if self.epochs_done else None
        head = (
            "# mlpbp playground: `mlpbp train` on this file reaches the playground's epoch"
            f" {max(1, self.epoch)}" + (f" (train loss {last['train_loss']!r})" if last else "") + ".\n"
        )
        if path:
            head += f"# data.path is the uploaded file: keep {path} beside this file.\n"
        return head + yaml.safe_dump(d, sort_keys=False)

    def model_bytes(self) -> bytes:
        """The current network as a model file (`mlpbp predict` / `evaluate` read it)."""
        d = self.data
        target = d.target_names[0] if len(d.target_names) == 1 else d.target_names
        metrics = compute_metrics(self.net, *(d.test if d.test[0].shape[0] else d.train), d.y_scaler, classes=d.classes)
        model = TrainedModel(
            self.net,
            d.preprocessor,
            d.y_scaler,
            d.classes,
            d.preprocessor.inputs,
            target,
            config_dict(self.settings, self.epoch, self.upload_name if self.settings["dataset"] == UPLOAD else None),
            metrics={"evaluated_on": "test" if d.test[0].shape[0] else "train", "steps": self.steps, **metrics},
            id_name=d.id_name,
        )
        path = Path(self._dir.name) / "model.npz"
        save_model(model, path)
        try:
            return path.read_bytes()
        finally:
            path.unlink()
