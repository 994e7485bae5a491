import numpy as np

from mlpbp.engine.graph import Network
from mlpbp.engine.module import MODULES, Module
from mlpbp.tools.gradcheck import check_network


class Scale(Module):
    """a = g ⊙ u, a learned gain per feature: ∂J/∂g = Σⱼ ∂J/∂a ⊙ u, ∂J/∂u = ∂J/∂a ⊙ g."""

    kind = "scale"

    def param_shapes(self, in_widths):
        return {"g": (in_widths[0],)}

    def build(self, in_widths, ctx):
        super().build(in_widths, ctx)
        self.params = {"g": np.ones(in_widths[0], self.dtype)}
        self.grads = {"g": np.zeros(in_widths[0], self.dtype)}

    def forward(self, u):
        self.u = u  # what backward needs
        return u * self.params["g"]

    def backward(self, grad_a, *, need_input_grad=True, need_param_grad=True, in_place=False):
        self.grad_a = grad_a
        if need_param_grad:
            np.sum(grad_a * self.u, axis=0, out=self.grads["g"])
        return grad_a * self.params["g"] if need_input_grad else None

    def rforward(self, r_u, V):  # R{a} = R{u} ⊙ g + u ⊙ V_g  (R{u} is None at the input: zero)
        self.r_u = r_u
        r_a = self.u * V["g"]
        return r_a if r_u is None else r_a + r_u * self.params["g"]

    def rbackward(self, r_grad_a, V, out=None, need_input_grad=True):
        r_g = np.sum(r_grad_a * self.u, axis=0)  # R{∂J/∂g} = Σ R{∂J/∂a} ⊙ u + ∂J/∂a ⊙ R{u}
        if self.r_u is not None:
            r_g += np.sum(self.grad_a * self.r_u, axis=0)
        out = {"g": r_g} if out is None else out
        out["g"][...] = r_g
        r_u = r_grad_a * self.params["g"] + self.grad_a * V["g"] if need_input_grad else None
        return r_u, out


MODULES.register("scale", Scale)  # "scale" is now a layer-list entry

net = Network.from_layers([{"linear": 8}, "tanh", "scale"], inputs=3, outputs=2, loss="cross_entropy", seed=0)
rng = np.random.default_rng(0)
X, y = rng.normal(size=(16, 3)), np.arange(16) % 2
report = check_network(net, X, y)  # gradients and Hessian-vector products against finite differences
print(net.layer_param_names)
print(f"{len(report.checks)} checks, all passed: {report.ok}, max relative error {report.max_rel_err:.1e}")
