"""Normalisation: y = γ ⊙ x̂ + β with x̂ = (x − μ)·s, s = 1/√(σ² + ε), as PyTorch defines them.

``batch_norm`` takes μ and σ² (biased) over the batch (axis 0) in training, and the running
statistics in evaluation (running_mean/running_var updated with ``momentum``, the unbiased
variance n/(n−1)·σ² kept, as ``torch.nn.BatchNorm1d``); ``layer_norm`` takes them over each
row's features (axis 1) always.

The chain rule through statistics taken from the same data, with M the mean over the
normalised axis, ĝ = γ ⊙ ∂J/∂y:

    ∂J/∂x = s·(ĝ − M(ĝ) − x̂ ⊙ M(ĝ ⊙ x̂)),   ∂J/∂γ = Σ_rows ∂J/∂y ⊙ x̂,   ∂J/∂β = Σ_rows ∂J/∂y

and its R-operator (for Hessian-vector products), with k = M(x̂ ⊙ R{x}):

    R{x̂} = s·(R{x} − M(R{x}) − x̂ k),   R{s} = −s² k,   R{y} = V_γ x̂ + γ R{x̂} + V_β,
    R{∂J/∂x} = −s k ∂J/∂x + s·(R{ĝ} − M(R{ĝ}) − R{x̂} M(ĝ x̂) − x̂ M(R{ĝ} x̂ + ĝ R{x̂})),
    R{ĝ} = γ R{∂J/∂y} + V_γ ∂J/∂y.

In evaluation a batch_norm is affine in x (μ, s fixed): ∂J/∂x = s γ ∂J/∂y, R{x̂} = s R{x}.

batch_norm in training computes these in few passes over its (rows × features) data: forward,
Σx (BLAS gemv against ones), Σx², then y = x·(sγ) + (β − μsγ) (a scale, and the shift as a
rank-1 BLAS update), 4 passes, with σ² = M(x²) − μ² (6 where a feature's mean is far off
centre, ``BatchNorm.RAW``: x − μ is then written and σ² taken from it); backward, Σ g, Σ g x,
then ∂J/∂x = a g − (x − μ)c − shift, 6. x̂ itself is formed only for the R-passes.

Every M over the batch is a sum over its rows divided by their count. When the rows of a batch
are split between processes (MPI ranks), a batch_norm given a ``WholeBatch`` takes each of
those sums over every process's rows (as ``torch.nn.SyncBatchNorm``): Σx, Σx² and the row
count in the forward pass (in one collective), M(ĝ) and M(ĝ x̂) in the backward pass, and
k, M(R{x}), M(R{ĝ}) and M(R{ĝ} x̂ + ĝ R{x̂}) in the R-passes, so every rank computes what one
process holding the whole batch computes for its rows.
"""

from __future__ import annotations

import numpy as np

from mlpbp.engine.blas import add_column_sums, add_outer
from mlpbp.engine.module import MODULES, BuildContext, Module, check_option


class WholeBatch:
    """The batch a batch_norm normalises over, when processes each hold some of its rows. This
    base is one process alone (it changes nothing); ``mlpbp.run.distributed.RankBatch`` sums
    over MPI ranks, keeping the engine free of MPI.

    ``sum_(v)`` sums a vector over the processes, in place (every process passes its own sums,
    in the same order). ``scale`` is this process's share of the batch's loss: its loss's
    denominator (its rows, or their weights) over the whole batch's, which turns the ∂J/∂y of
    this process's mean loss into the batch's before the gradient sums are added up."""

    scale = 1.0

    def sum_(self, v: np.ndarray) -> None:
        """Sum ``v`` over the processes in place: nothing to add alone."""


def _positive(kind: str, name: str, value) -> float:
    check_option(kind, name, value, (int, float), "a number")
    if not value > 0:
        raise ValueError(f"{kind} option {name} must be > 0; got {value}")
    return float(value)


class _Norm(Module):
    """What batch_norm and layer_norm share; ``axis`` is the one statistics are taken over."""

    axis = 0
    param_group = "norm"
    fresh_output = True

    def __init__(self, eps=1e-5) -> None:
        super().__init__()
        self.eps = _positive(self.kind, "eps", eps)

    def param_shapes(self, in_widths):
        return {"gamma": (in_widths[0],), "beta": (in_widths[0],)}

    def build(self, in_widths, ctx: BuildContext) -> None:
        super().build(in_widths, ctx)
        d = in_widths[0]
        self.gamma, self.beta = np.ones(d, self.dtype), np.zeros(d, self.dtype)
        self.params = {"gamma": self.gamma, "beta": self.beta}
        self.grads = {k: np.zeros_like(p) for k, p in self.params.items()}

    def flops(self, in_widths, out_width):
        return 8 * out_width, 14 * out_width

    @property
    def _batch_stats(self) -> bool:
        return True

    def _mean(self, a: np.ndarray) -> np.ndarray:
        return a.mean(axis=self.axis, keepdims=self.axis == 1)

    def _rowmean(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """M(a ⊙ b) over the normalised axis, without a temporary of a's size."""
        spec = "ij,ij->j" if self.axis == 0 else "ij,ij->i"
        m = np.einsum(spec, a, b) / a.shape[self.axis]
        return m if self.axis == 0 else m[:, None]

    def _whole_sums(self, parts: tuple[np.ndarray, ...], loss: bool) -> tuple[tuple[np.ndarray, ...], float]:
        """(sums, count) over the whole batch from this process's per-feature sums ``parts``
        over its rows: the same alone. ``loss``: sums of gradients (in units of this
        process's loss), which stay in those units."""
        return parts, self.n

    def _statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x̂, s) of this forward pass; x̂ in a reused buffer."""
        self.n = x.shape[self.axis]
        self.mu = mu = self._mean(x)
        xh = np.subtract(x, mu, out=self._buffer("xh", x.shape))
        self.var = self._rowmean(xh, xh)
        s = 1.0 / np.sqrt(self.var + self.eps)
        xh *= s
        return xh, s

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.xh, self.s = xh, _ = self._statistics(x)
        y = np.multiply(xh, self.gamma, out=self._buffer("y", x.shape))
        y += self.beta
        return y

    def backward(self, g, *, need_input_grad=True, need_param_grad=True, in_place=False):
        self.g, xh = g, self.xh
        dgamma, dbeta = np.einsum("ij,ij->j", g, xh), g.sum(axis=0)
        if need_param_grad:
            self.grads["gamma"][...], self.grads["beta"][...] = dgamma, dbeta
        if not need_input_grad:
            return None
        gh = np.multiply(g, self.gamma, out=self._buffer("gh", g.shape))
        dx = self._buffer("dx", g.shape)
        if not self._batch_stats:  # affine in x: ∂J/∂x = s γ ∂J/∂y
            return np.multiply(gh, self.s, out=dx)
        if self.axis == 0:  # M(ĝ) = γ ∂J/∂β / n and M(ĝ x̂) = γ ∂J/∂γ / n: no pass over the data
            (b, c), n = self._whole_sums((dbeta, dgamma), loss=True)
            self.m1, self.m2 = self.gamma * b / n, self.gamma * c / n
        else:
            self.m1, self.m2 = self._mean(gh), self._rowmean(gh, xh)
        np.multiply(xh, self.m2, out=dx)
        np.subtract(gh, dx, out=dx)
        dx -= self.m1
        dx *= self.s
        self.gh, self.dx = gh, dx
        return dx

    def rforward(self, r_x, V):
        xh, s = self.xh, self.s
        if r_x is None:
            self.r_xh, self.k = None, None
        elif not self._batch_stats:
            self.r_xh, self.k = r_x * s, None
        else:
            if self.axis == 0:
                (a, b), n = self._whole_sums((np.einsum("ij,ij->j", xh, r_x), r_x.sum(axis=0)), loss=False)
                k, mean_r = a / n, b / n
            else:
                k, mean_r = self._rowmean(xh, r_x), self._mean(r_x)
            self.k = k
            r_xh = np.multiply(xh, k, out=self._buffer("r_xh", xh.shape))
            np.subtract(r_x, r_xh, out=r_xh)
            r_xh -= mean_r
            r_xh *= s
            self.r_xh = r_xh
        r_y = np.multiply(xh, V["gamma"], out=self._buffer("r_y", xh.shape))
        r_y += V["beta"]
        if self.r_xh is not None:
            r_y += self.gamma * self.r_xh
        return r_y

    def rbackward(self, r_g, V, out=None, need_input_grad=True):
        if out is None:
            out = {k: np.empty_like(p) for k, p in self.params.items()}
        g, xh, r_xh = self.g, self.xh, self.r_xh
        r_dgamma = np.einsum("ij,ij->j", r_g, xh)
        if r_xh is not None:
            r_dgamma += np.einsum("ij,ij->j", g, r_xh)
        out["gamma"][...] = r_dgamma
        r_g.sum(axis=0, out=out["beta"])
        if not need_input_grad:
            return None, out
        r_gh = np.multiply(r_g, self.gamma, out=self._buffer("r_gh", g.shape))
        r_gh += g * V["gamma"]
        if not self._batch_stats:
            r_gh *= self.s
            return r_gh, out
        if self.axis == 0:
            parts = (r_gh.sum(axis=0), np.einsum("ij,ij->j", r_gh, xh))
            if r_xh is not None:  # Σ ĝ R{x̂} = γ Σ ∂J/∂y R{x̂}
                parts += (self.gamma * np.einsum("ij,ij->j", g, r_xh),)
            parts, n = self._whole_sums(parts, loss=True)
            r_m1, r_m2 = parts[0] / n, parts[1] / n
            if r_xh is not None:
                r_m2 += parts[2] / n
        else:
            r_m1 = self._mean(r_gh)
            r_m2 = self._rowmean(r_gh, xh)
            if r_xh is not None:
                r_m2 += self._rowmean(self.gh, r_xh)
        r_dx = np.multiply(xh, r_m2, out=self._buffer("r_dx", g.shape))
        np.subtract(r_gh, r_dx, out=r_dx)
        r_dx -= r_m1
        if r_xh is not None:
            r_dx -= r_xh * self.m2
        r_dx *= self.s
        if self.k is not None:
            r_dx -= (self.s * self.k) * self.dx
        return r_dx, out


class BatchNorm(_Norm):
    """Batch normalisation (Ioffe & Szegedy 2015) over the batch, per feature."""

    kind = "batch_norm"
    axis = 0
    eval_changes = "batch_norm's running statistics"
    #: in training, the batch its statistics are taken over, when processes share its rows
    #: (``Network.share_batches``); None: the rows it is given are the batch
    whole_batch: WholeBatch | None = None

    def __init__(self, momentum=0.1, eps=1e-5) -> None:
        super().__init__(eps)
        check_option(self.kind, "momentum", momentum, (int, float), "a number")
        if not 0 <= momentum <= 1:
            raise ValueError(f"batch_norm option momentum must be in [0, 1]; got {momentum}")
        self.momentum = float(momentum)

    def options(self) -> dict:
        return {"momentum": self.momentum, "eps": self.eps}

    def build(self, in_widths, ctx: BuildContext) -> None:
        super().build(in_widths, ctx)
        d = in_widths[0]
        self.running_mean, self.running_var = np.zeros(d, self.dtype), np.ones(d, self.dtype)
        self.buffers = {"running_mean": self.running_mean, "running_var": self.running_var}

    @property
    def _batch_stats(self) -> bool:
        return self.training

    def _ones(self, n: int) -> np.ndarray:
        """n ones, kept: column sums are BLAS gemv against them."""
        ones = self._buffers.get("ones")
        if ones is None or ones.shape != (n,):
            ones = self._buffers["ones"] = np.ones(n, self.dtype)
        return ones

    def _column_sums(self, a: np.ndarray, key: str | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Σ over rows of ``a`` in one read of it (aᵀ·1 by gemv), into ``out`` or a reused vector."""
        if out is None:
            out = self._buffer(key, (a.shape[1],))
        if a.shape[0] == 0:
            out.fill(0)
        else:
            add_column_sums(a, out, self._ones(a.shape[0]), beta=0.0)
        return out

    def _add_row(self, a: np.ndarray, row: np.ndarray, alpha: float = 1.0) -> None:
        """a += α·row on every row, as the rank-1 update a += α·1 rowᵀ (BLAS ger), which ran in
        about half the time of NumPy's broadcast add (benchmarks/README.md, batch_norm)."""
        if a.shape[0]:
            add_outer(self._ones(a.shape[0]), np.asarray(row, a.dtype), a, alpha)

    @staticmethod
    def _check_rows(n) -> None:
        if n < 2:
            raise ValueError(f"batch_norm in training needs at least 2 rows per batch; got {n:g} sample")

    #: μ² ≤ RAW·σ² in every feature: σ² = M(x²) − μ² then loses at most 1 + RAW times the
    #: two-pass variance's rounding (the cancellation's), and x itself serves as x − μ
    #: (benchmarks/README.md: how far off centre the residual MLP's batch_norm inputs are)
    RAW = 16.0

    def _moments(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """μ and σ² of the batch, and (base, offset) with x − μ = base − offset. Usually two
        reads of x (Σx by gemv, Σx² by einsum) and base = x, offset = μ; where some feature's
        mean is large beside its spread (μ² > RAW·σ², where σ² = M(x²) − μ² cancels), the
        two-pass variance instead: x − μ written (base, offset None) and its squares summed.
        With a ``whole_batch``, the sums and the row count are summed over the processes in
        one collective (the two-pass case's squares in a second); every process sees the same
        sums, so all take the same branch."""
        n, d = x.shape
        batch = self.whole_batch
        if batch is None:
            self._check_rows(n)
        sums = self._buffer("sums", (2 * d + 1,))
        self._column_sums(x, out=sums[:d])
        np.einsum("ij,ij->j", x, x, out=sums[d : 2 * d])
        sums[2 * d] = n
        if batch is not None:
            batch.sum_(sums)
            n = float(sums[2 * d])
            self._check_rows(n)
        moments = sums[: 2 * d] / n  # μ, then M(x²)
        mu, square = moments[:d], moments[d:]
        var = square - mu * mu
        base, offset = x, mu
        # μ² ≤ RAW·σ² as M(x²) ≤ (1 + RAW)·σ²; false also where σ² came out ≤ 0, or NaN
        if not np.all(square <= (1.0 + self.RAW) * var):
            base, offset = np.subtract(x, mu, out=self._buffer("xc", x.shape)), None
            var = np.einsum("ij,ij->j", base, base)
            if batch is not None:
                batch.sum_(var)
            var /= n
        self.n, self.mu, self.var = n, mu, var
        return base, offset

    def forward(self, x):
        """y = x̂ γ + β written as y = x·a + (β − μ a) with a = sγ (or (x − μ)·a + β): in
        training four passes over the data (Σx, Σx², the scale, the shift), six when x − μ
        must be written and squared too (``_moments``); three in evaluation. x − μ is kept as
        (base, offset), x̂ only formed for the R-passes."""
        if self.training:
            base, offset = self._moments(x)
            var = self.var
        else:
            var, offset = self.running_var, None
            base = np.subtract(x, self.running_mean, out=self._buffer("xc", x.shape))
        self.s = s = 1.0 / np.sqrt(var + self.eps)
        self.base, self.offset, self.a = base, offset, self.gamma * s
        y = np.multiply(base, self.a, out=self._buffer("y", x.shape))
        self._add_row(y, self.beta if offset is None else self.beta - offset * self.a)
        return y

    def backward(self, g, *, need_input_grad=True, need_param_grad=True, in_place=False):
        """∂J/∂x = s(γ g − M(ĝ) − x̂ M(ĝ x̂)) = a g − (x − μ)·c − s M(ĝ), a = sγ, c = s² M(ĝ x̂):
        six passes in training (∂J/∂β = Σ g by gemv, ∂J/∂γ = s Σ g (x − μ), then the three
        terms, the constant one by BLAS ger), three in evaluation (∂J/∂x = a g)."""
        self.g, base, offset, s = g, self.base, self.offset, self.s
        dbeta = self._column_sums(g, "dbeta")
        dgamma = np.einsum("ij,ij->j", g, base)
        if offset is not None:
            dgamma -= offset * dbeta  # Σ g (x − μ) = Σ g x − μ Σ g
        dgamma *= s
        if need_param_grad:
            self.grads["gamma"][...], self.grads["beta"][...] = dgamma, dbeta
        if not need_input_grad:
            return None
        dx = self._buffer("dx", g.shape)
        if not self.training:  # affine in x
            return np.multiply(g, self.a, out=dx)
        (b, c), n = self._whole_sums((dbeta, dgamma), loss=True)
        self.m2 = self.gamma * (c / n)  # M(ĝ x̂); s M(ĝ) = a ∂J/∂β / n
        c = (s * s) * self.m2
        shift = self.a * (b / n)
        if offset is not None:
            shift -= offset * c
        np.multiply(g, self.a, out=dx)
        dx -= np.multiply(base, c, out=self._buffer("t", g.shape))
        self._add_row(dx, shift, -1.0)
        self.dx = dx
        return dx

    def rforward(self, r_x, V):
        xh = self._buffer("xh", self.base.shape)  # x̂, for the R-passes
        if self.offset is None:
            np.multiply(self.base, self.s, out=xh)
        else:
            np.subtract(self.base, self.offset, out=xh)
            xh *= self.s
        self.xh = xh
        return super().rforward(r_x, V)

    def _whole_sums(self, parts, loss):
        batch = self.whole_batch
        if batch is None or not self.training:
            return parts, self.n
        scale = batch.scale if loss else 1.0
        flat = np.concatenate(parts)
        if loss:
            flat *= scale  # this process's ∂J/∂y is of its own mean loss: to the batch's
        batch.sum_(flat)
        d = parts[0].shape[0]
        return tuple(flat[i * d : (i + 1) * d] for i in range(len(parts))), self.n * scale

    def update_buffers(self) -> None:
        """running := (1 − momentum)·running + momentum·batch, with the unbiased variance."""
        if not self.training:
            return
        n, m = self.n, self.momentum
        self.running_mean *= 1 - m
        self.running_mean += m * self.mu
        self.running_var *= 1 - m
        self.running_var += (m * n / (n - 1)) * self.var

    def keep_batch_statistics(self) -> None:
        """running_mean := μ, running_var := n/(n − 1)·σ² of the last training forward pass."""
        if self.training:
            n = self.n
            self.running_mean[...] = self.mu
            self.running_var[...] = (n / (n - 1)) * self.var


class LayerNorm(_Norm):
    """Layer normalisation (Ba et al. 2016) over each row's features."""

    kind = "layer_norm"
    axis = 1

    def options(self) -> dict:
        return {"eps": self.eps}


MODULES.register("batch_norm", BatchNorm)
MODULES.register("layer_norm", LayerNorm)
