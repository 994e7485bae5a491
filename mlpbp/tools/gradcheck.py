"""Gradient checking: the hand-written backward passes against central finite differences.

Three kinds of check, all in float64 (a float32 network is checked through a float64 copy; the
network passed in is never modified):

1. **Parameters.** ∂J/∂θ for each tensor (W1, b1, …) against (J(θ + εeᵢ) − J(θ − εeᵢ)) / 2ε,
   every entry of a small tensor (at most ``FULL_MAX`` entries) and ``samples`` random entries
   of a larger one.
2. **Layer inputs.** Each layer's ``backward`` in isolation: for a random upstream gradient G,
   ``layer.backward(G)`` is ∂⟨G, layer.forward(u)⟩/∂u, compared with central differences in u
   at the input u the layer sees inside the network.
3. **Hessian-vector products.** ``net.hvp`` for a few random unit directions v against
   (∇J(θ + εv) − ∇J(θ − εv)) / 2ε, and the symmetry ⟨u, Hv⟩ = ⟨v, Hu⟩.

Error metric (per checked tensor, over the entries checked), with a the analytical and n the
numerical values::

    max_abs_err = max |a − n|
    max_rel_err = max |a − n| / max(max |a|, max |n|, atol / rtol)     (0 when a = n exactly)

and a check passes when ``max_rel_err <= rtol``, i.e. when max |a − n| <= max(rtol·scale,
atol). Relative to the tensor's largest entry rather than entry by entry, so an entry that
happens to be near zero does not blow the ratio up; the ``atol / rtol`` floor (1e-2 by
default) does the same for a tensor whose whole gradient is ~0 (e.g. zero by symmetry), where
central differences leave round-off of about machine-ε·|J|/ε ≈ 2e-10·|J| at ε = 1e-6.
For the symmetry check the scale is the Cauchy–Schwarz bound max(‖u‖‖Hv‖, ‖v‖‖Hu‖).

ReLU-family kinks: a difference quotient that straddles the kink of relu/leaky_relu/elu
measures neither one-sided derivative. Before differencing, a point with a pre-activation
within ``KINK_MARGIN``·ε·scale of 0 is nudged (θ moved by ~1e-3 of its RMS) up to ``resample``
times. Then, for every difference, the sign pattern of all relu-family pre-activations at
θ − εe, θ and θ + εe is compared: an entry whose difference crosses a kink is not counted; it
is reported apart as ``skipped`` ("at kink"), never as a failure (a sampled entry is replaced
by another one; an HVP direction by another direction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.graph import Network
from mlpbp.engine.layers import Layer
from mlpbp.engine.losses import LOSSES
from mlpbp.engine.memory import describe_widths, gradcheck_bytes, n_params, network_bytes, require
from mlpbp.engine.network import MLP
from mlpbp.engine.norm import BatchNorm
from mlpbp.errors import ArgumentError
from mlpbp.tools.gradcheck_defaults import (  # noqa: F401  (re-exported: the API's defaults)
    DEFAULT_ATOL,
    DEFAULT_BATCH,
    DEFAULT_DIRECTIONS,
    DEFAULT_EPS,
    DEFAULT_RTOL,
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    FULL_MAX,
)

if TYPE_CHECKING:
    from mlpbp.run.config import Config

KINK_MARGIN = 100.0  # pre-activations closer to 0 than KINK_MARGIN·ε·scale trigger a nudge
NUDGE = 1e-3  # relative size of the random move of θ away from a kink
N_DETAILS = 5  # worst entries kept per check for the report

# how the report names each mode of a network checked in both
MODE_LABELS = {"train": "training mode (fixed dropout masks, batch statistics)", "eval": "evaluation mode"}

BUILTIN_WIDTHS = (3, 4, 4, 3)
BUILTIN_BATCH = 6


@dataclass
class Check:
    """One row of the report: one tensor (or scalar identity) checked against differences."""

    name: str  # what was checked, e.g. "W2 (layer 3 Linear 4->4)"
    shape: tuple[int, ...]
    max_abs_err: float
    max_rel_err: float
    ok: bool
    kind: str = "param"  # param | input | hvp | symmetry
    group: str = ""  # which network, in the built-in suite (e.g. "tanh/square")
    mode: str | None = None  # "train" | "eval" where a network was checked in both modes
    layer: int | None = None  # 1-based index into net.layers
    param: str | None = None  # parameter name (W1, b1, …) for a parameter check
    checked: int = 0  # entries compared
    skipped: int = 0  # entries left out because their difference crossed a ReLU-family kink
    # Worst entries (largest |a − n|): dicts with "index", "analytical", "numerical", "abs_err".
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.ok:
            return "fail"
        return "skip" if self.checked == 0 and self.skipped > 0 else "pass"

    @property
    def section(self) -> str:
        """The network and mode the check belongs to ("tanh/square", "evaluation mode")."""
        return ", ".join(s for s in (self.group, MODE_LABELS.get(self.mode, "")) if s)

    @property
    def full_name(self) -> str:
        return f"{self.section}: {self.name}" if self.section else self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.full_name,
            "shape": list(self.shape),
            "max_abs_err": _finite_or_none(self.max_abs_err),
            "max_rel_err": _finite_or_none(self.max_rel_err),
            "ok": self.ok,
            "status": self.status,
            "kind": self.kind,
            "network": self.group or None,
            "mode": self.mode,
            "layer": self.layer,
            "param": self.param,
            "checked": self.checked,
            "skipped_at_kink": self.skipped,
            "details": [
                {
                    **d,
                    "analytical": _finite_or_none(d["analytical"]),
                    "numerical": _finite_or_none(d["numerical"]),
                    "abs_err": _finite_or_none(d["abs_err"]),
                }
                for d in self.details
            ],
        }


@dataclass
class GradcheckReport:
    checks: list[Check] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def skipped(self) -> int:
        return sum(c.skipped for c in self.checks)

    @property
    def max_rel_err(self) -> float:
        return max((c.max_rel_err for c in self.checks), default=0.0)

    def extend(self, other: GradcheckReport) -> None:
        self.checks.extend(other.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_dict() for c in self.checks], "settings": self.settings}


# ---------------------------------------------------------------------------------------------
# Helpers


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def errors(analytical: np.ndarray, numerical: np.ndarray, floor: float = 0.0) -> tuple[float, float]:
    """(max_abs_err, max_rel_err) as defined in the module docstring; ``floor`` (atol/rtol)
    is the smallest scale the error is taken relative to."""
    a = np.asarray(analytical, np.float64)
    n = np.asarray(numerical, np.float64)
    if a.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - n)
        max_abs = float(diff.max()) if not np.isnan(diff).any() else float("nan")
        scale = max(float(np.abs(a).max()), float(np.abs(n).max()))
    if np.isnan(max_abs) or np.isnan(scale):
        return float("nan"), float("nan")
    if max_abs == 0.0:
        return 0.0, 0.0
    return max_abs, max_abs / max(scale, floor, np.finfo(np.float64).tiny)


def _passes(max_rel: float, rtol: float) -> bool:
    return bool(max_rel <= rtol)  # False for NaN


def _worst(index_of, a: np.ndarray, n: np.ndarray, k: int = N_DETAILS) -> list[dict[str, Any]]:
    diff = np.abs(a - n)
    diff = np.where(np.isnan(diff), np.inf, diff)
    order = np.argsort(-diff, kind="stable")[:k]
    return [
        {"index": index_of(int(i)), "analytical": float(a[i]), "numerical": float(n[i]), "abs_err": float(diff[i])}
        for i in order
    ]


def _compared(name: str, shape, a, n, idx, rtol: float, atol: float, index_of=None, **fields) -> Check:
    """A Check of analytical ``a`` against numerical ``n``; ``idx`` are the flat indices the
    entries came from (in an array of ``shape``) unless ``index_of`` names them."""
    max_abs, max_rel = errors(a, n, atol / rtol)
    if index_of is None:
        index_of = lambda k, ix=idx: tuple(int(t) for t in np.unravel_index(ix[k], shape))  # noqa: E731
    details = _worst(index_of, a, n) if len(idx) else []
    return Check(
        name=name,
        shape=tuple(shape),
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        ok=_passes(max_rel, rtol),
        checked=len(idx),
        details=details,
        **fields,
    )


class _WithWeights:
    """A network whose loss passes all take the same per-row weights (data.weight): the
    checks then compare the weighted J's gradients and HVPs; everything else is the network's."""

    def __init__(self, net: Network, w: np.ndarray) -> None:
        self._net, self._w = net, w

    def __getattr__(self, name):
        return getattr(self._net, name)

    def loss(self, X, y):
        return self._net.loss(X, y, self._w)

    def loss_and_grad(self, X, y):
        return self._net.loss_and_grad(X, y, self._w)

    def flat_grad(self, X, y):
        return self._net.flat_grad(X, y, self._w)

    def flat_hvp(self, X, y, v):
        return self._net.flat_hvp(X, y, v, self._w)


def _kinked_layers(net: MLP) -> list[Layer]:
    return [layer for layer in net.layers if layer.kinked]


def _pieces(net: MLP) -> np.ndarray | None:
    """Which side of the kink every relu-family pre-activation of the last forward pass is on."""
    acts = _kinked_layers(net)
    if not acts:
        return None
    return np.concatenate([np.ravel(l.z > 0) for l in acts])


def _loss_and_pieces(net: MLP, X, y) -> tuple[float, np.ndarray | None]:
    value = net.loss(X, y)
    return value, _pieces(net)


def _same(p0, p1, p2) -> bool:
    return p0 is None or (np.array_equal(p0, p1) and np.array_equal(p0, p2))


def _near_kink(net: MLP, X, y, eps: float) -> int:
    """How many relu-family pre-activations lie within KINK_MARGIN·ε·scale of the kink."""
    acts = _kinked_layers(net)
    if not acts:
        return 0
    net.loss(X, y)
    scale = max(1.0, float(np.abs(X).max()) if X.size else 1.0)
    margin = KINK_MARGIN * eps * scale
    return int(sum(np.count_nonzero(np.abs(l.z) < margin) for l in acts))


def _move_off_kinks(net: MLP, X, y, eps: float, resample: int, rng: np.random.Generator) -> int:
    """Nudge θ (at most ``resample`` times) while pre-activations sit at a kink; keep the best."""
    best = _near_kink(net, X, y, eps)
    if best == 0:
        return 0
    theta0 = net.get_flat()
    best_theta = theta0
    rms = float(np.sqrt(np.mean(theta0**2))) or 1.0
    for _ in range(resample):
        trial = theta0 + NUDGE * rms * rng.standard_normal(theta0.shape)
        net.set_flat(trial)
        near = _near_kink(net, X, y, eps)
        if near < best:
            best, best_theta = near, trial
            if near == 0:
                break
    net.set_flat(best_theta)
    return best


def _entry_order(size: int, samples: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Indices to try, and how many to check: all of a small tensor, else `samples` random
    ones (the rest of the permutation stands by to replace entries that sit at a kink)."""
    if size <= FULL_MAX:
        return np.arange(size), size
    return rng.permutation(size), min(samples, size)


def _differences(flat, f, analytical, eps, samples, rng, crosses_kink):
    """Central differences along entries j of ``flat`` (a live view, perturbed in place and
    restored): (f(θ + εeⱼ) − f(θ − εeⱼ)) / (θ⁺ⱼ − θ⁻ⱼ), beside ``analytical[j]``.

    ``f()`` returns (value, pieces); an entry whose difference ``crosses_kink(θⱼ, θ⁺ⱼ, θ⁻ⱼ,
    pieces⁺, pieces⁻)`` is skipped and replaced by the next one in line. Returns the analytical
    and numerical values, the entries compared and how many were skipped."""
    order, want = _entry_order(flat.size, samples, rng)
    a_vals, n_vals, idx, skipped = [], [], [], 0
    for j in order:
        if len(idx) >= want:
            break
        orig = flat[j]
        flat[j] = orig + eps
        hi, (f_plus, pieces_plus) = flat[j], f()  # hi, lo: the perturbed values as stored
        flat[j] = orig - eps
        lo, (f_minus, pieces_minus) = flat[j], f()
        flat[j] = orig
        if crosses_kink(orig, hi, lo, pieces_plus, pieces_minus):
            skipped += 1
            continue
        a_vals.append(analytical[j])
        n_vals.append((f_plus - f_minus) / (hi - lo))
        idx.append(int(j))
    return np.array(a_vals, np.float64), np.array(n_vals, np.float64), idx, skipped


# ---------------------------------------------------------------------------------------------
# The three checks


def _check_params(net: MLP, X, y, eps, rtol, atol, samples, rng) -> list[Check]:
    _, grads = net.loss_and_grad(X, y)
    p0 = _pieces(net)
    param_layer = {
        name: (i, layer)
        for i, (layer, names) in enumerate(zip(net.layers, net.layer_param_names), start=1)
        for name in names.values()
    }
    checks = []
    for name, p in net.params.items():
        i, layer = param_layer[name]
        a, n, idx, skipped = _differences(
            p.reshape(-1),
            lambda: _loss_and_pieces(net, X, y),
            grads[name].reshape(-1),
            eps,
            samples,
            rng,
            crosses_kink=lambda orig, hi, lo, pp, pm: not _same(p0, pp, pm),
        )
        checks.append(
            _compared(
                f"{name} (layer {i} {layer.label})",
                p.shape,
                a,
                n,
                idx,
                rtol,
                atol,
                kind="param",
                layer=i,
                param=name,
                skipped=skipped,
            )
        )
    return checks


def _layer_label(i: int, layer: Layer) -> str:
    return f"layer {i} ({layer.label})"


def _check_layer_inputs(net: Network, X, y, eps, rtol, atol, samples, rng) -> list[Check]:
    """Each module's backward in isolation, at the inputs it sees inside the network: for a
    random G, backward(G) against differences of ⟨G, forward(u)⟩ in each input u (not for a
    module whose input is not differentiable, such as an embedding's codes)."""
    net._forward(np.asarray(X, np.float64), keep=True)
    values = [None if v is None else v.copy() for v in net._vals]  # buffers are reused: copied
    checks = []
    for i, (layer, srcs) in enumerate(zip(net.layers, net.sources), start=1):
        if not layer.differentiable_input:
            continue
        single = layer.n_inputs == 1
        us = [values[j].copy() for j in srcs]

        def fwd(us=us, single=single, layer=layer):
            return layer.forward(us[0] if single else us)

        G = rng.standard_normal(fwd().shape)
        grads = layer.backward(G)
        grads = [grads] if single else grads
        for k, (u, a_k) in enumerate(zip(us, grads)):
            kinked = layer.kinked
            a_full = np.array(a_k, np.float64, copy=True)  # backward's buffer is reused
            a, n, idx, skipped = _differences(
                u.reshape(-1),
                lambda fwd=fwd: (float(np.vdot(G, fwd())), None),
                a_full.reshape(-1),
                eps,
                samples,
                rng,
                crosses_kink=lambda orig, hi, lo, *_, kinked=kinked: (
                    kinked and not ((hi > 0) == (orig > 0) == (lo > 0))
                ),
            )
            which = "" if single else f" {k + 1}"
            checks.append(
                _compared(
                    f"{_layer_label(i, layer)} input{which}",
                    u.shape,
                    a,
                    n,
                    idx,
                    rtol,
                    atol,
                    kind="input",
                    layer=i,
                    skipped=skipped,
                )
            )
    return checks


def _flat_index_name(net: MLP):
    names, offsets, shapes, off = [], [], [], 0
    for k, p in net.params.items():
        names.append(k)
        offsets.append(off)
        shapes.append(p.shape)
        off += p.size

    def index_of(j: int) -> str:
        r = int(np.searchsorted(offsets, j, side="right")) - 1
        loc = tuple(int(t) for t in np.unravel_index(j - offsets[r], shapes[r]))
        return f"{names[r]}[{', '.join(map(str, loc))}]"

    return index_of


def _check_hvp(net: MLP, X, y, eps, rtol, atol, directions, resample, rng) -> list[Check]:
    theta = net.get_flat()
    n = theta.size
    index_of = _flat_index_name(net)
    checks, Hs = [], []

    def unit():
        v = rng.standard_normal(n)
        return v / np.linalg.norm(v)

    def grad_and_pieces(t):
        net.set_flat(t)
        _, g = net.flat_grad(X, y)
        return g, _pieces(net)

    _, p0 = grad_and_pieces(theta)
    for d in range(1, directions + 1):
        skipped = 0
        for _ in range(resample + 1):
            v = unit()
            gp, pp = grad_and_pieces(theta + eps * v)
            gm, pm = grad_and_pieces(theta - eps * v)
            net.set_flat(theta)
            if _same(p0, pp, pm):
                break
            skipped += 1
        else:
            checks.append(Check(f"HVP direction {d}", (n,), 0.0, 0.0, True, kind="hvp", checked=0, skipped=skipped))
            continue
        Hv = net.flat_hvp(X, y, v)
        Hs.append((v, Hv))
        numerical = (gp - gm) / (2 * eps)
        checks.append(
            _compared(
                f"HVP direction {d}",
                (n,),
                Hv,
                numerical,
                range(n),
                rtol,
                atol,
                index_of,
                kind="hvp",
                skipped=skipped,
            )
        )
    # Symmetry of the analytical H: ⟨u, Hv⟩ = ⟨v, Hu⟩ (no differences, so no kinks).
    u, v = unit(), unit()
    Hu, Hv = net.flat_hvp(X, y, u), net.flat_hvp(X, y, v)
    uHv, vHu = float(u @ Hv), float(v @ Hu)
    scale = max(np.linalg.norm(u) * np.linalg.norm(Hv), np.linalg.norm(v) * np.linalg.norm(Hu))
    max_abs = abs(uHv - vHu)
    max_rel = 0.0 if max_abs == 0 else max_abs / max(scale, atol / rtol, np.finfo(np.float64).tiny)
    if not np.isfinite(max_abs):
        max_abs = max_rel = float("nan")
    checks.append(
        Check(
            name="HVP symmetry <u,Hv> = <v,Hu>",
            shape=(),
            max_abs_err=max_abs,
            max_rel_err=max_rel,
            ok=_passes(max_rel, rtol),
            kind="symmetry",
            checked=1,
            details=[{"index": "<u,Hv> vs <v,Hu>", "analytical": uHv, "numerical": vHu, "abs_err": max_abs}],
        )
    )
    return checks


# ---------------------------------------------------------------------------------------------
# Public API


def check_network(
    net: Network,
    X,
    y,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    directions: int = DEFAULT_DIRECTIONS,
    resample: int = 5,
    group: str = "",
    mode: str | None = None,
    sample_weight=None,
) -> GradcheckReport:
    """Check ``net``'s gradients, module input gradients and HVPs at (X, y) in float64, in
    the net's mode (training: every dropout keeps one mask throughout; evaluation), or in
    ``mode`` ("train" | "eval"), which each check then names; with ``sample_weight`` (one
    weight per row), those of the weighted mean J.

    ``net`` is copied (float64, ``astype``) and left untouched. ``samples``: entries checked per tensor
    larger than ``FULL_MAX``; ``directions``: random HVP directions; ``resample``: how often
    a point at a ReLU-family kink (or an HVP direction crossing one) is drawn again.
    """
    _validate(eps, rtol, atol, samples, seed)
    require(
        gradcheck_bytes(net.widths, np.shape(X)[0], directions) - network_bytes(net.widths, "float64"),
        _checking(net.widths),
    )  # the network given is already allocated
    rng = np.random.default_rng(seed)
    net = net.astype(np.float64)
    if mode is not None:
        net.train(mode == "train")
    X = np.asarray(X, np.float64)
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        y = y.astype(np.float64)
    with net.fixed_masks():  # training mode: one dropout mask for every difference
        checked = net if sample_weight is None else _WithWeights(net, np.asarray(sample_weight, np.float64))
        _move_off_kinks(checked, X, y, eps, resample, rng)
        checks = _check_params(checked, X, y, eps, rtol, atol, samples, rng) + _check_layer_inputs(
            net, X, y, eps, rtol, atol, samples, rng
        )
        if net.curvature_ready:  # a module without R-passes trains and is checked, but has no HVP
            checks += _check_hvp(checked, X, y, eps, rtol, atol, directions, resample, rng)
    for c in checks:
        c.group, c.mode = group, mode
    settings = {
        "eps": eps,
        "rtol": rtol,
        "atol": atol,
        "samples": samples,
        "seed": seed,
        "directions": directions,
        "mode": "train" if net.training else "eval",
        **({"weighted": True} if sample_weight is not None else {}),
    }
    if not net.curvature_ready:  # say so: "All 9 checks passed" read as if the HVPs were among them
        settings["no_hvp"] = sorted({m.kind for m in net.layers if not m.has_curvature})
    return GradcheckReport(checks, settings)


def _validate(eps, rtol, atol, samples, seed=DEFAULT_SEED) -> None:
    _check_seed(seed)
    if not (np.isfinite(eps) and eps > 0):
        raise ArgumentError(f"eps must be a positive number; got {eps}", argument="eps")
    if not (np.isfinite(rtol) and rtol > 0):
        raise ArgumentError(f"rtol must be a positive number; got {rtol}", argument="rtol")
    if not (np.isfinite(atol) and atol >= 0):
        raise ArgumentError(f"atol must be >= 0; got {atol}", argument="atol")
    if int(samples) != samples or samples < 1:
        raise ArgumentError(f"samples must be an integer >= 1; got {samples}", argument="samples")


def _check_seed(seed) -> None:
    # NumPy refuses a negative seed with "expected non-negative integer": the argument's name here
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArgumentError(f"seed must be an integer >= 0; got {seed}", argument="seed")


def builtin_network(
    activation: str, loss: str, seed: int = DEFAULT_SEED, widths=BUILTIN_WIDTHS, batch: int = BUILTIN_BATCH
):
    """A small float64 network (random, non-zero biases) and a batch for it: (net, X, y)."""
    rng = np.random.default_rng(seed)
    net = MLP(list(widths), activation, loss, seed=seed, dtype="float64")
    for name, p in net.params.items():
        if name.startswith("b"):
            p[...] = 0.1 * rng.standard_normal(p.shape)
    X = rng.standard_normal((batch, widths[0]))
    y = LOSSES.lookup(loss).example_targets(rng, batch, widths[-1])  # targets of the loss's kind
    return net, X, y


def check_builtin(
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    activations=None,
    losses=None,
) -> GradcheckReport:
    """Every activation × every loss on a small built-in network (widths 3-4-4-3, batch 6)."""
    _validate(eps, rtol, atol, samples, seed)
    report = GradcheckReport(settings={"eps": eps, "rtol": rtol, "atol": atol, "samples": samples, "seed": seed})
    # each function once: an alias (logistic for sigmoid) is the same function under another name
    for act in activations or [name for name, fn in ACTIVATIONS.items() if fn.name == name]:
        for loss in losses or LOSSES:
            net, X, y = builtin_network(act, loss, seed)
            report.extend(check_network(net, X, y, eps, rtol, atol, samples, seed, group=f"{act}/{loss}"))
    return report


def _checking(widths) -> str:
    return (
        f"checking a {describe_widths(widths)} network ({n_params(widths):,} parameters: a float64 copy and"
        " the flat vectors of the finite differences and HVP checks)"
    )


def network_for_config(cfg: Config, batch: int = DEFAULT_BATCH, seed: int = DEFAULT_SEED, weights: bool = False):
    """The config's network in float64, and a small standardised batch of its data: (net, X, y);
    with ``weights``, (net, X, y, w): w the rows' data.weight weights (None without one).

    Widths come from the data: d inputs, the config's hidden widths, then the number of
    classes (classification) or target columns (regression)."""
    from mlpbp.run.prepare import build_model, prepare  # the config path only

    # The training split exactly as training sees it (standardised), in float64.
    data = prepare(cfg, dtype="float64")
    X, y = data.train
    widths = [X.shape[1], *cfg.model.hidden, data.n_outputs]
    require(gradcheck_bytes(widths, min(batch, X.shape[0]), DEFAULT_DIRECTIONS), _checking(widths), key="model.hidden")
    net = build_model(
        cfg,
        X.shape[1],
        data.n_outputs,
        data.task,
        dtype="float64",
        class_weight=data.class_weight,
        preprocessor=data.preprocessor,
    )
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(X.shape[0], size=min(batch, X.shape[0]), replace=False))
    if weights:
        w = data.weights("train")
        return net, X[rows], y[rows], None if w is None else w[rows]
    return net, X[rows], y[rows]


def check_config(
    cfg: Config,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    batch: int = DEFAULT_BATCH,
) -> GradcheckReport:
    """Check the network a config describes on a small (seeded) batch of its data."""
    _validate(eps, rtol, atol, samples, seed)
    if batch < 1:
        raise ArgumentError(f"batch must be >= 1; got {batch}", argument="batch")
    net, X, y, w = network_for_config(cfg, batch, seed, weights=True)
    if len(X) < 2 and any(isinstance(m, BatchNorm) for m in net.layers):
        # the training-mode check normalises by the batch: one row is the engine's ValueError,
        # which the CLI reported as a bug in mlpbp
        raise ArgumentError(
            f"batch must be >= 2 for a network with batch_norm (it normalises by the batch's statistics); got {len(X)}",
            argument="batch",
        )
    return check_modes(net, X, y, eps, rtol, atol, samples, seed, sample_weight=w)


def check_modes(
    net: Network,
    X,
    y,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    sample_weight=None,
) -> GradcheckReport:
    """``check_network`` in training mode (every dropout keeps one mask) and, when evaluation
    mode computes another function (dropout, batch_norm: ``Network.eval_mode_changes``), in
    evaluation mode too: every check once per mode, ``settings["modes"]`` listing them."""
    if not net.eval_mode_changes():
        report = check_network(net, X, y, eps, rtol, atol, samples, seed, sample_weight=sample_weight)
        report.settings["modes"] = [report.settings["mode"]]
        return report
    report = check_network(net, X, y, eps, rtol, atol, samples, seed, mode="train", sample_weight=sample_weight)
    report.extend(check_network(net, X, y, eps, rtol, atol, samples, seed, mode="eval", sample_weight=sample_weight))
    report.settings.pop("mode")
    report.settings["modes"] = ["train", "eval"]
    report.settings["eval_changes"] = net.eval_mode_changes()
    return report
