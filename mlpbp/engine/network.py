"""The multilayer perceptron: the chain Linear → activation → … → Linear, a Network whose graph
is a line (see ``mlpbp.engine.graph`` for the passes)."""

from __future__ import annotations

import contextlib

from mlpbp.engine.activations import get_activation
from mlpbp.engine.dtypes import get_dtype
from mlpbp.engine.graph import Network
from mlpbp.engine.layers import Activation, Linear
from mlpbp.engine.memory import describe_widths, n_params, network_bytes, require
from mlpbp.engine.module import Input

# Per-example updates of the first layer applied this many at a time (see deferred_updates), and
# only when it has at least DEFER_MIN_SIZE weights: a smaller W stays in cache, where one rank-1
# update costs less than the two extra products deferring adds to each forward pass.
DEFER_STEPS = 16
DEFER_MIN_SIZE = 131072


class MLP(Network):
    """A stack of R linear layers with an activation after each one but the last.

    ``widths`` lists every layer's width, input first and output last: ``[64, 32, 10]`` is
    64 → 32 → 10. Parameters are live arrays named as in the lecture: ``params["W1"]`` of shape
    (32, 64), ``params["b1"]``, …, ``params["WR"]``, ``params["bR"]`` with R = len(widths) − 1.
    The output layer is linear; the loss turns its output o into J.
    """

    def __init__(
        self,
        widths,
        activation: str = "relu",
        loss: str = "square",
        seed: int = 0,
        dtype: str = "float64",
        init: str | None = None,
        task: str | None = None,
        class_weight=None,
        loss_params: dict | None = None,
    ) -> None:
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths needs at least an input and an output width, all >= 1; got {widths}")
        require(
            network_bytes(widths, get_dtype(dtype)),
            f"a {describe_widths(widths)} network ({n_params(widths):,} parameters and their gradients)",
        )
        get_activation(activation)
        x = h = Input(widths[0])
        for r, width in enumerate(widths[1:], start=1):
            h = Linear(width)(h)
            if r < len(widths) - 1:
                h = Activation(activation)(h)
        # loss_params: the loss's own settings (huber's delta, quantile's alpha)
        super().__init__(x, h, loss, seed, dtype, init, task, class_weight, activation, loss_params)

    def __repr__(self) -> str:
        return (
            f"MLP(widths={self.widths}, activation={self.activation!r}, loss={self.loss_name!r}, "
            f"dtype={str(self.dtype)!r}, params={self.n_params})"
        )

    @contextlib.contextmanager
    def deferred_updates(self, batch_size: int):
        """A block of ``train_step`` calls in which the first layer's per-example SGD updates
        are applied ``DEFER_STEPS`` at a time (``Linear.defer``): at batch 1 with a large first
        layer (``DEFER_MIN_SIZE`` weights or more) the step then passes over W₁ once instead of
        three times, and every step computes the same function as without deferring, up to
        rounding. ``params["W1"]`` is exact again when the block ends (and only then); inside
        it, pending updates are applied whenever anything but the step reads W₁ through the
        layer. Does nothing at other batch sizes or for a smaller first layer."""
        first = self.layers[0]
        use = batch_size == 1 and sum(p.size for p in first.params.values()) >= DEFER_MIN_SIZE
        if use:
            first.defer(DEFER_STEPS)
        try:
            yield DEFER_STEPS if use else 1
        finally:
            if use:
                first.flush()

    def _check_memory(self, modules, in_widths) -> None:
        pass  # checked from the widths before any module was made

    def _like(self, dtype) -> MLP:
        s = self.settings()
        return MLP(
            self.widths,
            self.activation,
            s["loss"],
            s["seed"],
            dtype,
            s["init"],
            s["task"],
            s["class_weight"],
            self.loss_params,
        )
