"""One registry per kind of building block (activations, losses, optimizers, schedules, inits,
dtypes): the single list of allowed names.

Config validation, the JSON Schema, ``--help`` texts and error messages all read these at the
time they run, so something registered later (by a plugin, a test, a notebook) is accepted
everywhere::

    from mlpbp.engine.activations import ACTIVATIONS, ActivationFn
    ACTIVATIONS.register("swish", ActivationFn("swish", f, df, d2f))
"""

from __future__ import annotations

import difflib
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that is not in a registry; the message lists the allowed ones."""


class Registry(dict[str, T], Generic[T]):
    """A name → object mapping for one kind (``kind`` names it in messages), in registration
    order. Being a dict, it iterates, indexes and ``in``-tests like one."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str, obj: T | None = None, *, replace: bool = False):
        """Add ``obj`` under ``name``; without ``obj``, a decorator that registers what it
        decorates. Registering a taken name is an error unless ``replace``."""
        if obj is None:
            return lambda o: self.register(name, o, replace=replace)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string; got {name!r}")
        if name in self and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered (pass replace=True to override it)")
        self[name] = obj
        return obj

    def names(self) -> tuple[str, ...]:
        return tuple(self)

    def allowed(self) -> str:
        """The names as a message lists them: 'a', 'b', 'c'."""
        return ", ".join(repr(n) for n in self)

    def unknown_message(self, name: object) -> str:
        """Why ``name`` is refused: a close match if there is one, and every allowed name."""
        close = difflib.get_close_matches(name, list(self), n=1) if isinstance(name, str) else []
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown {self.kind} {name!r}; {hint}allowed: {self.allowed()}"

    def lookup(self, name: str) -> T:
        """The object registered as ``name``; ``UnknownName`` (a ValueError) if there is none."""
        try:
            return self[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name, e.g. a list from YAML
            raise UnknownName(self.unknown_message(name)) from None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self)})"
