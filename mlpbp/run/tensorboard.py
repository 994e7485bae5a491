"""TensorBoard event files for a run (``output.tensorboard: true``): every epoch's record as
scalars (losses, metrics, learning rate, sharpness) and, every ``output.histogram_every``
epochs, histograms of each layer's weights and of ∂J/∂θ, the gradient backpropagation gives on
a fixed seeded sample of training rows at the epoch's end weights.

The files go into the run's output folder, so ``tensorboard --logdir runs`` shows every run (and
``mlpbp tune``'s trials, one folder each) as a run of its own. tensorboardX writes them (extra
``mlpbp[tensorboard]``: NumPy and protobuf, no TensorFlow); it is imported only when asked for.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mlpbp.engine.network import MLP
from mlpbp.errors import ResourceError


def tag(key: str) -> str:
    """The TensorBoard tag of an epoch-record column: train_loss -> loss/train, so the training
    and validation curves of one quantity sit together; others keep their name."""
    for split in ("train", "val"):
        if key.startswith(split + "_"):
            return f"{key.removeprefix(split + '_')}/{split}"
    return key


class TensorBoardWriter:
    """Writes one run's event file. ``first_epoch`` > 1 (a resumed run) tells TensorBoard to
    drop what an earlier writer logged from that epoch on, so a resume shows each epoch once."""

    def __init__(
        self,
        out_dir: str | Path,
        histogram_every: int | None,
        sample: tuple[np.ndarray, np.ndarray] | None,
        first_epoch: int = 1,
    ) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ResourceError("output.tensorboard needs tensorboardX: pip install 'mlpbp[tensorboard]'") from None
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(logdir=str(out_dir), purge_step=first_epoch if first_epoch > 1 else None)
        self.histogram_every, self.sample = histogram_every, sample

    def epoch(self, record: dict, net: MLP, last: bool = False) -> None:
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(tag(key), float(value), step)
        every = self.histogram_every
        if every is not None and (step % every == 0 or last):
            for name, p in net.params.items():
                self.writer.add_histogram(f"weights/{name}", p.astype(np.float64, copy=False), step)
            if self.sample is not None and len(self.sample[0]):
                _, grads = net.loss_and_grad(*self.sample)
                for name, g in grads.items():
                    self.writer.add_histogram(f"gradients/{name}", g.astype(np.float64, copy=False), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
