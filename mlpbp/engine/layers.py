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
from mlpbp.engine.activations import get_activation


class Layer:
    """The one contract every layer keeps, so a network walks its layers without asking what
    each one is:

    - ``forward(u)`` → the output, keeping what ``backward`` needs;
    - ``backward(grad_out, need_input_grad, need_param_grad, in_place=False, apply=False, decay=1.0)`` →
      ∂J/∂u (or None when not needed), filling ``self.grads`` (one array per entry of
      ``self.params``). A training step passes ``in_place=True``: ``grad_out`` is the layer's
      to overwrite, as nothing reads it again. With ``apply=True`` the gradient flowing in is
      already the update (a fused plain-SGD step folds −α into ∂J/∂o, so every ∂ below is
      scaled by −α too): the layer adds its parameters' part straight into the parameters,
      θ := decay·θ + ∂ (decay = 1 − αλ for SGD's weight decay λ), after computing ∂J/∂u with
      the old ones, and leaves ``self.grads`` untouched;
    - ``rforward(r_u, V)`` → R{output}, for a direction ``V`` over this layer's params
      (``r_u`` is None, i.e. zero, at the network's input);
    - ``rbackward(r_grad_out, V, out, need_input_grad)`` → (R{∂J/∂u} or None, R{∂J/∂θ}): the
      second item has one array per param, written into ``out`` when it is given;
    - ``defer(capacity)`` / ``flush()``: start and end keeping a fused step's per-example
      updates pending (``Linear.defer``); a layer with nothing to defer ignores both.

    A layer without parameters has empty ``params`` and ``grads`` and ignores ``V``.
    """

    #: kinked (ReLU-like) at 0: finite differences must not step across the kink
    kinked = False

    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)
        self._buffers: dict[str, np.ndarray] = {}
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def _buffer(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape:
            buf = self._buffers[key] = np.empty(shape, self.dtype)
        return buf

    def forward(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(
        self,
        grad_out: np.ndarray,
        need_input_grad: bool = True,
        need_param_grad: bool = True,
        in_place: bool = False,
        apply: bool = False,
        decay: float = 1.0,
    ) -> np.ndarray | None:
        raise NotImplementedError

    def rforward(self, r_u: np.ndarray | None, V: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def defer(self, capacity: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def rbackward(
        self,
        r_grad_out: np.ndarray,
        V: dict[str, np.ndarray],
        out: dict[str, np.ndarray] | None = None,
        need_input_grad: bool = True,
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        raise NotImplementedError


class Linear(Layer):
    """z = W u + b, for a batch of rows: Z = U Wᵀ + b, with W of shape (out, in).

    Backward, the vectorised chain rule summed over the batch:
    ∂J/∂W = Σⱼ ∂J/∂z⁽ʲ⁾ u⁽ʲ⁾ᵀ,  ∂J/∂b = Σⱼ ∂J/∂z⁽ʲ⁾,  ∂J/∂u = Wᵀ ∂J/∂z.
    """

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        super().__init__(W.dtype)
        self.W, self.b = W, b
        self.params = {"W": W, "b": b}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self._G = self._U = None  # pending rank-1 updates, W_true = W + G[:k]ᵀ U[:k] (see defer)
        self._k = 0
        self._rows_gemv = W.flags.c_contiguous  # batch 1: one gemv on W, without matmul's checks

    def __repr__(self) -> str:
        return f"Linear(in={self.W.shape[1]}, out={self.W.shape[0]})"

    @property
    def label(self) -> str:
        return f"Linear {self.W.shape[1]}->{self.W.shape[0]}"

    def forward(self, u: np.ndarray) -> np.ndarray:
        self.u = u
        z = self._buffer("z", (u.shape[0], self.W.shape[0]))
        z[...] = self.b
        if u.shape[0] == 1 and self._rows_gemv:
            blas.gemv(self.W, u[0], z[0], beta=1.0)
        else:
            blas.matmul(u, self.W.T, z, beta=1.0)
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

    def backward(
        self,
        grad_z: np.ndarray,
        need_input_grad: bool = True,
        need_param_grad: bool = True,
        in_place: bool = False,
        apply: bool = False,
        decay: float = 1.0,
    ) -> np.ndarray | None:
        self.grad_z = grad_z
        grad_u = None
        if self._k and (need_input_grad or not apply):  # ∂J/∂u and ∂J/∂W need the updated W
            self._apply_pending()
        if need_input_grad:  # the network's input needs no gradient: skip a third product
            grad_u = self._buffer("grad_u", self.u.shape)
            if grad_z.shape[0] == 1 and self._rows_gemv:  # with the old W
                blas.gemv(self.W, grad_z[0], grad_u[0], transpose=True)
            else:
                blas.matmul(grad_z, self.W, grad_u)
        if apply:
            self._apply(grad_z, decay)
        elif need_param_grad:  # a Hessian-vector product needs only ∂J/∂z, not ∂J/∂W
            blas.matmul(grad_z.T, self.u, self.grads["W"])
            grad_z.sum(axis=0, out=self.grads["b"])
        return grad_u

    def _apply(self, grad_z: np.ndarray, decay: float = 1.0) -> None:
        """W := decay·W + grad_zᵀ u and b := decay·b + Σⱼ grad_z⁽ʲ⁾ in place, in one pass over W
        (gemm with β = decay; at batch 1 a rank-1 ger, after scaling W when decay ≠ 1)."""
        u = self.u
        if self._G is not None:
            if u.shape[0] == 1 and decay == 1.0:
                k = self._k
                self._G[k], self._U[k] = grad_z[0], u[0]
                self.b += grad_z[0]
                self._k = k + 1
                if self._k == self._G.shape[0]:
                    self._apply_pending()
                return
            self._apply_pending()
        if u.shape[0] == 1:  # per-example SGD
            if decay != 1.0:
                self.W *= decay
                self.b *= decay
            blas.add_outer(grad_z[0], u[0], self.W)
            self.b += grad_z[0]
            return
        blas.matmul(grad_z.T, u, self.W, beta=decay)
        ones = self._buffers.get("ones")
        if ones is None or ones.shape[0] != u.shape[0]:
            ones = self._buffers["ones"] = np.ones(u.shape[0], self.dtype)
        blas.add_column_sums(grad_z, self.b, ones, beta=decay)

    def rforward(self, r_u: np.ndarray | None, V: dict[str, np.ndarray]) -> np.ndarray:
        """R{z} = V_W u + W R{u} + V_b  (R{u} is None, i.e. zero, for the network's input)."""
        if self._k:
            self._apply_pending()
        self.r_u = r_u
        r_z = self._buffer("r_z", (self.u.shape[0], self.W.shape[0]))
        blas.matmul(self.u, V["W"].T, r_z)
        if r_u is not None:
            blas.matmul(r_u, self.W.T, r_z, beta=1.0)
        r_z += V["b"]
        return r_z

    def rbackward(
        self,
        r_grad_z: np.ndarray,
        V: dict[str, np.ndarray],
        out: dict[str, np.ndarray] | None = None,
        need_input_grad: bool = True,
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """R{∂J/∂W} = Σ R{∂J/∂z} uᵀ + ∂J/∂z R{u}ᵀ, R{∂J/∂b} = Σ R{∂J/∂z},
        R{∂J/∂u} = V_Wᵀ ∂J/∂z + Wᵀ R{∂J/∂z}."""
        if out is None:
            out = {"W": np.empty_like(self.W), "b": np.empty_like(self.b)}
        grad_z, r_gW = self.grad_z, out["W"]
        blas.matmul(r_grad_z.T, self.u, r_gW)
        if self.r_u is not None:
            blas.matmul(grad_z.T, self.r_u, r_gW, beta=1.0)
        r_grad_z.sum(axis=0, out=out["b"])
        if not need_input_grad:
            return None, out
        r_grad_u = self._buffer("r_grad_u", self.u.shape)
        blas.matmul(r_grad_z, self.W, r_grad_u)
        blas.matmul(grad_z, V["W"], r_grad_u, beta=1.0)
        return r_grad_u, out


class Activation(Layer):
    """a = σ(z) elementwise; backward: ∂J/∂z = ∂J/∂a ⊙ σ'(z).

    ``backward`` keeps σ'(z) in ``self.d``: the R-operator passes, which ``MLP.hvp`` runs after
    it, use it again instead of recomputing it."""

    def __init__(self, name: str, dtype="float64") -> None:
        super().__init__(dtype)
        self.fn = get_activation(name)
        self.name = name
        self.kinked = self.fn.relu_family

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"

    @property
    def label(self) -> str:
        return f"Activation {self.name!r}"

    def forward(self, z: np.ndarray) -> np.ndarray:
        self.z = z
        self.a = self.fn.f(z, out=self._buffer("a", z.shape))
        return self.a

    def backward(
        self,
        grad_a: np.ndarray,
        need_input_grad: bool = True,
        need_param_grad: bool = True,
        in_place: bool = False,
        apply: bool = False,
        decay: float = 1.0,
    ) -> np.ndarray:
        self.grad_a = grad_a
        self.d = self.fn.df(self.z, self.a, out=self._buffer("d", self.z.shape))  # σ'(z)
        return np.multiply(grad_a, self.d, out=grad_a if in_place else self._buffer("grad_z", self.z.shape))

    def rforward(self, r_z: np.ndarray, V: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """R{a} = σ'(z) ⊙ R{z}  (σ'(z) as ``backward`` kept it)."""
        self.r_z = r_z
        return np.multiply(self.d, r_z, out=self._buffer("r_a", r_z.shape))

    def rbackward(
        self,
        r_grad_a: np.ndarray,
        V: dict[str, np.ndarray] | None = None,
        out: dict[str, np.ndarray] | None = None,
        need_input_grad: bool = True,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """R{∂J/∂z} = R{∂J/∂a} ⊙ σ'(z) + ∂J/∂a ⊙ σ''(z) ⊙ R{z}."""
        r_grad_z = np.multiply(r_grad_a, self.d, out=self._buffer("r_grad_z", self.z.shape))
        if self.fn.curved:  # σ'' = 0 for identity and the relus: the second term is zero
            tmp = self.fn.d2f(self.z, self.a, out=self._buffer("r_tmp", self.z.shape))
            tmp *= self.grad_a
            tmp *= self.r_z
            r_grad_z += tmp
        return r_grad_z, {}
