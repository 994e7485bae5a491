"""The reference engine: backpropagation through a graph of modules, as the lecture writes it.

Each module is a forward and a backward side by side in plain NumPy (``@``, no reused buffers, no
BLAS calls, no optimizer inside a layer). Forward runs the modules in order, keeping what each
backward needs; backward runs them in reverse, each turning ∂J/∂(output) into ∂J/∂(inputs) and
∂J/∂θ, summing gradients where a value feeds several modules. An optimizer then updates θ.

The fast engine (``mlpbp.engine.graph.Network``) is tested equal to this one: the same graph,
the same parameters after many training steps (tests/engine/test_reference_engine.py)."""

from __future__ import annotations

import numpy as np

from mlpbp.engine.activations import get_activation


def activation(name):
    fn = get_activation(name)

    def forward(p, x, cache):
        a = fn.f(x, out=np.empty_like(x))
        cache.update(x=x, a=a)
        return a

    def backward(p, g, cache):  # ∂J/∂z = ∂J/∂a ⊙ σ'(z)
        return g * fn.df(cache["x"], cache["a"], out=np.empty_like(g)), {}

    return forward, backward


def linear_forward(p, x, cache):  # z = W u + b
    cache["x"] = x
    return x @ p["W"].T + p["b"] if "b" in p else x @ p["W"].T


def linear_backward(p, g, cache):  # ∂J/∂u = Wᵀ g, ∂J/∂W = Σ g uᵀ, ∂J/∂b = Σ g
    grads = {"W": g.T @ cache["x"]}
    if "b" in p:
        grads["b"] = g.sum(axis=0)
    return g @ p["W"], grads


def norm_forward(p, x, cache, axis, mean=None, var=None):  # y = γ (x − μ)/√(σ² + ε) + β
    batch = mean is None
    if batch:
        mean, var = x.mean(axis=axis, keepdims=True), x.var(axis=axis, keepdims=True)
    s = 1 / np.sqrt(var + cache["eps"])
    xh = (x - mean) * s
    cache.update(xh=xh, s=s, batch=batch, axis=axis, mean=mean, var=var)
    return p["gamma"] * xh + p["beta"]


def norm_backward(p, g, cache):  # ∂J/∂x = s (ĝ − M(ĝ) − x̂ M(ĝ x̂)), ĝ = γ g
    xh, s, axis = cache["xh"], cache["s"], cache["axis"]
    gh = g * p["gamma"]
    dx = gh * s
    if cache["batch"]:
        dx = s * (gh - gh.mean(axis=axis, keepdims=True) - xh * (gh * xh).mean(axis=axis, keepdims=True))
    return dx, {"gamma": (g * xh).sum(axis=0), "beta": g.sum(axis=0)}


class ReferenceNetwork:
    """The graph of a fast ``Network`` (its ``graph()``), with copies of its parameters and
    buffers, computed by the plain modules above. Dropout masks come from a generator seeded
    as the fast network's, drawn in the same order."""

    def __init__(self, net) -> None:
        self.nodes = net.graph()["nodes"]
        self.names = net.layer_param_names
        self.buffer_names = net.layer_buffer_names
        self.params = {k: p.copy() for k, p in net.params.items()}
        self.buffers = {k: b.copy() for k, b in net.buffers.items()}
        self.loss_name, self.class_weight = net.loss_name, net.loss_fn.class_weight
        self.dtype, self.training = net.dtype, net.training
        self.generator = np.random.default_rng(net.seed if isinstance(net.seed, int) else 0)
        self.generator.bit_generator.state = net.generator.bit_generator.state

    def forward(self, X, update_buffers=False):
        vals, self.caches = [np.asarray(X, self.dtype)], []
        for node, names, bufs in zip(self.nodes, self.names, self.buffer_names):
            kind, opts = node["module"], node["options"]
            p = {k: self.params[n] for k, n in names.items()}
            xs = [vals[j] for j in node["inputs"]]
            x, cache = xs[0], {"eps": opts.get("eps")}
            if kind == "linear":
                y = linear_forward(p, x, cache)
            elif kind == "layer_norm":
                y = norm_forward(p, x, cache, axis=1)
            elif kind == "batch_norm":
                mean, var = self.buffers[bufs["running_mean"]], self.buffers[bufs["running_var"]]
                if self.training:
                    y = norm_forward(p, x, cache, axis=0)
                    if update_buffers:  # running := (1 − m) running + m batch, unbiased variance
                        m, n = opts["momentum"], x.shape[0]
                        mean[...] = (1 - m) * mean + m * cache["mean"][0]
                        var[...] = (1 - m) * var + m * cache["var"][0] * n / (n - 1)
                else:
                    y = norm_forward(p, x, cache, axis=0, mean=mean, var=var)
            elif kind == "dropout":  # inverted: kept with probability 1 − p, scaled by 1/(1 − p)
                mask = 1.0
                if self.training and opts["p"] > 0:
                    keep = self.generator.random(x.shape, dtype=x.dtype) >= opts["p"]
                    mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - opts["p"]))
                cache["mask"] = mask
                y = x * mask
            elif kind == "add":
                y = sum(xs[1:], xs[0])
            elif kind == "concat":
                cache["widths"] = [u.shape[1] for u in xs]
                y = np.concatenate(xs, axis=1)
            elif kind == "select":
                y = x[:, opts["columns"]]
                cache.update(columns=opts["columns"], width=x.shape[1])
            elif kind == "embedding":
                c, n = x[:, opts["column"]], opts["categories"]
                rows = np.where((c >= 0) & (c < n) & (c == np.floor(c)), np.nan_to_num(c), n).astype(int)
                cache["rows"] = rows
                y = p["E"][rows]
            else:
                y = activation(kind)[0](p, x, cache)
            self.caches.append(cache)
            vals.append(y)
        return vals[-1]

    def backward(self, grad_o):
        grads = [None] * len(self.nodes) + [grad_o]
        out = {}
        for i in range(len(self.nodes) - 1, -1, -1):
            node, cache, g = self.nodes[i], self.caches[i], grads[i + 1]
            kind, names = node["module"], self.names[i]
            p = {k: self.params[n] for k, n in names.items()}
            if kind == "linear":
                dx, dp = linear_backward(p, g, cache)
            elif kind in ("batch_norm", "layer_norm"):
                dx, dp = norm_backward(p, g, cache)
            elif kind == "dropout":
                dx, dp = g * cache["mask"], {}
            elif kind == "add":
                dx, dp = [g] * len(node["inputs"]), {}
            elif kind == "concat":
                dx, dp = np.split(g, np.cumsum(cache["widths"])[:-1], axis=1), {}
            elif kind == "select":
                dx, dp = np.zeros((g.shape[0], cache["width"])), {}
                np.add.at(dx, (slice(None), cache["columns"]), g)
            elif kind == "embedding":
                dE = np.zeros_like(p["E"])
                np.add.at(dE, cache["rows"], g)
                dx, dp = None, {"E": dE}
            else:
                dx, dp = activation(kind)[1](p, g, cache)
            out.update({names[k]: v for k, v in dp.items()})
            for j, d in zip(node["inputs"], dx if isinstance(dx, list) else [dx]):
                if d is not None:
                    grads[j] = d if grads[j] is None else grads[j] + d
        return out

    def loss_and_grad(self, X, y, update_buffers=False):
        """J and ∂J/∂θ by name: the batch mean of each row's loss (times its class weight)."""
        o = self.forward(X, update_buffers)
        n, y = o.shape[0], np.asarray(y)
        w = (np.ones(n) if self.class_weight is None else self.class_weight[y]).astype(o.dtype)
        if self.loss_name == "cross_entropy":
            z = o - o.max(axis=1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            J = float(w @ (np.log(np.exp(z).sum(axis=1)) - z[np.arange(n), y])) / n
            t = np.eye(o.shape[1], dtype=o.dtype)[y]
            grad_o = (p - t) * w[:, None] / n
        else:
            t = np.eye(o.shape[1], dtype=o.dtype)[y] if y.dtype.kind in "iu" else y.reshape(o.shape)
            J = float(w @ (0.5 * ((o - t) ** 2).sum(axis=1))) / n
            grad_o = (o - t) * w[:, None] / n
        return J, self.backward(grad_o)
