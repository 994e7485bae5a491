"""The memory a command that reads a table takes, estimated before the table is read: one
estimator per command (`mlpbp data` and train's preparation, `predict`, `evaluate`), each the
read (``ReadEstimate.read_bytes``, data/tables.py) plus what the command then holds beside it,
checked against the memory available (engine/memory.py) so that a table too large is one line
naming the file before any of it is read. benchmarks/memory.py puts each estimate beside the
peak RSS it adds, measured.

The read's peak is counted in full beside the later work: what the allocator kept of the
reader's blocks is not handed to NumPy (benchmarks/README.md, "Memory estimates")."""

from __future__ import annotations

from mlpbp.data.columns import BLOCK_CELLS
from mlpbp.data.preprocessing import CHUNK_ROWS
from mlpbp.data.tables import ReadEstimate
from mlpbp.engine.memory import require
from mlpbp.run.metrics import EVAL_CHUNK
from mlpbp.run.model import PREDICT_CHUNK

# Fitting the preprocessing holds a block of numeric columns (at most BLOCK_CELLS cells) in
# float64 and, while it chooses and fits each column's transform, about three more of its size
# (a sorted copy, quantiles, the transformed values).
FIT_BLOCKS = 4
# Encoding holds, beside the encoded rows, a chunk of CHUNK_ROWS rows of the numeric columns in
# float64 and two temporaries of its size (missing cells filled, transformed).
ENCODE_SCRATCH = 3
# A predictions CSV line: each output printed to 6 significant digits with its separator.
PREDICTION_CHARS = 14


def fit_bytes(est: ReadEstimate) -> int:
    """Fitting the preprocessing on the table's rows (what `mlpbp data` does after the read)."""
    return FIT_BLOCKS * 8 * min(est.rows * est.numeric_columns, BLOCK_CELLS)


def encode_bytes(est: ReadEstimate, rows: int, width: int) -> int:
    """Encoding ``rows`` of the table into ``width`` float64 network inputs: the encoded rows,
    and the scratch of one chunk of CHUNK_ROWS rows (not of every row: the numeric columns are
    converted a chunk at a time)."""
    return 8 * rows * width + ENCODE_SCRATCH * 8 * min(rows, CHUNK_ROWS) * est.numeric_columns


def data_bytes(est: ReadEstimate, width: int | None = None, itemsize: int = 4) -> int:
    """`mlpbp data` (and train's preparation, with ``width`` inputs encoded in ``itemsize``
    bytes: each split's rows, and their copy while they are cast)."""
    encoded = 0 if width is None else 2 * est.rows * width * itemsize
    return est.read_bytes + fit_bytes(est) + encoded


def predict_bytes(est: ReadEstimate, width: int, outputs: int) -> int:
    """`mlpbp predict`: the rows encoded PREDICT_CHUNK at a time (a chunk's encoding, and the
    chunk before it, still referenced while the next is made), every row's outputs in float64
    and their concatenation, and the predictions' text."""
    chunk = min(est.rows, PREDICT_CHUNK)
    before = 8 * chunk * width if est.rows > chunk else 0
    return (
        est.read_bytes
        + encode_bytes(est, chunk, width)
        + before
        + 2 * 8 * est.rows * outputs
        + PREDICTION_CHARS * est.rows * (outputs + 1)
    )


def evaluate_bytes(est: ReadEstimate, width: int, outputs: int, hidden: int) -> int:
    """`mlpbp evaluate`: every row encoded at once (the metrics read them all), the targets, and
    the metrics' forward passes of EVAL_CHUNK rows (two buffers a layer, ``hidden`` the sum of
    the widths after the input's) with each row's outputs."""
    passes = 2 * 8 * min(est.rows, EVAL_CHUNK) * hidden
    return est.read_bytes + encode_bytes(est, est.rows, width) + 8 * est.rows * (outputs + 1) + passes


def check_table(command: str, est: ReadEstimate | None, widths: list[int] | None = None, itemsize: int = 4) -> None:
    """Refuse ``command`` ("data", "train", "predict", "evaluate") on the table ``est``
    describes (None: not estimated) when its estimate does not fit in the memory available;
    ``widths``: the network's layer widths (for train: its input width alone, once known)."""
    if est is None:
        return
    if command in ("data", "train"):
        needed = data_bytes(est, widths[0] if widths else None, itemsize)
    elif command == "predict":
        needed = predict_bytes(est, widths[0], widths[-1])
    else:
        needed = evaluate_bytes(est, widths[0], widths[-1], sum(widths[1:]))
    doing = {"predict": "predicting for", "evaluate": "evaluating on"}.get(command, "reading and preparing")
    require(needed, f"{doing} {est.path} ({est.describe()})")
