"""Layers: each keeps in ``forward`` what its ``backward`` needs, and both sit side by side.

Batches are rows: an input u has shape (batch, in). Every layer also has the directional
("R-operator", Pearlmutter 1994) versions ``rforward``/``rbackward`` that push a parameter
direction V through the same computation; together they give exact Hessian-vector products.

Outputs are written into buffers the layer owns and reuses (large temporaries cost page faults
on every step): an array returned by ``forward``/``backward`` is valid until the layer's next
call of the same method. Copy it to keep it.
"""

from __future__ import annotations

import numpy as np

from mlpbp.engine import blas
from mlpbp.engine.activations import ACTIVATIONS, get_activation
from mlpbp.engine.module import MODULES, BuildContext, Module, check_option

Layer = Module  # the name mlpbp 0.2 used for the module contract


def is_sparse(u) -> bool:
    """A SciPy sparse matrix (what a network's first linear layer may take as its input)."""
    return hasattr(u, "tocsr") and not isinstance(u, np.ndarray)


def _sparse_t_dense(u, g: np.ndarray) -> np.ndarray:
    """gᵀ u for a sparse u (batch, in) and dense g (batch, out), as (out, in): (uᵀ g)ᵀ, the
    product taken on u's nonzeros (CSR transposed is CSC: no copy of u)."""
    return np.asarray(u.T @ g).T


class Linear(Module):
    """z = W u + b, for a batch of rows: Z = U Wᵀ + b, with W of shape (out, in).

    Backward, the vectorised chain rule summed over the batch:
    ∂J/∂W = Σⱼ ∂J/∂z⁽ʲ⁾ u⁽ʲ⁾ᵀ,  ∂J/∂b = Σⱼ ∂J/∂z⁽ʲ⁾,  ∂J/∂u = Wᵀ ∂J/∂z.

    ``Linear(width, bias=True)`` is sized by the graph (``build`` draws W from the network's
    init); ``Linear(W, b)`` wraps existing arrays (``b`` None: no bias).
    """

    kind = "linear"
    shorthand = "width"
    param_group = "linear"
    fresh_output = True

    def __init__(self, width=None, bias=True) -> None:
        super().__init__()
        self._G = self._U = None  # pending rank-1 updates, W_true = W + G[:k]ᵀ U[:k] (see defer)
        self._k = 0
        if isinstance(width, np.ndarray):  # Linear(W, b): arrays given
            self._set(width, bias if isinstance(bias, np.ndarray) else None)
            self.width = width.shape[0]
            return
        check_option("linear", "width", width, (int, np.integer), "an integer >= 1")
        if width < 1:
            raise ValueError(f"linear option width must be >= 1; got {width}")
        self.width, self.bias = int(width), bool(check_option("linear", "bias", bias, (bool,), "true or false"))
        self.W = self.b = None

    def _set(self, W: np.ndarray, b: np.ndarray | None) -> None:
        self.W, self.b, self.bias, self.dtype = W, b, b is not None, W.dtype
        self.params = {"W": W} if b is None else {"W": W, "b": b}
        self.grads = {k: np.zeros_like(p) for k, p in self.params.items()}
        self._rows_gemv = W.flags.c_contiguous  # batch 1: one gemv on W, without matmul's checks

    def options(self) -> dict:
        return {"width": self.width} if self.bias else {"width": self.width, "bias": False}

    def output_width(self, in_widths):
        return self.width

    def param_shapes(self, in_widths):
        shapes = {"W": (self.width, in_widths[0])}
        if self.bias:
            shapes["b"] = (self.width,)
        return shapes

    def build(self, in_widths, ctx: BuildContext) -> None:
        W = ctx.init(ctx.rng, in_widths[0], self.width).astype(ctx.dtype)
        self._set(W, np.zeros(self.width, ctx.dtype) if self.bias else None)

    def flops(self, in_widths, out_width):
        mac = 2 * in_widths[0] * out_width
        return mac + out_width, 2 * mac + out_width  # ∂J/∂W and ∂J/∂u

    def __repr__(self) -> str:
        return f"Linear(in={self.W.shape[1]}, out={self.W.shape[0]})" if self.W is not None else self.label

    @property
    def label(self) -> str:
        if self.W is None:
            return super().label
        return f"Linear {self.W.shape[1]}->{self.W.shape[0]}" + ("" if self.bias else " (no bias)")

    def forward(self, u: np.ndarray) -> np.ndarray:
        self.u = u
        z = self._buffer("z", (u.shape[0], self.W.shape[0]))
        if is_sparse(u):  # a sparse batch (the network's input): U Wᵀ on U's nonzeros, U never densified
            if self._k:
                self._apply_pending()
            z[...] = u @ self.W.T
            if self.b is not None:
                z += self.b
            return z
        beta = 0.0
        if self.b is not None:
            z[...] = self.b
            beta = 1.0
        if u.shape[0] == 1 and self._rows_gemv and u.flags.c_contiguous:
            blas.gemv(self.W, u[0], z[0], beta=beta)
        else:
            blas.matmul(u, self.W.T, z, beta=beta)
        k = self._k
        if k:  # updates not yet in W: z += (u U[:k]ᵀ) G[:k]
            if u.shape[0] == 1:
                t = self._t[:k]
                blas.gemv(self._U[:k], u[0], t)
                blas.gemv(self._G[:k], t, z[0], beta=1.0, transpose=True)
            else:
                t = blas.matmul(u, self._U[:k].T, np.empty((u.shape[0], k), self.dtype))
                blas.matmul(t, self._G[:k], z, beta=1.0)
        return z

    def defer(self, capacity: int) -> None:
        """Keep per-example updates W += g uᵀ as factors instead of applying each one.

        A rank-1 update reads and writes all of W for 2·in·out flops; for a large W that is
        the most expensive part of a per-example step. Kept as rows of G (the g's) and U (the
        u's), ``capacity`` of them are applied at once, W += Gᵀ U, in one pass over W; until
        then ``forward`` adds (u Uᵀ) G, so every output is the one the updated W would give.
        ``flush()`` applies what is pending and stops deferring; W is only exact after it."""
        out, inp = self.W.shape
        self._G, self._U, self._k = np.empty((capacity, out), self.dtype), np.empty((capacity, inp), self.dtype), 0
        self._t = np.empty(capacity, self.dtype)

    def flush(self) -> None:
        """Apply the pending updates to W and stop deferring."""
        self._apply_pending()
        self._G = self._U = None

    def _apply_pending(self) -> None:
        k, self._k = self._k, 0
        if k:
            blas.matmul(self._G[:k].T, self._U[:k], self.W, beta=1.0)

    def _input_grad(self, grad_z: np.ndarray) -> np.ndarray:
        grad_u = self._buffer("grad_u", self.u.shape)
        if grad_z.shape[0] == 1 and self._rows_gemv and grad_z.flags.c_contiguous:
            blas.gemv(self.W, grad_z[0], grad_u[0], transpose=True)
        else:
            blas.matmul(grad_z, self.W, grad_u)
        return grad_u

    def backward(self, grad_z, *, need_input_grad=True, need_param_grad=True, in_place=False):
        self.grad_z = grad_z
        if self._k:  # ∂J/∂u and ∂J/∂W need the updated W
            self._apply_pending()
        grad_u = self._input_grad(grad_z) if need_input_grad else None  # the network's input needs none
        if need_param_grad and is_sparse(self.u):
            self.grads["W"][...] = _sparse_t_dense(self.u, grad_z)
            if self.b is not None:
                grad_z.sum(axis=0, out=self.grads["b"])
        elif need_param_grad:  # a Hessian-vector product needs only ∂J/∂z, not ∂J/∂W
            blas.matmul(grad_z.T, self.u, self.grads["W"])
            if self.b is not None:
                self._bias_grad(grad_z)
        return grad_u

    def backward_update(self, grad_z, *, decay=1.0, need_input_grad=True):
        """∂J/∂u with the old W, then W := decay·W + grad_zᵀ u and b := decay·b + Σⱼ grad_z⁽ʲ⁾ in
        place, in one pass over W (gemm with β = decay; at batch 1 a rank-1 ger, after scaling W
        when decay ≠ 1; deferred, see ``defer``)."""
        self.grad_z = grad_z
        u, b, grad_u = self.u, self.b, None
        if need_input_grad:  # with the old W
            if self._k:
                self._apply_pending()
            grad_u = self._buffer("grad_u", u.shape)
            if grad_z.shape[0] == 1 and self._rows_gemv:
                blas.gemv(self.W, grad_z[0], grad_u[0], transpose=True)
            else:
                blas.matmul(grad_z, self.W, grad_u)
        if is_sparse(u):  # W := decay·W + grad_zᵀ U, the product on U's nonzeros
            if self._k:
                self._apply_pending()
            if decay != 1.0:
                self.W *= decay
                if b is not None:
                    b *= decay
            self.W += _sparse_t_dense(u, grad_z)
            if b is not None:
                b += grad_z.sum(axis=0)
            return grad_u
        if self._G is not None:
            if u.shape[0] == 1 and decay == 1.0:
                k = self._k
                self._G[k], self._U[k] = grad_z[0], u[0]
                if b is not None:
                    b += grad_z[0]
                self._k = k + 1
                if self._k == self._G.shape[0]:
                    self._apply_pending()
                return grad_u
            self._apply_pending()
        if u.shape[0] == 1:  # per-example SGD
            if decay != 1.0:
                self.W *= decay
                if b is not None:
                    b *= decay
            blas.add_outer(grad_z[0], u[0], self.W)
            if b is not None:
                b += grad_z[0]
            return grad_u
        blas.matmul(grad_z.T, u, self.W, beta=decay)
        if b is not None:
            blas.add_column_sums(grad_z, b, self._ones(u.shape[0]), beta=decay)
        return grad_u

    def _bias_grad(self, grad_z: np.ndarray) -> None:
        """∂J/∂b = grad_zᵀ·1, by gemv for 32 C-ordered rows or more: 2.5x NumPy's sum over axis
        0 at 256 × 256, 1.1x at 32 rows, slower below (a call costs more than the sum there);
        a block of columns, concat's backward, is summed by NumPy."""
        gb = self.grads["b"]
        if grad_z.shape[0] < 32 or not grad_z.flags.c_contiguous:
            grad_z.sum(axis=0, out=gb)
            return
        gb.fill(0)  # β = 0 would still read it under some OpenBLAS builds (0·NaN)
        blas.add_column_sums(grad_z, gb, self._ones(grad_z.shape[0]))

    def _ones(self, n: int) -> np.ndarray:
        """A vector of n ones (kept): column sums as one gemv."""
        ones = self._buffers.get("ones")
        if ones is None or ones.shape[0] != n:
            ones = self._buffers["ones"] = np.ones(n, self.dtype)
        return ones

    def rforward(self, r_u, V):
        """R{z} = V_W u + W R{u} + V_b  (R{u} is None, i.e. zero, for the network's input)."""
        if self._k:
            self._apply_pending()
        self.r_u = r_u
        r_z = self._buffer("r_z", (self.u.shape[0], self.W.shape[0]))
        if is_sparse(self.u):
            r_z[...] = self.u @ np.asarray(V["W"]).T
        else:
            blas.matmul(self.u, V["W"].T, r_z)
        if r_u is not None:
            blas.matmul(r_u, self.W.T, r_z, beta=1.0)
        if self.b is not None:
            r_z += V["b"]
        return r_z

    def rbackward(self, r_grad_z, V, out=None, need_input_grad=True):
        """R{∂J/∂W} = Σ R{∂J/∂z} uᵀ + ∂J/∂z R{u}ᵀ, R{∂J/∂b} = Σ R{∂J/∂z},
        R{∂J/∂u} = V_Wᵀ ∂J/∂z + Wᵀ R{∂J/∂z}."""
        if out is None:
            out = {k: np.empty_like(p) for k, p in self.params.items()}
        grad_z, r_gW = self.grad_z, out["W"]
        if is_sparse(self.u):
            r_gW[...] = _sparse_t_dense(self.u, r_grad_z)
        else:
            blas.matmul(r_grad_z.T, self.u, r_gW)
        if self.r_u is not None:
            blas.matmul(grad_z.T, self.r_u, r_gW, beta=1.0)
        if self.b is not None:
            r_grad_z.sum(axis=0, out=out["b"])
        if not need_input_grad:
            return None, out
        r_grad_u = self._buffer("r_grad_u", self.u.shape)
        blas.matmul(r_grad_z, self.W, r_grad_u)
        blas.matmul(grad_z, V["W"], r_grad_u, beta=1.0)
        return r_grad_u, out


class Activation(Module):
    """a = σ(z) elementwise; backward: ∂J/∂z = ∂J/∂a ⊙ σ'(z).

    One class for every registered activation (``kind`` is its name). ``backward`` keeps σ'(z)
    in ``self.d``: the R-operator passes, which ``hvp`` runs after it, use it again instead of
    recomputing it."""

    in_place_backward = True

    def __init__(self, name: str, dtype="float64") -> None:
        super().__init__()
        self.fn = get_activation(name)
        self.name = self.kind = name
        self.kinked = self.fn.relu_family
        self.dtype = np.dtype(dtype)

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"

    @property
    def label(self) -> str:
        return f"Activation {self.name!r}"

    def forward(self, z: np.ndarray) -> np.ndarray:
        self.z = z
        self.a = self.fn.f(z, out=self._buffer("a", z.shape))
        return self.a

    def backward(self, grad_a, *, need_input_grad=True, need_param_grad=True, in_place=False):
        self.grad_a = grad_a
        self.d = self.fn.df(self.z, self.a, out=self._buffer("d", self.z.shape))  # σ'(z)
        return np.multiply(grad_a, self.d, out=grad_a if in_place else self._buffer("grad_z", self.z.shape))

    def rforward(self, r_z, V=None):
        """R{a} = σ'(z) ⊙ R{z}  (σ'(z) as ``backward`` kept it)."""
        self.r_z = r_z
        if r_z is None:
            return None
        return np.multiply(self.d, r_z, out=self._buffer("r_a", r_z.shape))

    def rbackward(self, r_grad_a, V=None, out=None, need_input_grad=True):
        """R{∂J/∂z} = R{∂J/∂a} ⊙ σ'(z) + ∂J/∂a ⊙ σ''(z) ⊙ R{z}."""
        r_grad_z = np.multiply(r_grad_a, self.d, out=self._buffer("r_grad_z", self.z.shape))
        if self.fn.curved and self.r_z is not None:  # σ'' = 0 for identity and the relus
            tmp = self.fn.d2f(self.z, self.a, out=self._buffer("r_tmp", self.z.shape))
            tmp *= self.grad_a
            tmp *= self.r_z
            r_grad_z += tmp
        return r_grad_z, {}


MODULES.register("linear", Linear)


def module_class(name: str):
    """The class registered as ``name`` in MODULES; an activation name gives ``Activation``."""
    if name not in MODULES and name in ACTIVATIONS:
        return Activation
    return MODULES.lookup(name)
