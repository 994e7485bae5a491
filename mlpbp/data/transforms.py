"""Monotone transforms of one numeric column (or regression target), fitted on the training
split, applied before the standardisation (x − mean) / scale:

- ``standardize``: none here; the mean and scale do it.
- ``log1p``: sign(x)·log(1 + |x|), which is log1p on x ≥ 0 and defined everywhere; then
  standardised. Its inverse is sign(z)·(exp(|z|) − 1).
- ``quantile``: to a standard normal, as scikit-learn's
  ``QuantileTransformer(output_distribution="normal")``: up to ``N_QUANTILES`` training
  quantiles, each mapped to the normal quantile of its rank (clipped at ±5.2, the normal's
  1e-7 quantiles, as scikit-learn does), linear in between, clamped outside the training range.
  A run of equal quantiles (a value many rows share) is one knot at the run's middle rank.
  Strictly increasing knots make it exactly invertible on the training range, and the same
  piecewise-linear function is what the ONNX graph computes.
- ``robust``: (x − median) / IQR, the mean and scale set from the quartiles (scikit-learn's
  RobustScaler); an IQR of 0 falls back to the standard deviation, then 1.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

N_QUANTILES = 1000  # scikit-learn's default
BOUND = 1e-7  # scikit-learn's BOUNDS_THRESHOLD: the normal quantile at the ends is ±5.199
SKEW = 1.0  # auto: a column whose sample skewness exceeds this in size is quantile-transformed
TRANSFORMS = ("standardize", "quantile", "log1p", "robust", "none")


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def signed_expm1(z: np.ndarray) -> np.ndarray:
    return np.sign(z) * np.expm1(np.abs(z))


def quantile_knots(x: np.ndarray, n_quantiles: int = N_QUANTILES) -> tuple[np.ndarray, np.ndarray]:
    """(knots in x, knots in the normal's units) of the quantile transform fitted on ``x``."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.array([0.0]), np.array([0.0])
    n = min(n_quantiles, x.size)
    refs = np.linspace(0.0, 1.0, n)
    q = np.quantile(x, refs)  # numpy's default (linear), as scikit-learn's np.nanpercentile
    z = ndtri(np.clip(refs, BOUND, 1 - BOUND))
    uq, start, counts = np.unique(q, return_index=True, return_counts=True)
    # equal quantiles: one knot at the run's middle rank (scikit-learn averages the forward and
    # backward interpolations, which gives that value at the knot)
    uz = np.array([z[s : s + c].mean() for s, c in zip(start, counts)])
    return uq, uz


def interp(x: np.ndarray, xk: np.ndarray, yk: np.ndarray) -> np.ndarray:
    """Piecewise-linear through the knots (xk increasing), clamped to the end values; NaN stays NaN."""
    return np.interp(x, xk, yk) if xk.size > 1 else np.where(np.isnan(x), np.nan, yk[0])


def skewness(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size < 3:
        return 0.0
    sd = x.std()
    return 0.0 if sd == 0 else float(np.mean(((x - x.mean()) / sd) ** 3))


def choose(x: np.ndarray) -> str:
    """``auto``: standardize a roughly symmetric column; a skewed one (|sample skewness| > SKEW)
    with more than 2 distinct values gets log1p when it is never negative and skewed to the right
    (amounts, counts, sizes: multiplicative effects become additive), else the quantile
    transform. A binary column stays as it is. (For a regression target, ``Preprocessor.fit``
    then keeps log1p only where the target is not more linear in x itself: ``more_linear_raw``.)"""
    finite = x[np.isfinite(x)]
    if np.unique(finite[:10_000]).size <= 2:
        return "standardize"
    skew = skewness(finite)
    if abs(skew) <= SKEW:
        return "standardize"
    return "log1p" if skew > 0 and finite.min() >= 0 else "quantile"


def more_linear_raw(x: np.ndarray, target: np.ndarray) -> bool:
    """Whether a ``target`` is more nearly linear in ``x`` itself than in log1p(x): the larger
    |Pearson r| with any of its outputs, and one beyond chance (|r| > 2/√n, about the 95% level
    for a column unrelated to the target, which keeps log1p). A regression target is given as
    the network fits it (rows × outputs); a classification target as its class codes (an
    integer vector), whose outputs are the classes' indicators (one-vs-rest), summed per class
    without forming them. ``auto`` then standardises a skewed column instead of taking its log:
    the first layer is linear in its inputs and a ReLU network extrapolates linearly, so a value
    that grows with x (a price with a floor area, the odds of a high income with a capital
    gain) is fitted worse, at the top most, from log x."""
    x = np.asarray(x, np.float64)
    codes = np.asarray(target)
    classes = codes.ndim == 1 and codes.dtype.kind in "iu"
    Y = None if classes else np.asarray(target, np.float64).reshape(len(target), -1)
    ok = np.isfinite(x) if classes else np.isfinite(x) & np.isfinite(Y).all(axis=1)
    x = x[ok]
    if x.size < 3:
        return False
    if classes:
        codes = codes[ok]
        counts = np.bincount(codes).astype(np.float64)
        spread = counts * (1 - counts / x.size)  # n × the variance of each class's indicator
    else:
        Y = Y[ok]
        B = Y - Y.mean(axis=0)
        spread = (B * B).sum(axis=0)

    def r(a: np.ndarray) -> float:
        a = a - a.mean()
        cov = np.bincount(codes, weights=a, minlength=counts.size) if classes else a @ B
        den = np.sqrt((a @ a) * spread)
        with np.errstate(all="ignore"):
            return float(np.nanmax(np.where(den > 0, np.abs(cov) / den, 0.0)))

    raw = r(x)
    return raw > 2 / np.sqrt(x.size) and raw > r(signed_log1p(x))


def choose_many(V: np.ndarray) -> list[str]:
    """``choose`` for each column of ``V`` (missing values NaN), as one NumPy call per step for
    all of them (a wide table's columns); the same rules, the same sums (in the order of the rows)."""
    n, k = V.shape
    out = ["standardize"] * k
    full = np.isfinite(V).all(axis=0)
    for j in np.flatnonzero(~full):  # a column with missing cells: on its own
        out[j] = choose(V[:, j])
    cols = np.flatnonzero(full)
    if n < 3 or not cols.size:
        return out
    X = np.ascontiguousarray(V[:, cols].T)  # a row per column: the sums of choose(), in its order
    if n <= 10_000:  # the distinct values among the first 10,000: all of them
        S = np.sort(X, axis=1)
        binary = (S[:, 1:] != S[:, :-1]).sum(axis=1) + 1 <= 2
    else:
        binary = np.array([np.unique(x[:10_000]).size <= 2 for x in X])
    sd = X.std(axis=1)
    with np.errstate(all="ignore"):
        skew = np.mean(((X - X.mean(axis=1)[:, None]) / sd[:, None]) ** 3, axis=1)
    skew = np.where(sd == 0, 0.0, skew)
    lowest = X.min(axis=1)
    for j, b, s, lo in zip(cols.tolist(), binary.tolist(), skew.tolist(), lowest.tolist()):
        if not b and abs(s) > SKEW:
            out[j] = "log1p" if s > 0 and lo >= 0 else "quantile"
    return out


def robust_center_scale(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0, 1.0
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    iqr = q3 - q1
    scale = iqr if iqr > 0 else (x.std() if x.std() > 0 else 1.0)
    return float(med), float(scale)


class Transform:
    """One column's monotone transform: ``kind`` (one of TRANSFORMS) and, for quantile, its knots.
    The standardisation after it is the caller's (a Preprocessor's mean and scale)."""

    def __init__(self, kind: str = "standardize", knots: tuple[np.ndarray, np.ndarray] | None = None):
        if kind not in TRANSFORMS:
            raise ValueError(f"transform {kind!r}")
        self.kind = kind
        self.knots = knots
        if kind == "quantile":
            xk, zk = (np.asarray(k, np.float64) for k in knots)
            if (
                xk.ndim != 1
                or xk.shape != zk.shape
                or xk.size == 0
                or not (np.all(np.isfinite(xk)) and np.all(np.isfinite(zk)))
            ):
                raise ValueError("quantile knots")
            if np.any(np.diff(xk) <= 0) or np.any(np.diff(zk) < 0):
                raise ValueError("quantile knots must increase")
            self.knots = (xk, zk)

    @classmethod
    def fit(cls, kind: str, x: np.ndarray) -> Transform:
        return cls(kind, quantile_knots(x) if kind == "quantile" else None)

    @property
    def is_identity(self) -> bool:
        return self.kind in ("standardize", "none", "robust")  # robust: the mean and scale do it

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "log1p":
            return signed_log1p(x)
        if self.kind == "quantile":
            return interp(x, *self.knots)
        return x

    def inverse(self, z: np.ndarray) -> np.ndarray:
        if self.kind == "log1p":
            return signed_expm1(z)
        if self.kind == "quantile":
            xk, zk = self.knots
            return interp(z, zk, xk)
        return z

    def to_meta(self) -> dict:
        out = {"kind": self.kind}
        if self.kind == "quantile":
            out["x"], out["z"] = self.knots[0].tolist(), self.knots[1].tolist()  # JSON floats round-trip exactly
        return out

    @classmethod
    def from_meta(cls, meta: dict | None) -> Transform:
        if meta is None:
            return cls()
        kind = meta["kind"]
        knots = (np.array(meta["x"], np.float64), np.array(meta["z"], np.float64)) if kind == "quantile" else None
        return cls(kind, knots)


PLE_BINS = 16  # data.ple_bins: the quantile bins of a piecewise-linear encoding


class PiecewiseLinear:
    """The piecewise-linear encoding (PLE) of one numeric column, Gorishniy, Rubachev & Babenko,
    "On Embeddings for Numerical Features in Tabular Deep Learning" (2022), with quantile bins:
    for bin edges b₀ < b₁ < … < b_T (the training split's quantiles), x becomes T columns

        e_t = clip((x − b_{t−1}) / (b_t − b_{t−1}), 0, 1),

    except that e₁ is not clipped below and e_T not above (so values beyond the training range
    keep a slope). A value inside bin t reads (1, …, 1, fraction, 0, …, 0): the first layer
    learns one slope per bin, any piecewise-linear function of x with these knots."""

    def __init__(self, edges) -> None:
        edges = np.asarray(edges, np.float64)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise ValueError("piecewise-linear bin edges must be 2 or more finite, increasing numbers")
        self.edges = edges

    @classmethod
    def fit(cls, x: np.ndarray, bins: int = PLE_BINS) -> PiecewiseLinear:
        x = np.asarray(x, np.float64)
        x = x[np.isfinite(x)]
        if x.size == 0:
            return cls([0.0, 1.0])
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)))
        return cls(edges if edges.size >= 2 else [edges[0], edges[0] + 1.0])  # a constant column: one bin

    @property
    def width(self) -> int:
        return self.edges.size - 1

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Each column's clip range: [0, 1], the first unbounded below and the last above."""
        lo, hi = np.zeros(self.width), np.ones(self.width)
        lo[0], hi[-1] = -np.inf, np.inf
        return lo, hi

    def encode(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        e = (x[:, None] - self.edges[:-1]) / np.diff(self.edges)
        lo, hi = self.bounds()
        return np.minimum(np.maximum(e, lo), hi)

    def to_meta(self) -> dict:
        return {"edges": self.edges.tolist()}  # JSON floats round-trip exactly

    @classmethod
    def from_meta(cls, meta: dict) -> PiecewiseLinear:
        return cls(meta["edges"])


class TargetScaler:
    """A regression target's transform, then its standardisation (``Standardizer``'s mean and
    scale), with the exact inverse: what ``y_scaler`` is for a model with data.target_transform
    log1p or quantile. Metrics and predictions go through ``inverse_transform``."""

    def __init__(self, transforms: list[Transform], mean: np.ndarray, scale: np.ndarray):
        self.transforms = transforms
        self.mean = np.asarray(mean, np.float64)
        self.scale = np.asarray(scale, np.float64)

    @classmethod
    def fit(cls, kind: str, y: np.ndarray) -> TargetScaler:
        y = np.asarray(y, np.float64).reshape(len(y), -1)
        ts = [Transform.fit(kind, y[:, j]) for j in range(y.shape[1])]
        z = np.column_stack([t.forward(y[:, j]) for j, t in enumerate(ts)])
        if kind == "quantile":  # already standard normal
            return cls(ts, np.zeros(z.shape[1]), np.ones(z.shape[1]))
        sd = z.std(axis=0)
        return cls(ts, z.mean(axis=0), np.where(sd > 0, sd, 1.0))

    @property
    def kind(self) -> str:
        return self.transforms[0].kind

    def transform(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, np.float64).reshape(len(y), -1)
        z = np.column_stack([t.forward(y[:, j]) for j, t in enumerate(self.transforms)])
        return (z - self.mean) / self.scale

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float64).reshape(len(z), -1) * self.scale + self.mean
        return np.column_stack([t.inverse(z[:, j]) for j, t in enumerate(self.transforms)])

    def to_meta(self) -> dict:
        return {"transforms": [t.to_meta() for t in self.transforms]}
