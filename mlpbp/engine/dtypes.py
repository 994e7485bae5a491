"""The floating-point types a network may compute in: float64 for checks, float32 for speed."""

from __future__ import annotations

import numpy as np

from mlpbp.engine.registry import Registry

DTYPES: Registry[np.dtype] = Registry("dtype")
DTYPES.register("float32", np.dtype(np.float32))
DTYPES.register("float64", np.dtype(np.float64))


def get_dtype(name) -> np.dtype:
    """The registered dtype that ``name`` (a name or anything np.dtype accepts) denotes."""
    try:
        key = str(np.dtype(name))
    except (TypeError, ValueError):
        key = name
    return DTYPES.lookup(key)
