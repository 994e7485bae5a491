"""The one contract every module of a network keeps, and ``MODULES``, the registry of their names.

A network is a directed acyclic graph of modules (``mlpbp.engine.graph.Network``); it walks them
without asking what each one is. A module maps its input(s) u to an output y and implements the
chain-rule step for itself: given ∂J/∂y it returns ∂J/∂u and fills ∂J/∂θ for its parameters θ.

Batches are rows: an input has shape (batch, width). A module with ``n_inputs == 1`` receives and
returns arrays; one with several inputs (``n_inputs`` None: two or more) receives a list of
arrays and returns a list of input gradients.

- ``output_width(in_widths)`` → its output width (validating its inputs, ValueError if wrong);
  ``build(in_widths, ctx)`` creates ``params`` (and ``grads``, one array per param, same keys)
  and ``buffers`` (state that is not trained, e.g. running statistics) from ``ctx.rng``,
  ``ctx.dtype`` and ``ctx.init``; ``param_shapes(in_widths)`` says what ``build`` will allocate.
- ``forward(u)`` → y, keeping what ``backward`` needs; ``backward(grad_y, *, need_input_grad,
  need_param_grad)`` → ∂J/∂u (None when not needed), filling ``grads``. A module with
  ``in_place_backward`` also takes ``in_place=True``: it may then overwrite ``grad_y``
  (nothing reads it again; training steps only).
- ``rforward(r_u, V)`` → R{y}, the directional derivative along a parameter direction ``V``
  (this module's share, keyed like ``params``; R{u} is None where it is zero), and
  ``rbackward(r_grad_y, V, out, need_input_grad)`` → (R{∂J/∂u}, R{∂J/∂θ}) (Pearlmutter's
  R-operator): together the exact Hessian-vector product. A module without them trains and is
  gradchecked; Hessian and Gauss-Newton products refuse it.
- ``training`` (``train()``/``eval()``) selects what modules such as dropout and batch_norm
  compute (such a module says what in ``eval_changes``); ``update_buffers()`` commits a
  training forward pass's statistics (the network calls it on training steps only, so a loss or
  Hessian evaluation never moves running statistics); ``keep_batch_statistics()`` sets them to
  that pass's statistics outright (after whole-data epochs: lbfgs, newton_cg).
- ``options()`` → the JSON-able keyword arguments that rebuild the module (``cls(**options)``):
  what model files store, beside the registered name ``kind``.

Arrays a module returns may live in scratch buffers it reuses (``_buffer``): valid until its
next call of the same method.

Registering a module class (``MODULES.register("glu", GLU)``) makes its name usable in
``model.layers``, model files, ``gradcheck`` and the Hessian tools.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpbp.engine.registry import Registry

_creation = itertools.count()  # the order modules are applied in: a network's listing order


@dataclass
class BuildContext:
    """What ``Module.build`` draws from: the network's init generator (drawn in listing order, so
    a seed gives the same weights), the dtype and the weight init ``init(rng, fan_in, fan_out)``."""

    rng: np.random.Generator
    dtype: np.dtype
    init: Any


class Node:
    """A value of the graph: the network's input, or a module applied to nodes."""

    __slots__ = ("module", "inputs", "width", "order")

    def __init__(self, module: Module | None, inputs: tuple[Node, ...], width: int) -> None:
        self.module, self.inputs, self.width = module, inputs, int(width)
        self.order = next(_creation)

    def __repr__(self) -> str:
        return f"Node({self.module!r}, width={self.width})" if self.module else f"Input({self.width})"


def Input(width: int) -> Node:
    """The network's input, ``width`` columns: where a graph of modules starts."""
    if int(width) < 1:
        raise ValueError(f"an input needs width >= 1; got {width}")
    return Node(None, (), width)


class Module:
    """Base class of every module; see the module docstring for the contract."""

    #: the registered name (``MODULES``); model files store it
    kind = "module"
    #: 1, or None for two or more inputs (given as a list)
    n_inputs: int | None = 1
    #: the option a scalar sets in a layer list (``- linear: 128`` is ``width=128``)
    shorthand: str | None = None
    #: which counter numbers this module's parameters: "linear" owns W{k}/b{k}, "norm"
    #: gamma{k}/beta{k}; any other group names them {kind}{k}.{key}
    param_group: str | None = None
    #: kinked (ReLU-like) at 0: finite differences must not step across the kink
    kinked = False
    #: backward takes ``in_place=True`` (may overwrite grad_out); the network passes it only then
    in_place_backward = False
    #: False where the input is not a function's argument but a code (embedding)
    differentiable_input = True
    #: forward returns a buffer its backward never reads, so a loss may overwrite the output
    fresh_output = False
    #: what evaluation mode changes, in words ("dropout off"); None where both modes compute
    #: the same function. predict, evaluate and gradcheck say it.
    eval_changes: str | None = None

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}  # scratch memory, reused between calls
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}  # state that is not trained (running statistics)
        self.training = True
        self.dtype = np.dtype(np.float64)
        self._applied = False

    # ---- building -------------------------------------------------------------------------
    def __call__(self, *inputs: Node) -> Node:
        """Apply the module to graph nodes: ``h = Linear(16)(x)``. A module is applied once."""
        if self._applied:
            raise ValueError(f"{self.label} is already part of a graph; build a new module to use another")
        if not inputs or not all(isinstance(n, Node) for n in inputs):
            raise TypeError(f"{self.kind} takes graph nodes (Input(...) or another module's output)")
        if self.n_inputs == 1 and len(inputs) != 1:
            raise ValueError(f"{self.kind} takes one input; got {len(inputs)}")
        if self.n_inputs is None and len(inputs) < 2:
            raise ValueError(f"{self.kind} takes two or more inputs; got {len(inputs)}")
        width = self.output_width([n.width for n in inputs])
        self._applied = True
        return Node(self, inputs, width)

    def options(self) -> dict[str, Any]:
        return {}

    def output_width(self, in_widths: list[int]) -> int:
        """Elementwise by default: the output is as wide as the input."""
        return in_widths[0]

    def param_shapes(self, in_widths: list[int]) -> dict[str, tuple[int, ...]]:
        return {}

    def build(self, in_widths: list[int], ctx: BuildContext) -> None:
        self.dtype = np.dtype(ctx.dtype)

    # ---- the passes -------------------------------------------------------------------------
    def forward(self, u):
        raise NotImplementedError

    def backward(self, grad_out, *, need_input_grad: bool = True, need_param_grad: bool = True, in_place=False):
        raise NotImplementedError

    def rforward(self, r_u, V: dict[str, np.ndarray]):
        raise NotImplementedError

    def rbackward(self, r_grad_out, V: dict[str, np.ndarray], out=None, need_input_grad: bool = True):
        raise NotImplementedError

    def backward_update(self, grad_out, *, decay: float = 1.0, need_input_grad: bool = True):
        """The fused SGD step's backward (``Network`` calls it when the optimizer is plain SGD):
        ``grad_out`` already carries the step's −α, so ∂J/∂θ computed from it is the update;
        θ := decay·θ + it, in place, after ∂J/∂u is taken with the old θ. This default runs
        ``backward`` and adds ``grads``; ``Linear`` does it in one BLAS call per weight."""
        grad_in = self.backward(grad_out, need_input_grad=need_input_grad, need_param_grad=True)
        for k, p in self.params.items():
            if decay != 1.0:
                p *= decay
            p += self.grads[k]
        return grad_in

    def update_buffers(self) -> None:
        """Commit the last training forward pass's statistics (running means, …)."""

    def keep_batch_statistics(self) -> None:
        """Make the running statistics the last training forward pass's own (as ``update_buffers``
        with momentum 1): after whole-data passes, whose statistics are the data's."""

    def defer(self, capacity: int) -> None:
        """Start keeping a fused step's per-example updates pending (``Linear.defer``)."""

    def flush(self) -> None:
        """Apply pending updates and stop deferring."""

    # ---- mode and description ---------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        self.training = bool(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    @property
    def has_curvature(self) -> bool:
        """Whether the module has its R-operator passes (Hessian-vector products need them)."""
        cls = type(self)
        return cls.rforward is not Module.rforward and cls.rbackward is not Module.rbackward

    @property
    def label(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f"{self.kind}({opts})" if opts else self.kind

    def flops(self, in_widths: list[int], out_width: int) -> tuple[int, int]:
        """Floating-point operations per row for (forward, backward): elementwise by default."""
        return out_width, 2 * out_width

    def __repr__(self) -> str:
        return self.label

    def _buffer(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape:
            buf = self._buffers[key] = np.empty(shape, self.dtype)
        return buf


class _ModuleRegistry(Registry[type]):
    """``MODULES``: a class goes in only where its ``kind`` names it. Model files store a module
    by its kind and load the class registered under that name, so a variant registered as
    "glu_tanh" but left with its parent's kind "glu" saved as, and reloaded into, the parent
    (another function, no error)."""

    def register(self, name: str, obj: type | None = None, *, replace: bool = False):
        if obj is None:
            return lambda o: self.register(name, o, replace=replace)
        if isinstance(name, str) and name and (name not in self or replace):
            kind = getattr(obj, "kind", None)
            if kind != name and self.get(kind) is not obj:  # an alias of a kind registered to it is fine
                raise ValueError(
                    f"module class {getattr(obj, '__name__', obj)!r} has kind {kind!r}, not {name!r}: set"
                    f" kind = {name!r} on it (model files name a module by its kind)"
                )
        return super().register(name, obj, replace=replace)


MODULES: Registry[type] = _ModuleRegistry("module")


def check_option(kind: str, name: str, value, types: tuple[type, ...], what: str):
    """``value`` if it is of ``types`` (bool is not a number), else a one-line TypeError."""
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise TypeError(f"{kind} option {name} must be {what}; got {value!r}")
    return value
