import numpy as np

from mlpbp.engine.layers import Layer


class Scale(Layer):
    """a = g ⊙ u, a learned gain per feature. ∂J/∂g = Σⱼ ∂J/∂a ⊙ u, ∂J/∂u = ∂J/∂a ⊙ g."""

    def __init__(self, width: int, dtype="float64") -> None:
        super().__init__(dtype)
        self.params = {"g": np.ones(width, self.dtype)}
        self.grads = {"g": np.zeros(width, self.dtype)}

    def forward(self, u):
        self.u = u  # what backward needs
        return u * self.params["g"]

    def backward(self, grad_a, need_input_grad=True, need_param_grad=True, in_place=False, apply=False, decay=1.0):
        self.grad_a = grad_a
        if need_param_grad:
            np.sum(grad_a * self.u, axis=0, out=self.grads["g"])
        return grad_a * self.params["g"] if need_input_grad else None

    def rforward(self, r_u, V):  # R{a} = R{u} ⊙ g + u ⊙ V_g
        self.r_u = np.zeros_like(self.u) if r_u is None else r_u
        return self.r_u * self.params["g"] + self.u * V["g"]

    def rbackward(self, r_grad_a, V, out=None, need_input_grad=True):
        r_g = np.sum(r_grad_a * self.u + self.grad_a * self.r_u, axis=0)  # R{∂J/∂g}
        r_u = r_grad_a * self.params["g"] + self.grad_a * V["g"] if need_input_grad else None
        return r_u, {"g": r_g}


# Check backward against central differences of J(g, u) = Σ c ⊙ a, as gradcheck does.
rng = np.random.default_rng(0)
layer, u, c, eps = Scale(3), rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), 1e-6
layer.params["g"][:] = rng.normal(size=3)
layer.forward(u)
grad_u = layer.backward(c)


def J(g, u):
    return float(np.sum(c * (u * g)))


g = layer.params["g"]
num_g = [(J(g + eps * e, u) - J(g - eps * e, u)) / (2 * eps) for e in np.eye(3)]
num_u = [(J(g, u + eps * e.reshape(4, 3)) - J(g, u - eps * e.reshape(4, 3))) / (2 * eps) for e in np.eye(12)]
print("dJ/dg max error", np.abs(layer.grads["g"] - num_g).max())
print("dJ/du max error", np.abs(grad_u.ravel() - num_u).max())
