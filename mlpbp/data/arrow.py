"""Arrow columns to NumPy arrays and back, through raw buffers.

pyarrow imports pandas (over a second, and memory) the first time it converts a Python or NumPy
object or calls Array.to_numpy; these helpers go through the buffers instead."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NUMPY_TYPES = {
    getattr(pa, name)(): np.dtype(name)
    for name in ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}


def to_numpy(arr) -> np.ndarray:
    """A primitive column as a NumPy array, missing cells NaN (floats) or 0; read-only when it
    is a view of the table's memory."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    if pa.types.is_boolean(arr.type):
        values = _bits(arr.buffers()[1], arr.offset, len(arr))
    else:
        dtype = _NUMPY_TYPES.get(arr.type)
        if dtype is None:
            return arr.to_numpy(zero_copy_only=True)
        values = np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset : arr.offset + len(arr)]
    if arr.null_count:
        holes = _bits(arr.buffers()[0], arr.offset, len(arr)) == 0
        values = values.astype(np.float64 if values.dtype.kind == "f" else values.dtype)
        values[holes] = np.nan if values.dtype.kind == "f" else 0
    return values


def positions(index) -> np.ndarray:
    """What ``pc.index_in`` found, as int64 with -1 where the value is not in the set."""
    idx = to_numpy(index).astype(np.int64)
    idx[to_numpy(pc.is_null(index))] = -1
    return idx


def _bits(buf, offset: int, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little")[offset : offset + n].astype(bool)


def arrow(values) -> pa.Array:
    """A NumPy array (bool or numeric) or a list of str as an Arrow array, without nulls."""
    if isinstance(values, list):
        data = [v.encode() for v in values]
        offsets = np.cumsum([0, *map(len, data)], dtype=np.int32)
        return pa.Array.from_buffers(
            pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
        )
    values = np.ascontiguousarray(values)
    if values.dtype == bool:
        return pa.Array.from_buffers(
            pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(values, bitorder="little"))]
        )
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def missing_mask(arr) -> np.ndarray:
    """Where a column has no value: null, or a float NaN (Parquet and NumPy write those)."""
    mask = to_numpy(arr.is_null()).astype(bool)
    if pa.types.is_floating(arr.type):
        mask |= np.isnan(to_numpy(arr))
    return mask
