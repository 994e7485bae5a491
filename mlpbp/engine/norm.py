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
"""

from __future__ import annotations

import numpy as np

from mlpbp.engine.module import MODULES, BuildContext, Module, check_option


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

    def _statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x̂, s) of this forward pass; x̂ in a reused buffer."""
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
            n = g.shape[0]
            self.m1, self.m2 = self.gamma * dbeta / n, self.gamma * dgamma / n
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
            self.k = k = self._rowmean(xh, r_x)
            r_xh = np.multiply(xh, k, out=self._buffer("r_xh", xh.shape))
            np.subtract(r_x, r_xh, out=r_xh)
            r_xh -= self._mean(r_x)
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

    def _statistics(self, x):
        if self.training:
            if x.shape[0] < 2:
                raise ValueError(f"batch_norm in training needs at least 2 rows per batch; got {x.shape[0]} sample")
            return super()._statistics(x)
        s = 1.0 / np.sqrt(self.running_var + self.eps)
        xh = np.subtract(x, self.running_mean, out=self._buffer("xh", x.shape))
        xh *= s
        return xh, s

    def update_buffers(self) -> None:
        """running := (1 − momentum)·running + momentum·batch, with the unbiased variance."""
        if not self.training:
            return
        n, m = self.xh.shape[0], self.momentum
        self.running_mean *= 1 - m
        self.running_mean += m * self.mu
        self.running_var *= 1 - m
        self.running_var += (m * n / (n - 1)) * self.var

    def keep_batch_statistics(self) -> None:
        """running_mean := μ, running_var := n/(n − 1)·σ² of the last training forward pass."""
        if self.training:
            n = self.xh.shape[0]
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
