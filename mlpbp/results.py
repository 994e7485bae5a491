"""Typed results the tools return, and the one place they become JSON (``--json``).

A result is a dataclass; ``to_json()`` gives its fields in order, nested dataclasses as
objects and NumPy values as lists and numbers. A field declared with ``asked()`` is left out
while it is None (the caller did not ask for it), every other field is always there (None
becomes null). ``result["key"]`` reads the JSON form, as the dicts tools returned before did."""

from __future__ import annotations

import dataclasses
from typing import Any

_OMIT = "mlpbp.omit_when_none"


def asked(default=None) -> Any:
    """A field that is in the JSON only when it holds a value (something the caller asked for)."""
    return dataclasses.field(default=default, metadata={_OMIT: True})


def to_json(value) -> Any:
    """``value`` as JSON-ready Python: dataclasses as dicts (by the rule above), NumPy arrays
    and scalars as lists and numbers, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_json(v)
            for f in dataclasses.fields(value)
            if not ((v := getattr(value, f.name)) is None and f.metadata.get(_OMIT))
        }
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if hasattr(value, "tolist"):  # a NumPy array or scalar, without importing NumPy here
        return value.tolist()
    return value


class Result:
    """Mixed into a tool's result dataclass: its JSON form, and read access by JSON key."""

    def to_json(self) -> dict:
        return to_json(self)

    def __getitem__(self, key: str):
        return self.to_json()[key]

    def get(self, key: str, default=None):
        return self.to_json().get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.to_json()
