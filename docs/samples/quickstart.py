import numpy as np

from mlpbp import MLP, SGD

rng = np.random.default_rng(0)
X = rng.normal(size=(512, 2))
y = (X[:, 0] * X[:, 1] > 0).astype(int)  # XOR of the signs: no straight line separates it
net = MLP([2, 16, 2], activation="tanh", loss="cross_entropy", seed=0)
opt = SGD(net.params, learning_rate=0.1, momentum=0.9)
for _ in range(300):
    J = net.train_step(X, y, opt)  # forward, backward, then θ := θ − α∇J in place
print(f"loss {J:.4f}, training accuracy {(net.predict(X) == y).mean():.3f}")
