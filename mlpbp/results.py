"""Typed results the tools return, and the one place they become JSON (``--json``).

A result is a dataclass; ``to_json()`` gives its fields in order, nested dataclasses as
objects and NumPy values as lists and numbers. A field declared with ``asked()`` is left out
while it is None (the caller did not ask for it); one declared with ``present()`` is left out
while it is ``ABSENT`` (it may hold None, written as null, when there); every other field is
always there (None becomes null). A field declared with ``key("in")`` is written under that
key (for a JSON key that is no Python name). ``result["key"]`` reads the JSON form, as the
dicts tools returned before did.

The JSON keys are contracts (tests/contract/test_json_keys.py): a result keeps the keys, and
their order, of the dict its tool returned before."""

from __future__ import annotations

import dataclasses
from typing import Any

_OMIT = "mlpbp.omit_when_none"
_ABSENT = "mlpbp.omit_when_absent"
_KEY = "mlpbp.json_key"


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Any = _Absent()  # a present() field with no value: not in the JSON


def asked(default=None) -> Any:
    """A field that is in the JSON only when it holds a value (something the caller asked for)."""
    return dataclasses.field(default=default, metadata={_OMIT: True})


def present() -> Any:
    """A field that is in the JSON only when set, even to None (null)."""
    return dataclasses.field(default=ABSENT, metadata={_ABSENT: True})


def key(name: str, **kwargs) -> Any:
    """A field written under the JSON key ``name``."""
    return dataclasses.field(metadata={_KEY: name}, **kwargs)


def _omitted(f: dataclasses.Field, v) -> bool:
    return (v is None and f.metadata.get(_OMIT)) or v is ABSENT


def to_json(value) -> Any:
    """``value`` as JSON-ready Python: dataclasses as dicts (by the rule above), NumPy arrays
    and scalars as lists and numbers, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.metadata.get(_KEY, f.name): to_json(v)
            for f in dataclasses.fields(value)
            if not _omitted(f, v := getattr(value, f.name))
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
