import numpy as np

from mlpbp import MLP, SGD

net = MLP([64, 32, 10], activation="relu", loss="cross_entropy", seed=0, dtype="float64")
print("W1", net.params["W1"].shape)  # z = W u + b: W is (out, in)
X, y = np.random.default_rng(0).normal(size=(16, 64)), np.arange(16) % 10
J, grads = net.loss_and_grad(X, y)  # J and ∂J/∂θ for "W1", "b1", "W2", "b2"
print(f"J {J:.6f}, gradients of {sorted(grads)}")
opt = SGD(net.params, learning_rate=0.1, momentum=0.9)  # or Adam(net.params), AdamW(...)
opt.step(grads)  # θ := θ − α ∇J, in place; opt.state_dict() is what a checkpoint keeps
J = net.train_step(X, y, opt)  # forward, backward and update in one fused pass (what `train` runs)
print(f"J before the fused step {J:.6f}, after {net.loss(X, y):.6f}")
Hv = net.hvp(X, y, grads)  # the exact Hessian-vector product ∇²J·v, v = the gradient here
print(f"<v, Hv> = {sum(float(np.vdot(grads[k], Hv[k])) for k in grads):.6f}")
print("predictions", net.predict(X[:5]))  # class indices (outputs, for regression)
