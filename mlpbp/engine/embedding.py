"""Modules that read columns of the network's input: ``select`` (numeric columns, as they are)
and ``embedding`` (a learned vector per category of an integer-code column).

The tabular layout they make, "numeric columns + one embedding per categorical column →
concat → layers", from Python::

    x = Input(d)                                   # d input columns, codes as numbers
    parts = [Select(columns=numeric)(x)]           # the numeric columns' indices
    parts += [Embedding(column=j, categories=n_j, dim=k_j)(x) for j, n_j, k_j in categorical]
    h = Concat()(*parts)
    h = Activation("relu")(Linear(64)(h))
    net = Network(x, Linear(n_outputs)(h), loss="cross_entropy", seed=0)

and in a layer list (``Network.from_layers``, ``model.layers``), as branches of a concat that
all start from the input::

    - concat:
        - select: {columns: [0, 1, 2]}
        - embedding: {column: 3, categories: 12, dim: 4}
    - linear: 64

An embedding's table ``E{k}`` has ``categories + 1`` rows: code c in [0, categories) picks row
c; any other value (negative, too large, not an integer, NaN) picks the last row, reserved for
codes unseen in training. It starts at zero, so an unseen category adds nothing, as an all-zero
one-hot row would. The codes themselves are not differentiable: ∂J/∂u is zero.

Chain rule: y⁽ʲ⁾ = E[c⁽ʲ⁾], so ∂J/∂E[r] = Σ_{j: c⁽ʲ⁾ = r} ∂J/∂y⁽ʲ⁾; R{y} = V_E[c];
R{∂J/∂E} scatters R{∂J/∂y} the same way.
"""

from __future__ import annotations

import numpy as np

from mlpbp.engine.module import MODULES, BuildContext, Module, check_option


def _count(kind: str, name: str, value, least: int) -> int:
    check_option(kind, name, value, (int, np.integer), f"an integer >= {least}")
    if value < least:
        raise ValueError(f"{kind} option {name} must be >= {least}; got {value}")
    return int(value)


class Select(Module):
    """y = u[:, columns]: the given input columns, in that order."""

    kind = "select"
    shorthand = "columns"
    fresh_output = True

    def __init__(self, columns=()) -> None:
        super().__init__()
        if not isinstance(columns, list | tuple) or not columns:
            raise TypeError(f"select option columns must be a non-empty list of column indices; got {columns!r}")
        self.columns = [_count(self.kind, "columns", c, 0) for c in columns]
        self._index = np.asarray(self.columns, np.intp)

    def options(self) -> dict:
        return {"columns": list(self.columns)}

    def output_width(self, in_widths):
        if max(self.columns) >= in_widths[0]:
            raise ValueError(f"select column {max(self.columns)} is outside the input's {in_widths[0]} columns")
        self.in_width = in_widths[0]
        return len(self.columns)

    def flops(self, in_widths, out_width):
        return 0, 0

    def forward(self, u):
        self.rows = u.shape[0]
        return np.take(u, self._index, axis=1, out=self._buffer("y", (u.shape[0], len(self.columns))))

    def _scatter(self, g, key):
        grad = self._buffer(key, (g.shape[0], self.in_width))
        grad.fill(0)
        np.add.at(grad, (slice(None), self._index), g)  # a column listed twice gets both
        return grad

    def backward(self, g, *, need_input_grad=True, need_param_grad=True, in_place=False):
        return self._scatter(g, "grad_u") if need_input_grad else None

    def rforward(self, r_u, V):
        return None if r_u is None else r_u[:, self._index]

    def rbackward(self, r_g, V, out=None, need_input_grad=True):
        return (self._scatter(r_g, "r_grad_u") if need_input_grad else None), {}


class Embedding(Module):
    """y = E[code]: row ``code`` of a learned (categories + 1) × dim table, ``code`` read from
    input column ``column``."""

    kind = "embedding"
    param_group = "embedding"
    differentiable_input = False
    fresh_output = True

    def __init__(self, column=0, categories=1, dim=1) -> None:
        super().__init__()
        self.column = _count(self.kind, "column", column, 0)
        self.categories = _count(self.kind, "categories", categories, 1)
        self.dim = _count(self.kind, "dim", dim, 1)

    def options(self) -> dict:
        return {"column": self.column, "categories": self.categories, "dim": self.dim}

    def output_width(self, in_widths):
        if self.column >= in_widths[0]:
            raise ValueError(f"embedding column {self.column} is outside the input's {in_widths[0]} columns")
        self.in_width = in_widths[0]
        return self.dim

    def param_shapes(self, in_widths):
        return {"E": (self.categories + 1, self.dim)}

    def build(self, in_widths, ctx: BuildContext) -> None:
        super().build(in_widths, ctx)
        E = np.zeros((self.categories + 1, self.dim), self.dtype)
        E[:-1] = ctx.rng.normal(0.0, 1.0, size=(self.categories, self.dim))  # as torch.nn.Embedding
        self.params, self.grads = {"E": E}, {"E": np.zeros_like(E)}

    def flops(self, in_widths, out_width):
        return 0, out_width

    def codes(self, u: np.ndarray) -> np.ndarray:
        """The table row of each input row: its code, or the reserved last row."""
        c = u[:, self.column]
        with np.errstate(invalid="ignore"):
            valid = (c >= 0) & (c < self.categories) & (c == np.floor(c))
        return np.where(valid, np.nan_to_num(c), self.categories).astype(np.intp)

    def forward(self, u):
        self.idx = idx = self.codes(u)
        return np.take(self.params["E"], idx, axis=0, out=self._buffer("y", (u.shape[0], self.dim)))

    def _zero_input_grad(self, g, key):
        grad = self._buffer(key, (g.shape[0], self.in_width))
        grad.fill(0)
        return grad

    def backward(self, g, *, need_input_grad=True, need_param_grad=True, in_place=False):
        if need_param_grad:
            gE = self.grads["E"]
            gE.fill(0)
            np.add.at(gE, self.idx, g)
        return self._zero_input_grad(g, "grad_u") if need_input_grad else None

    def rforward(self, r_u, V):
        return np.take(V["E"], self.idx, axis=0, out=self._buffer("r_y", (self.idx.shape[0], self.dim)))

    def rbackward(self, r_g, V, out=None, need_input_grad=True):
        if out is None:
            out = {"E": np.empty_like(self.params["E"])}
        out["E"].fill(0)
        np.add.at(out["E"], self.idx, r_g)
        return (self._zero_input_grad(r_g, "r_grad_u") if need_input_grad else None), out


MODULES.register("select", Select)
MODULES.register("embedding", Embedding)
