import numpy as np

from mlpbp import MLP
from mlpbp.engine.curvature import Curvature, extreme_eigenvalues, hutchinson

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 4))
y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
net = MLP([4, 8, 2], activation="tanh", loss="cross_entropy", seed=0)  # float64 by default
H = Curvature(net, X, y, "hessian", batch_size=50)  # a scipy LinearOperator: v -> ∇²J·v
n = H.shape[0]
ext = extreme_eigenvalues(H.matvec, n, top_k=2, bottom_k=1)
trace = hutchinson(H.matvec, n, probes=40)
dense = np.linalg.eigvalsh(np.column_stack([H.matvec(e) for e in np.eye(n)]))  # n products: only for a check
print("Lanczos top", np.round(ext.top, 6), "bottom", np.round(ext.bottom, 6), f"in {ext.steps} products")
print("dense   top", dense[::-1][:2].round(6), "bottom", dense[:1].round(6))
print(f"trace {trace.estimate:.4f} ± {trace.std_error:.4f}, exact {dense.sum():.4f}")
