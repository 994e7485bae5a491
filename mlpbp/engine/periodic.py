"""``periodic``: periodic embeddings of numeric columns with trainable frequencies (Gorishniy,
Rubachev & Babenko 2022, "On Embeddings for Numerical Features in Tabular Deep Learning").

For an input of d columns (each a standardised numeric column), every column i has k
frequencies c_i1 … c_ik, drawn from N(0, σ²) at build time and trained with the rest:

    z_ij = 2π c_ij u_i,   y = [sin z_i1 … sin z_ik, cos z_i1 … cos z_ik] for i = 1 … d

side by side (2k output columns per input column, column i's block first for i = 1). σ sets
the scale of the frequencies, the paper's most important setting: waves of 1/σ standard
deviations are what the embedding starts from. Followed by a ``linear`` and a ``relu`` of
its own per column, it is the paper's PLR embedding (what ``data.numeric: periodic`` builds).

Chain rule, with ∂J/∂y split into its sine and cosine halves (g_s, g_c) and
h_ij = g_s,ij cos z_ij − g_c,ij sin z_ij = ∂J/∂z_ij:

    ∂J/∂c_ij = 2π Σ_rows h_ij u_i,   ∂J/∂u_i = 2π Σ_j h_ij c_ij

and the R-operator along a direction V of the frequencies (R{u} from the module before):

    R{z} = 2π (V ⊙ u + c ⊙ R{u}),   R{y} = [cos z ⊙ R{z}, −sin z ⊙ R{z}],
    R{h} = R{g_s} cos z − R{g_c} sin z − (g_s sin z + g_c cos z) ⊙ R{z},
    R{∂J/∂c} = 2π Σ_rows (R{h} u + h R{u}),   R{∂J/∂u} = 2π Σ_j (R{h} c + h V).
"""

from __future__ import annotations

import math

import numpy as np

from mlpbp.engine.module import MODULES, BuildContext, Module, check_option

TAU = 2 * math.pi
FREQUENCIES = 16  # data.periodic_frequencies: k, the frequencies per column
SIGMA = 1.0  # data.periodic_sigma: the frequencies' initial standard deviation (its default too)


class Periodic(Module):
    """y = [sin(2π c u), cos(2π c u)] per input column, ``frequencies`` trainable c per column
    drawn from N(0, ``sigma``²)."""

    kind = "periodic"
    param_group = "periodic"
    shorthand = "frequencies"
    fresh_output = True

    def __init__(self, frequencies=FREQUENCIES, sigma=SIGMA) -> None:
        super().__init__()
        check_option(self.kind, "frequencies", frequencies, (int, np.integer), "an integer >= 1")
        if frequencies < 1:
            raise ValueError(f"periodic option frequencies must be >= 1; got {frequencies}")
        check_option(self.kind, "sigma", sigma, (int, float), "a number > 0")
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"periodic option sigma must be a finite number > 0; got {sigma}")
        self.k, self.sigma = int(frequencies), float(sigma)

    def options(self) -> dict:
        return {"frequencies": self.k, "sigma": self.sigma}

    def output_width(self, in_widths):
        self.d = in_widths[0]
        return 2 * self.k * self.d

    def param_shapes(self, in_widths):
        return {"frequencies": (in_widths[0], self.k)}

    def build(self, in_widths, ctx: BuildContext) -> None:
        super().build(in_widths, ctx)
        c = ctx.rng.normal(0.0, self.sigma, size=(in_widths[0], self.k)).astype(self.dtype)
        self.params, self.grads = {"frequencies": c}, {"frequencies": np.zeros_like(c)}

    def flops(self, in_widths, out_width):
        return 6 * out_width, 8 * out_width

    def _halves(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sine half, cosine half) of an output-shaped array, each (rows, d, k)."""
        a = a.reshape(a.shape[0], self.d, 2 * self.k)
        return a[:, :, : self.k], a[:, :, self.k :]

    def forward(self, u):
        self.u = u
        z = TAU * u[:, :, None] * self.params["frequencies"][None]
        self.sin, self.cos = np.sin(z), np.cos(z)
        y = self._buffer("y", (u.shape[0], 2 * self.k * self.d))
        ys, yc = self._halves(y)
        ys[...], yc[...] = self.sin, self.cos
        return y

    def backward(self, g, *, need_input_grad=True, need_param_grad=True, in_place=False):
        self.gs, self.gc = gs, gc = self._halves(g)
        self.h = h = gs * self.cos - gc * self.sin  # ∂J/∂z
        if need_param_grad:
            np.multiply(np.einsum("ndk,nd->dk", h, self.u), TAU, out=self.grads["frequencies"])
        return TAU * np.einsum("ndk,dk->nd", h, self.params["frequencies"]) if need_input_grad else None

    def rforward(self, r_u, V):
        c, Vc = self.params["frequencies"], V["frequencies"]
        rz = self.u[:, :, None] * Vc[None]
        if r_u is not None:
            rz = rz + r_u[:, :, None] * c[None]
        rz *= TAU
        self.rz, self.r_u = rz, r_u
        r_y = self._buffer("r_y", (rz.shape[0], 2 * self.k * self.d))
        rs, rc = self._halves(r_y)
        rs[...], rc[...] = self.cos * rz, -self.sin * rz
        return r_y

    def rbackward(self, r_g, V, out=None, need_input_grad=True):
        if out is None:
            out = {"frequencies": np.empty_like(self.params["frequencies"])}
        rgs, rgc = self._halves(r_g)
        r_h = rgs * self.cos - rgc * self.sin - (self.gs * self.sin + self.gc * self.cos) * self.rz
        r_dc = np.einsum("ndk,nd->dk", r_h, self.u)
        if self.r_u is not None:
            r_dc += np.einsum("ndk,nd->dk", self.h, self.r_u)
        np.multiply(r_dc, TAU, out=out["frequencies"])
        if not need_input_grad:
            return None, out
        r_du = np.einsum("ndk,dk->nd", r_h, self.params["frequencies"])
        r_du += np.einsum("ndk,dk->nd", self.h, V["frequencies"])
        return TAU * r_du, out


MODULES.register("periodic", Periodic)
