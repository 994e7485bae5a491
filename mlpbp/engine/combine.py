"""Modules of several inputs: ``add`` (y = Σᵢ uᵢ, so ∂J/∂uᵢ = ∂J/∂y for every i) and ``concat``
(y = [u₁ u₂ …] side by side, so ∂J/∂uᵢ is ∂J/∂y's block of columns). The residual block
y = x + f(x) is an ``add`` of x and f(x); the network sums the gradients where x fans out."""

from __future__ import annotations

import numpy as np

from mlpbp.engine.module import MODULES, Module


class Add(Module):
    """y = u₁ + u₂ + …, inputs of one width."""

    kind = "add"
    n_inputs = None
    fresh_output = True

    def output_width(self, in_widths):
        if len(set(in_widths)) != 1:
            raise ValueError(f"add needs inputs of one width; got widths {list(in_widths)}")
        return in_widths[0]

    def forward(self, us):
        y = np.add(us[0], us[1], out=self._buffer("y", us[0].shape))
        for u in us[2:]:
            y += u
        self.n = len(us)
        return y

    def backward(self, g, *, need_input_grad=True, need_param_grad=True, in_place=False):
        return [g] * self.n if need_input_grad else None

    def rforward(self, r_us, V):
        given = [r for r in r_us if r is not None]
        if not given:
            return None
        r_y = self._buffer("r_y", given[0].shape)
        r_y[...] = given[0]
        for r in given[1:]:
            r_y += r
        return r_y

    def rbackward(self, r_g, V, out=None, need_input_grad=True):
        return ([r_g] * self.n if need_input_grad else None), {}


class Concat(Module):
    """y = [u₁ u₂ …], the inputs' columns side by side (in the order given)."""

    kind = "concat"
    n_inputs = None
    fresh_output = True

    def output_width(self, in_widths):
        self.bounds = np.concatenate(([0], np.cumsum(in_widths))).tolist()
        return self.bounds[-1]

    def _blocks(self, g):
        b = self.bounds
        return [g[:, b[i] : b[i + 1]] for i in range(len(b) - 1)]

    def forward(self, us):
        y = self._buffer("y", (us[0].shape[0], self.bounds[-1]))
        for block, u in zip(self._blocks(y), us):
            block[...] = u
        return y

    def backward(self, g, *, need_input_grad=True, need_param_grad=True, in_place=False):
        return self._blocks(g) if need_input_grad else None

    def rforward(self, r_us, V):
        if all(r is None for r in r_us):
            return None
        rows = next(r for r in r_us if r is not None).shape[0]
        r_y = self._buffer("r_y", (rows, self.bounds[-1]))
        for block, r in zip(self._blocks(r_y), r_us):
            if r is None:
                block.fill(0)
            else:
                block[...] = r
        return r_y

    def rbackward(self, r_g, V, out=None, need_input_grad=True):
        return (self._blocks(r_g) if need_input_grad else None), {}


MODULES.register("add", Add)
MODULES.register("concat", Concat)
