"""A network is a directed acyclic graph of modules (``mlpbp.engine.module``) and a loss.

Backpropagation through any such graph: the forward pass runs the modules in topological order
(the order they were listed in), each keeping what its backward needs; the backward pass runs
them in reverse, each turning ∂J/∂(its output) into ∂J/∂(its inputs), and where a value feeds
several modules the gradients they send back are summed (the multivariate chain rule). The
R-operator passes go the same way, so Hessian-vector products (forward-over-reverse) and
Gauss-Newton products are exact for every graph. The chain of ``MLP`` is the special case.

Build a graph from module objects (functional style), or from a layer list::

    x = Input(4)
    h = Activation("relu")(Linear(16)(x))
    h = Add()(h, Linear(16)(x))                    # two branches joined
    net = Network(x, Linear(3)(h), loss="cross_entropy", seed=0)

    net = Network.from_layers([{"linear": 16}, "relu"], inputs=4, outputs=3)  # what model.layers takes

Parameter names: the k-th ``linear`` (in listing order, depth-first through blocks) owns
``W{k}``, ``b{k}``; the k-th normalisation module (batch_norm and layer_norm counted together)
``gamma{k}``, ``beta{k}`` and, for batch_norm, the buffers ``running_mean{k}``,
``running_var{k}``; the k-th embedding ``E{k}``; any other module's parameter ``key`` is
``{kind}{k}.{key}``.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from typing import Any

import numpy as np

import mlpbp.engine.combine  # noqa: F401  (registers add, concat)
import mlpbp.engine.dropout  # noqa: F401  (registers dropout)
import mlpbp.engine.embedding  # noqa: F401  (registers select, embedding)
import mlpbp.engine.norm  # noqa: F401  (registers batch_norm, layer_norm)
import mlpbp.engine.periodic  # noqa: F401  (registers periodic)
from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.dtypes import get_dtype
from mlpbp.engine.init import INITS
from mlpbp.engine.layers import Activation, Linear, module_class
from mlpbp.engine.losses import CLASSIFICATION_LOSSES, get_loss, softmax
from mlpbp.engine.memory import require
from mlpbp.engine.module import MODULES, BuildContext, Input, Module, Node
from mlpbp.errors import ArgumentError, ConfigError

#: parameter groups whose parameters are named {key}{k} (W1, gamma2, E1); others {kind}{k}.{key}
SHORT_NAMES = ("linear", "norm", "embedding")
BLOCKS = ("residual",)  # layer-list entries that expand into several modules


def graph_nodes(output: Node) -> list[Node]:
    """Every node the output depends on, in the order they were made (inputs before users)."""
    seen, stack = {}, [output]
    while stack:
        n = stack.pop()
        if id(n) not in seen:
            seen[id(n)] = n
            stack.extend(n.inputs)
    return sorted(seen.values(), key=lambda n: n.order)


class Network:
    """A graph of modules from one input to one output, and a loss of that output.

    ``inputs`` is the ``Input`` node, ``outputs`` the node whose value the loss reads (the
    output o: logits for a classifier). ``seed`` draws the initial weights (in listing order)
    and, from a second stream, dropout masks (``generator``). ``init``: he | glorot, by
    default He when ``activation`` (else the graph's first activation) is ReLU-like."""

    def __init__(
        self,
        inputs: Node,
        outputs: Node,
        loss: str = "square",
        seed: int = 0,
        dtype: str = "float64",
        init: str | None = None,
        task: str | None = None,
        class_weight=None,
        activation: str | None = None,
        loss_params: dict | None = None,
    ) -> None:
        nodes = graph_nodes(outputs)
        if nodes[0] is not inputs or any(n.module is None for n in nodes[1:]):
            raise ValueError("the output must depend on the given input only")
        if len(nodes) < 2:
            raise ValueError("a network needs at least one module")
        self.dtype = get_dtype(dtype)
        self.n_inputs, self.n_outputs = inputs.width, outputs.width
        # loss_params: the loss's own settings (huber's delta, quantile's alpha)
        self.loss_params = dict(loss_params or {})
        self.loss_fn = get_loss(loss, class_weight, **self.loss_params)
        if class_weight is not None and len(class_weight) != self.n_outputs:
            raise ValueError(f"class_weight needs one weight per output ({self.n_outputs}); got {len(class_weight)}")
        if loss == "cross_entropy" and self.n_outputs < 2:  # a softmax over one class is always 1
            raise ValueError(f"cross_entropy needs at least 2 outputs; got {self.n_outputs}")
        acts = [n.module.name for n in nodes[1:] if isinstance(n.module, Activation)]
        self.activation = activation if activation is not None else (acts[0] if acts else "identity")
        if init is None:
            init = "he" if ACTIVATIONS.lookup(self.activation).relu_family else "glorot"
        init_fn = INITS.lookup(init)
        self.loss_name, self.seed, self.init = loss, seed, init
        self.task = task or ("classification" if loss in CLASSIFICATION_LOSSES else "regression")
        modules = [n.module for n in nodes[1:]]
        index = {id(n): i for i, n in enumerate(nodes)}  # value i: 0 the input, i the (i-1)-th module's output
        in_widths = [[x.width for x in n.inputs] for n in nodes[1:]]
        self._check_memory(modules, in_widths)
        for m in modules:
            if not type(m).__module__.startswith("mlpbp."):
                _check_options(m)

        ctx = BuildContext(np.random.default_rng(seed), self.dtype, init_fn)
        self.generator = np.random.default_rng([seed, 1])  # dropout masks: a stream apart from init
        for m, widths in zip(modules, in_widths):
            m.build(widths, ctx)
            if hasattr(m, "generator"):
                m.generator = self.generator
        self.layers: list[Module] = modules
        self.sources = [tuple(index[id(x)] for x in n.inputs) for n in nodes[1:]]
        self.widths_in = in_widths
        self.width_out = [n.width for n in nodes[1:]]
        self._name_params()
        self._plan_passes()
        self.training = True
        self.train()

    def _check_memory(self, modules, in_widths) -> None:
        sizes = [int(np.prod(s)) for m, w in zip(modules, in_widths) for s in m.param_shapes(w).values()]
        total = sum(sizes)
        require(
            2 * total * self.dtype.itemsize + max(sizes, default=0) * 8,
            f"a network of {total:,} parameters and their gradients",
        )

    def _name_params(self) -> None:
        counts: dict[str, int] = {}
        self.layer_param_names: list[dict[str, str]] = []
        self.layer_buffer_names: list[dict[str, str]] = []
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        for m in self.layers:
            names, bufs = {}, {}
            if m.params or m.buffers:
                group = m.param_group or m.kind
                k = counts[group] = counts.get(group, 0) + 1
                short = group in SHORT_NAMES
                names = {key: f"{key}{k}" if short else f"{m.kind}{k}.{key}" for key in m.params}
                bufs = {key: f"{key}{k}" if short else f"{m.kind}{k}.{key}" for key in m.buffers}
            for key, name in names.items():
                if name in self.params:
                    raise ValueError(f"two parameters are named {name!r}")
                self.params[name], self.grads[name] = m.params[key], m.grads[key]
            for key, name in bufs.items():
                self.buffers[name] = m.buffers[key]
            self.layer_param_names.append(names)
            self.layer_buffer_names.append(bufs)
        # (name, param, grad) per module, for an optimizer's update right after its backward
        self._updates = [
            [(name, m.params[k], m.grads[k]) for k, name in names.items()]
            for m, names in zip(self.layers, self.layer_param_names)
        ]

    def _plan_passes(self) -> None:
        """What each pass needs to know per value and module, worked out once."""
        n = len(self.layers)
        self._single = [m.n_inputs == 1 for m in self.layers]
        self._fanout = [0] * (n + 1)
        for srcs in self.sources:
            for j in srcs:
                self._fanout[j] += 1
        # requires[j]: value j depends on parameters, so its gradient is worth computing
        self._requires = [False] * (n + 1)
        for i, (m, srcs) in enumerate(zip(self.layers, self.sources)):
            self._requires[i + 1] = bool(m.params) or any(self._requires[j] for j in srcs)
        self._need_in = [any(self._requires[j] for j in srcs) for srcs in self.sources]
        self._with_buffers = [
            m for m in self.layers if m.buffers or type(m).update_buffers is not Module.update_buffers
        ]
        # A chain (each module reads the one before it) walks a plain list, as an MLP always did:
        # at batch 1 a step costs little more than its Python calls.
        self._chain = all(srcs == (i,) for i, srcs in enumerate(self.sources))
        self._back_plan = [
            (m, need, upd, m.in_place_backward) for m, need, upd in zip(self.layers, self._need_in, self._updates)
        ][::-1]
        self._vals: list[Any] = [None] * (n + 1)
        self._acc: dict[tuple[str, int], np.ndarray] = {}
        self._fresh = self.layers[-1].fresh_output

    def __repr__(self) -> str:
        mods = ", ".join(m.label for m in self.layers)
        return f"Network([{mods}], loss={self.loss_name!r}, dtype={str(self.dtype)!r}, params={self.n_params})"

    # ---- from a layer list ------------------------------------------------------------------
    @classmethod
    def from_layers(
        cls,
        layers,
        inputs: int,
        outputs: int,
        loss: str = "square",
        activation: str | None = None,
        seed: int = 0,
        dtype: str = "float64",
        init: str | None = None,
        task: str | None = None,
        class_weight=None,
        key: str = "layers",
    ) -> Network:
        """The network a layer list describes (what ``model.layers`` holds), from ``inputs``
        columns, with the output layer (``linear`` to ``outputs``) appended.

        Each entry is a module name (``"relu"``, ``"batch_norm"``) or a one-key mapping from a
        name to its options: a mapping (``{"batch_norm": {"momentum": 0.05}}``) or the one value
        its shorthand takes (``{"linear": 128}``, ``{"dropout": 0.1}``). Blocks:
        ``{"residual": [layers]}`` is y = x + f(x); ``{"add": [branch, …]}`` and
        ``{"concat": [branch, …]}`` join branches that all start from the current value, each
        branch a layer list (or one entry; ``[]`` is the value itself). Errors are ConfigError
        naming the entry (``layers[3] (residual) maps 128 → 64; …``), ``key`` the list."""
        x, out = layer_graph(layers, inputs, outputs, key)
        return cls(
            x,
            out,
            loss=loss,
            seed=seed,
            dtype=dtype,
            init=init,
            task=task,
            class_weight=class_weight,
            activation=activation,
        )

    # ---- the graph as data (model files, astype) --------------------------------------------
    def graph(self) -> dict[str, Any]:
        """The graph as JSON-able data: the input width and, per module, its registered name,
        options and input values (0 the network's input, i the i-th module's output)."""
        return {
            "inputs": self.n_inputs,
            "nodes": [
                {"module": m.kind, "options": m.options(), "inputs": list(srcs)}
                for m, srcs in zip(self.layers, self.sources)
            ],
        }

    @classmethod
    def from_graph(cls, graph: dict[str, Any], **settings) -> Network:
        """The network ``graph()`` describes (fresh weights: set them with ``set_flat``)."""
        values = [Input(int(graph["inputs"]))]
        for i, node in enumerate(graph["nodes"], start=1):
            path = f"graph node {i}"
            m = make_module(node["module"], node.get("options") or {}, path)
            # A node reads the input (0) or an earlier node: that is what keeps the graph acyclic.
            # Checked here, not left to list indexing, which takes -1 (the last value) and True
            # (1) for valid indices, and says "list index out of range" for a cycle.
            srcs = node["inputs"]
            bad = [j for j in srcs if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < i]
            if bad or not srcs:
                allowed = "0 (the input)" if i == 1 else f"0 (the input) to {i - 1} (the node before it)"
                got = f"reads value {bad[0]!r}" if bad else "reads no value"
                raise ConfigError(f"{path} ({node['module']}): {got}; allowed: {allowed}")
            values.append(_call(m, [values[j] for j in srcs], path, node["module"]))
        # Network keeps only what the output (the last node) depends on: a node nothing of it
        # reads would be dropped unseen, its parameters with it (and a last node that is not the
        # real output leaves that out).
        reached = {id(n) for n in graph_nodes(values[-1])}
        unused = [i for i, v in enumerate(values[1:], start=1) if id(v) not in reached]
        if unused:
            i = unused[0]
            raise ConfigError(
                f"graph node {i} ({graph['nodes'][i - 1]['module']}): the output (the last node) does not"
                " depend on it; every node must lead to the output"
            )
        return cls(values[0], values[-1], **settings)

    def settings(self) -> dict[str, Any]:
        """The keyword arguments besides the graph that rebuild this network."""
        weights = self.loss_fn.class_weight
        return {
            "loss": self.loss_name,
            "seed": self.seed,
            "dtype": str(self.dtype),
            "init": self.init,
            "task": self.task,
            "class_weight": None if weights is None else np.array(weights),
            "activation": self.activation,
            **({"loss_params": dict(self.loss_params)} if self.loss_params else {}),
        }

    def _like(self, dtype) -> Network:
        return Network.from_graph(self.graph(), **(self.settings() | {"dtype": dtype}))

    def astype(self, dtype) -> Network:
        """A copy in ``dtype`` with everything that defines its loss: weights, buffers, class
        weights, mode and the dropout generator's state (never the same arrays)."""
        copy = self._like(get_dtype(dtype))
        copy.set_flat(self.get_flat())
        for name, b in self.buffers.items():
            copy.buffers[name][...] = b
        copy.generator.bit_generator.state = self.generator.bit_generator.state
        return copy.train(self.training)

    # ---- state a checkpoint keeps besides the parameters ------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The buffers (live arrays, ``buffer.{name}``) and, with dropout, the mask generator's
        state (``generator``, six uint64 words): what a resumed run needs to go on bit for bit.
        Load into these arrays, then call ``load_state_dict`` with them."""
        out = {f"buffer.{k}": b for k, b in self.buffers.items()}
        if any(hasattr(m, "generator") for m in self.layers):
            st = self.generator.bit_generator.state
            words = [st["state"]["state"], st["state"]["inc"]]
            out["generator"] = np.array(
                [w >> 64 for w in words] + [w & (2**64 - 1) for w in words] + [st["has_uint32"], st["uinteger"]],
                np.uint64,
            )
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for k, b in self.buffers.items():
            if state[f"buffer.{k}"] is not b:
                b[...] = state[f"buffer.{k}"]
        if "generator" in state:
            w = [int(x) for x in state["generator"]]
            st = self.generator.bit_generator.state
            st["state"] = {"state": (w[0] << 64) | w[2], "inc": (w[1] << 64) | w[3]}
            st["has_uint32"], st["uinteger"] = w[4], w[5]
            self.generator.bit_generator.state = st

    # ---- mode -----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Network:
        """Training mode (batch statistics, dropout masks) or, with False, evaluation mode."""
        self.training = bool(mode)
        for m in self.layers:
            m.train(mode)
        return self

    def eval(self) -> Network:
        return self.train(False)

    def keep_batch_statistics(self, X) -> None:
        """Set the running statistics (batch_norm's) to the batch statistics of all of X at the
        current weights: one training-mode forward pass over X, then each module keeps that
        pass's statistics outright (momentum 1: μ, and n/(n − 1)·σ², as PyTorch keeps them).
        What the trainer does after each epoch of lbfgs or newton_cg, whose passes normalise by
        the whole data's statistics, so that evaluation mode predicts with them. Parameters,
        gradients and the mode are left as they were; dropout masks are drawn from a copy of
        the generator, so the run's stream does not move."""
        if not self._with_buffers:
            return
        state, was = self.generator.bit_generator.state, self.training
        self.train()
        try:
            self._forward(self._input(X))
            for m in self._with_buffers:
                m.keep_batch_statistics()
        finally:
            self.generator.bit_generator.state = state
            self.train(was)

    #: the batch that modules taking batch statistics normalise over when processes share its
    #: rows (``share_batches``); None: each pass's rows are the batch
    whole_batch = None

    def share_batches(self, batch) -> bool:
        """Let every module whose training-mode output depends on the other rows of its batch
        (batch_norm) take its sums over the whole batch through ``batch`` (an
        ``mlpbp.engine.norm.WholeBatch``: the processes that each hold some rows of every batch
        then compute what one process holding all of them does); None to stop. Every process
        must then run every training-mode pass, with no rows if it has none. Returns whether
        any module takes it."""
        takers = [m for m in self.layers if hasattr(m, "whole_batch")]
        for m in takers:
            m.whole_batch = batch
        self.whole_batch = batch if takers else None
        return bool(takers)

    @contextlib.contextmanager
    def fixed_masks(self):
        """A block in which every dropout keeps its last mask (drawing one if it has none):
        a training-mode loss is then one function of θ, for finite differences."""
        drops = [m for m in self.layers if hasattr(m, "fixed")]
        for m in drops:
            m.fixed = True
        try:
            yield
        finally:
            for m in drops:
                m.fixed = False

    def eval_mode_changes(self) -> list[str]:
        """What evaluation mode changes in this network, in words, each once in listing order
        (``["dropout off", "batch_norm's running statistics"]``); empty when the two modes
        compute the same function."""
        changes = [m.eval_changes for m in self.layers if m.eval_changes]
        return list(dict.fromkeys(changes))

    @property
    def curvature_ready(self) -> bool:
        return all(m.has_curvature for m in self.layers)

    def require_curvature(self) -> None:
        """ArgumentError (one line) when a module lacks the R-operator passes."""
        missing = sorted({m.kind for m in self.layers if not m.has_curvature})
        if missing:
            # "module 'glu', 'stanh' has" read as one module named twice
            which = (
                f"module {missing[0]!r} has" if len(missing) == 1 else f"modules {', '.join(map(repr, missing))} have"
            )
            raise ArgumentError(
                f"{which} no R-operator passes (rforward, rbackward): Hessian and Gauss-Newton products need them"
            )

    # ---- description ------------------------------------------------------------------------
    @property
    def widths(self) -> list[int]:
        """The input width, then each linear module's output width (an MLP's layer widths)."""
        return [self.n_inputs] + [m.width for m in self.layers if isinstance(m, Linear)]

    @property
    def shape(self) -> str:
        """The network in a few words (``shape_label``)."""
        return shape_label(self.widths, self.activation, len(self.layers), self._chain)

    @property
    def linears(self) -> list[Module]:
        """The modules that have parameters, first to last."""
        return [m for m in self.layers if m.params]

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    # ---- passes ---------------------------------------------------------------------------
    def _input(self, X) -> np.ndarray:
        if hasattr(X, "tocsr") and not isinstance(X, np.ndarray):  # SciPy sparse: kept sparse
            return self._sparse_input(X)
        X = np.asarray(X, dtype=self.dtype)  # no copy when the data already has the dtype
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must have shape (batch, {self.n_inputs}); got {X.shape}")
        return X

    def _sparse_input(self, X):
        """A sparse batch as CSR in the network's dtype, for a network whose input feeds one
        linear module (its products are taken on the nonzeros; nothing else can take it)."""
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must have shape (batch, {self.n_inputs}); got {X.shape}")
        readers = [i for i, srcs in enumerate(self.sources) if 0 in srcs]
        if len(readers) != 1 or self.layers[readers[0]].kind != "linear":
            raise ValueError("sparse X needs a network whose input goes to one linear module; densify it first")
        X = X.tocsr()
        return X if X.dtype == self.dtype else X.astype(self.dtype)

    def _targets(self, y) -> np.ndarray:
        y = np.asarray(y)
        if y.dtype.kind not in "iu":
            y = y.astype(self.dtype, copy=False)
        return y

    def _forward(self, X: np.ndarray, keep: bool = False) -> np.ndarray:
        """The output o; ``keep``: also keep every value in ``_vals`` (0 the input)."""
        if self._chain and not keep:
            for m in self.layers:
                X = m.forward(X)
            return X
        vals, single = self._vals, self._single
        vals[0] = X
        for i, m in enumerate(self.layers):
            srcs = self.sources[i]
            vals[i + 1] = m.forward(vals[srcs[0]]) if single[i] else m.forward([vals[j] for j in srcs])
        return vals[-1]

    def _loss(self, o: np.ndarray, y: np.ndarray, grad: bool = False, scale: float | None = None):
        """The one place the passes call the loss: J; with ``grad``, (J, ∂J/∂o) keeping what
        ``rbackward``/``output_hvp`` need; with ``scale`` s, (J, s·∂J/∂o) written over o."""
        self._empty = o.shape[0] == 0
        if self._empty:  # a process's share of a batch whose rows are all elsewhere: J = 0
            return (0.0, np.zeros_like(o)) if grad or scale is not None else 0.0
        if scale is not None:
            if not self._fresh:  # the last module's backward reads its output: keep it
                o = o.copy()
            return self.loss_fn.value_and_grad(o, y, scale, self._weight)
        value = self.loss_fn.forward(o, y, self._weight)
        return (value, self.loss_fn.backward()) if grad else value

    _weight: np.ndarray | None = None  # the current pass's per-row weights (None: all 1)
    _empty = False  # the current pass has no rows

    def _weigh(self, sample_weight, n: int) -> None:
        """Set the per-row weights of the next pass: n finite values >= 0, or None. J is then
        their weighted mean, Σ sⱼJⱼ/Σ sⱼ (a row of weight 2 counts as that row twice)."""
        if sample_weight is None:
            self._weight = None
            return
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if w.shape[0] != n:
            raise ValueError(f"sample_weight needs one weight per row ({n}); got {w.shape[0]}")
        if not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError("sample_weight must be finite and >= 0")
        self._weight = w

    def _accumulate(self, grads: list, owned: list, key: str, j: int, g, own: bool, in_place: bool) -> None:
        """Add gradient ``g`` into value j's; the first is kept by reference, a second sums both
        into a buffer of the network's own (which, in a pass that allows it, a module may
        overwrite: ``owned``)."""
        if not self._requires[j]:
            return
        cur = grads[j]
        if cur is None or self._fanout[j] == 1:
            grads[j], owned[j] = g, in_place and own and self._fanout[j] == 1
            return
        acc = self._acc.get((key, j))
        if acc is None or acc.shape != cur.shape:
            acc = self._acc[(key, j)] = np.empty(cur.shape, self.dtype)
        if cur is acc:
            acc += g
        else:
            np.add(cur, g, out=acc)
            grads[j], owned[j] = acc, in_place

    def _backward(self, g: np.ndarray, need_param_grad: bool = True, opt=None, decay=None, in_place=False) -> None:
        """Walk the modules in reverse, each turning ∂J/∂(its output) into ∂J/∂(its inputs),
        summed where a value fans out. With ``opt``, its update of each module's parameters
        right after that module's backward; with ``decay`` (the fused SGD step: ∂J/∂o carries
        −α), each module adds its update into its parameters itself (``backward_update``).
        ``in_place``: a module may overwrite a gradient nothing else holds."""
        if self._chain:  # every gradient is the one module's before it: nothing to sum
            for m, need, upd, can in self._back_plan:
                if decay is not None and upd:
                    g = m.backward_update(g, decay=decay, need_input_grad=need)
                    continue
                if in_place and can:
                    g = m.backward(g, need_input_grad=need, need_param_grad=need_param_grad, in_place=True)
                else:
                    g = m.backward(g, need_input_grad=need, need_param_grad=need_param_grad)
                if opt is not None:
                    for name, p, grad in upd:
                        opt.update(name, p, grad)
            return
        n = len(self.layers)
        grads, owned = [None] * (n + 1), [False] * (n + 1)
        grads[n], owned[n] = g, in_place
        layers, sources, need_in, single, updates = (
            self.layers,
            self.sources,
            self._need_in,
            self._single,
            self._updates,
        )
        for i in range(n - 1, -1, -1):
            g = grads[i + 1]
            if g is None:
                continue
            m, need = layers[i], need_in[i]
            if decay is not None and updates[i]:
                r = m.backward_update(g, decay=decay, need_input_grad=need)
            else:
                if owned[i + 1] and m.in_place_backward:
                    r = m.backward(g, need_input_grad=need, need_param_grad=need_param_grad, in_place=True)
                else:
                    r = m.backward(g, need_input_grad=need, need_param_grad=need_param_grad)
                if opt is not None:
                    for name, p, grad in updates[i]:
                        opt.update(name, p, grad)
            if not need:
                continue
            if single[i]:  # a module may hand back the very array it got (dropout in evaluation)
                self._accumulate(grads, owned, "g", sources[i][0], r, owned[i + 1] or r is not g, in_place)
            else:
                own = owned[i + 1] and len({id(x) for x in r}) == len(r)  # add hands one array to each input
                for j, rj in zip(sources[i], r):
                    if rj is not None:
                        self._accumulate(grads, owned, "g", j, rj, own, in_place)

    def _commit_buffers(self) -> None:
        for m in self._with_buffers:
            m.update_buffers()

    def forward(self, X) -> np.ndarray:
        """The network's output o (logits for a classifier), as a new array."""
        return self._forward(self._input(X)).copy()

    def loss(self, X, y, sample_weight=None) -> float:
        """J, the batch mean of the loss (weighted by ``sample_weight``, one weight per row)."""
        X = self._input(X)
        self._weigh(sample_weight, X.shape[0])
        return self._loss(self._forward(X), self._targets(y))

    def step_loss_and_grad(self, X: np.ndarray, y: np.ndarray, sample_weight=None) -> float:
        """The training loop's pass: fills ``self.grads`` in place, moves the running
        statistics (a training step), and returns J."""
        self._weigh(sample_weight, X.shape[0])
        value, g = self._loss(self._forward(X), y, grad=True)
        self._commit_buffers()
        self._backward(g)
        return value

    def train_step(self, X, y, opt, sample_weight=None) -> float:
        """One training step on the batch (X, y): forward, backward and ``opt``'s update of
        every parameter in place. Returns J before the update; when J is not finite nothing
        is updated (the caller decides what divergence means).

        The optimizer chooses the update, here in one place: SGD without momentum
        (``opt.fused_scale`` = −α) is fused into the backward pass: −α is folded into ∂J/∂o,
        and each module adds −α∂J/∂θ straight into its parameters (scaled by
        ``opt.fused_decay`` = 1 − αλ under weight decay λ) after computing ∂J/∂u with the old
        ones (``Module.backward_update``: one BLAS gemm with β = 1 − αλ per weight, or a rank-1
        ger at batch 1); ``self.grads`` is then not filled. Any other rule updates a module's
        parameters with ``opt.update`` right after that module's backward, so the reference
        path ``loss_and_grad`` + ``opt.step`` gives the same parameters up to rounding."""
        scale = opt.fused_scale
        X = self._input(X)
        self._weigh(sample_weight, X.shape[0])
        value, g = self._loss(self._forward(X), self._targets(y), scale=1.0 if scale is None else scale)
        if not math.isfinite(value):
            return value
        for m in self._with_buffers:
            m.update_buffers()
        opt.begin_step()
        if scale is None:
            self._backward(g, opt=opt, in_place=True)
        else:
            self._backward(g, decay=opt.fused_decay, in_place=True)
        return value

    @contextlib.contextmanager
    def deferred_updates(self, batch_size: int):
        """A block of ``train_step`` calls in which per-example updates may be kept pending
        (``MLP.deferred_updates``); yields how many steps a group holds, 1 here."""
        yield 1

    def loss_and_grad(self, X, y, sample_weight=None) -> tuple[float, dict[str, np.ndarray]]:
        """J and ∂J/∂θ for every parameter name (fresh arrays, safe to keep); running
        statistics stay as they are."""
        X = self._input(X)
        self._weigh(sample_weight, X.shape[0])
        value, g = self._loss(self._forward(X), self._targets(y), grad=True)
        self._backward(g)
        return value, {k: g.copy() for k, g in self.grads.items()}

    def hvp(self, X, y, v: dict[str, np.ndarray], sample_weight=None) -> dict[str, np.ndarray]:
        """The exact Hessian-vector product ∇²J(θ)·v, by forward-over-reverse (R-operator).

        One forward and one backward pass (∂J/∂z and σ'(z) at every module), then one R-forward
        and one R-backward pass through the same graph, summing where values fan out: a small
        constant times the cost of J, at any depth; the Hessian is never formed. Returns fresh
        arrays (views of one new flat vector)."""
        r_o, V = self._rforward(X, y, v, sample_weight)
        n = len(self.layers)
        grads, owned = [None] * (n + 1), [False] * (n + 1)
        grads[n] = np.zeros_like(r_o) if self._empty else self.loss_fn.rbackward(r_o)
        out = self.unflatten(np.zeros(self.n_params, self.dtype))
        for i in range(n - 1, -1, -1):
            r_g = grads[i + 1]
            if r_g is None:
                continue
            into = {k: out[name] for k, name in self.layer_param_names[i].items()}
            r, _ = self.layers[i].rbackward(r_g, V[i], into, need_input_grad=self._need_in[i])
            if not self._need_in[i]:
                continue
            for j, rj in zip(self.sources[i], [r] if self._single[i] else r):
                if rj is not None:
                    self._accumulate(grads, owned, "r", j, rj, False, False)
        return out

    def _rforward(self, X, y, v, sample_weight=None) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """Forward and backward, then R-forward along v: R{o} = J_o v, and v split per module."""
        self.require_curvature()
        X, y = self._input(X), self._targets(y)
        missing = set(self.params) - set(v)
        if missing:
            raise ValueError(f"direction v lacks {sorted(missing)}")
        V = [{k: np.asarray(v[name], self.dtype) for k, name in names.items()} for names in self.layer_param_names]
        self._weigh(sample_weight, X.shape[0])
        _, g = self._loss(self._forward(X), y, grad=True)
        self._backward(g, need_param_grad=False)
        rv = [None] * (len(self.layers) + 1)  # R{u} is zero (None) at the network's input
        for i, m in enumerate(self.layers):
            srcs = self.sources[i]
            rv[i + 1] = m.rforward(rv[srcs[0]] if self._single[i] else [rv[j] for j in srcs], V[i])
        r_o = rv[-1]
        return (np.zeros((X.shape[0], self.n_outputs), self.dtype) if r_o is None else r_o), V

    def gnvp(self, X, y, v: dict[str, np.ndarray], sample_weight=None) -> dict[str, np.ndarray]:
        """The Gauss-Newton product G·v = J_oᵀ H_L J_o v (Schraudolph 2002), J_o = ∂o/∂θ.

        The Hessian without its second-derivative-of-the-network terms: positive
        semi-definite for a convex loss in o. The same R-forward pass as ``hvp`` gives J_o v,
        the loss's Hessian in o multiplies it, and a plain backward pass applies J_oᵀ. Returns
        fresh arrays (views of one new flat vector); the network's ``grads`` are overwritten."""
        r_o, _ = self._rforward(X, y, v, sample_weight)
        self._backward(np.zeros_like(r_o) if self._empty else self.loss_fn.output_hvp(r_o))
        out = self.unflatten(np.empty(self.n_params, self.dtype))
        for name, g in self.grads.items():
            out[name][...] = g
        return out

    # ---- predictions --------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Class indices (argmax of the output) for a classifier, else the output itself."""
        o = self.forward(X)
        return o.argmax(axis=1) if self.task == "classification" else o

    def predict_proba(self, X) -> np.ndarray:
        """Softmax probabilities, for a network trained with cross_entropy."""
        if self.loss_name != "cross_entropy":
            raise ValueError("predict_proba needs a network trained with cross_entropy")
        return softmax(self._forward(self._input(X)))

    # ---- flat views, for finite differences and second-order methods ----------------------
    def get_flat(self) -> np.ndarray:
        return self.flatten(self.params)

    def set_flat(self, theta) -> None:
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},); got {theta.shape}")
        for p, part in zip(self.params.values(), self.unflatten(theta).values()):
            p[...] = part  # in place: params stay the live arrays the modules use

    def flatten(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        """One vector in the order of ``params`` (W1, b1, W2, b2, …)."""
        return np.concatenate([np.ravel(tensors[k]) for k in self.params])

    def unflatten(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        out, i = {}, 0
        for k, p in self.params.items():
            out[k] = theta[i : i + p.size].reshape(p.shape)
            i += p.size
        return out

    def flat_grad(self, X, y, sample_weight=None) -> tuple[float, np.ndarray]:
        value, grads = self.loss_and_grad(X, y, sample_weight)
        return value, self.flatten(grads)

    def flat_hvp(self, X, y, v, sample_weight=None) -> np.ndarray:
        return self.flatten(self.hvp(X, y, self.unflatten(np.asarray(v)), sample_weight))

    def flat_gnvp(self, X, y, v, sample_weight=None) -> np.ndarray:
        return self.flatten(self.gnvp(X, y, self.unflatten(np.asarray(v)), sample_weight))


# ---- layer lists ------------------------------------------------------------------------------


def layer_names() -> list[str]:
    """Every name a layer list accepts: registered modules, activations and blocks."""
    return [*MODULES, *(a for a in ACTIVATIONS if a not in MODULES), *BLOCKS]


def _unknown(path: str, name) -> ConfigError:
    names = layer_names()
    close = difflib.get_close_matches(name, names, n=1) if isinstance(name, str) else []
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"{path}: unknown module {name!r}; {hint}allowed: {', '.join(map(repr, names))}")


def make_module(name: str, options: dict, path: str) -> Module:
    """The module registered as ``name`` built from ``options`` (ConfigError naming ``path``)."""
    if not isinstance(name, str) or (name not in MODULES and name not in ACTIVATIONS):
        raise _unknown(path, name)
    cls = module_class(name)
    if cls is Activation:
        if options:
            raise ConfigError(f"{path} ({name}): an activation takes no options; got {options!r}")
        return Activation(name)
    try:
        return cls(**options)
    except TypeError as e:
        import inspect

        accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
        unknown = [k for k in options if k not in accepted]
        if unknown:
            allowed = ", ".join(accepted) or "none"
            raise ConfigError(f"{path} ({name}): unknown option {unknown[0]!r}; its options: {allowed}") from None
        raise ConfigError(f"{path} ({name}): {e}") from None
    except ValueError as e:
        raise ConfigError(f"{path} ({name}): {e}") from None


def _entry(item, path: str) -> tuple[str, Any]:
    """(name, value) of one layer-list entry: a name, or a one-key mapping."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict) and len(item) == 1:
        return next(iter(item.items()))
    raise ConfigError(f"{path}: a layer is a module name or a one-key mapping {{name: options}}; got {item!r}")


def check_layers(layers, key: str = "layers") -> None:
    """Check a layer list's names and options without any widths (ConfigError naming the
    entry); widths are checked when the network is built, once the data gives the input's."""
    if not isinstance(layers, list | tuple):
        raise ConfigError(f"{key} must be a list of layers; got {layers!r}")
    for i, item in enumerate(layers):
        path = f"{key}[{i}]"
        name, value = _entry(item, path)
        if name == "residual":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{path} (residual): takes a non-empty list of layers; got {value!r}")
            check_layers(value, f"{path}.residual")
        elif name in ("add", "concat") and isinstance(value, list):
            if len(value) < 2:
                raise ConfigError(f"{path} ({name}): takes a list of two or more branches; got {value!r}")
            for j, b in enumerate(value):
                check_layers(b if isinstance(b, list) else [b], f"{path}.{name}[{j}]")
        else:
            _module_of(name, value, path)


def layer_graph(layers, inputs: int, outputs: int, key: str = "layers") -> tuple[Node, Node]:
    """(input, output) nodes of a layer list with the output linear appended; nothing allocated."""
    x = Input(int(inputs))
    return x, Linear(int(outputs))(chain(layers, x, key))


def shape_label(widths: list[int], activation: str, modules: int, chain: bool) -> str:
    """'2-64-64-10 relu network' for a chain (each module reads the one before it); for any
    other graph its module count, its input and output widths and its linears' widths in
    listing order: a chain of widths would read side-by-side embeddings as layers one after
    another."""
    if chain:
        return f"{'-'.join(map(str, widths))} {activation} network"
    n_in, n_out = widths[0], widths[-1]
    ends = f"{n_in} input{'s' * (n_in != 1)} to {n_out} output{'s' * (n_out != 1)}"
    return f"graph of {modules} modules from {ends} (linears {', '.join(map(str, widths[1:]))})"


def chain(layers, x: Node, key: str = "layers") -> Node:
    """Apply a layer list to node ``x`` (see ``Network.from_layers``); the last node."""
    if not isinstance(layers, list | tuple):
        raise ConfigError(f"{key} must be a list of layers; got {layers!r}")
    h = x
    for i, item in enumerate(layers):
        h = _apply(item, h, f"{key}[{i}]")
    return h


def _apply(item, h: Node, path: str) -> Node:
    name, value = _entry(item, path)
    if name == "residual":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{path} (residual): takes a non-empty list of layers; got {value!r}")
        f = chain(value, h, f"{path}.residual")
        if f.width != h.width:
            raise ConfigError(f"{path} (residual) maps {h.width} → {f.width}; its last module must give {h.width}")
        return _call(MODULES.lookup("add")(), [h, f], path, "add")
    if name in ("add", "concat") and isinstance(value, list):
        if len(value) < 2:
            raise ConfigError(f"{path} ({name}): takes a list of two or more branches; got {value!r}")
        branches = [chain(b if isinstance(b, list) else [b], h, f"{path}.{name}[{j}]") for j, b in enumerate(value)]
        return _call(make_module(name, {}, path), branches, path, name)
    return _call(_module_of(name, value, path), [h], path, name)


_SIMPLE = (bool, int, float, str, tuple, type(None))


def _check_options(m: Module) -> None:
    """A module written outside mlpbp must give back in ``options()`` what it was built with: a
    model file stores a module as its kind and options and rebuilds it from them, so an option
    left out reloaded with its default, a different function, without a word. Checked on the
    constructor's plain attributes (numbers, strings, flags), before the module is built."""
    options = m.options()
    try:
        again = type(m)(**options)
    except TypeError as e:
        raise ArgumentError(f"module {m.kind!r}: its options() {options} do not rebuild it ({e})") from None
    base = vars(Module())
    for key, value in vars(again).items():
        if key in base or not isinstance(value, _SIMPLE) or not isinstance(getattr(m, key, None), _SIMPLE):
            continue
        if getattr(m, key) != value and value == value:  # (a NaN option equals itself here)
            raise ArgumentError(
                f"module {m.kind!r} has {key}={getattr(m, key)!r}, but its options() {options} rebuild it with"
                f" {key}={value!r}: return {key!r} from options() (model files rebuild a module from them)"
            )


def _module_of(name, value, path: str) -> Module:
    """The module of one entry: ``value`` None, its options, or its shorthand's value."""
    if value is None:
        options = {}
    elif isinstance(value, dict):
        options = value
    else:
        cls = module_class(name) if isinstance(name, str) and (name in MODULES or name in ACTIVATIONS) else None
        if cls is None:
            raise _unknown(path, name)
        if cls.shorthand is None:
            if name in ACTIVATIONS:  # 'give its options as a mapping' sent a user looking for relu's
                raise ConfigError(f"{path} ({name}): takes no options; write it as {name!r} alone; got {value!r}")
            raise ConfigError(f"{path} ({name}): takes no single value; give its options as a mapping; got {value!r}")
        options = {cls.shorthand: value}
    return make_module(name, options, path)


def _call(m: Module, inputs: list[Node], path: str, name: str) -> Node:
    try:
        return m(*inputs)
    except ValueError as e:
        raise ConfigError(f"{path} ({name}): {e}") from None
