"""Validated parameter dataclasses shared by tasks and attention methods."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Union

NoneType = type(None)
#: The field types checked before construction, and how a message names each.
_TYPE_NAMES = {
    bool: "true or false (bool)",
    int: "a whole number (int)",
    float: "a number (float)",
    str: "a string (str)",
}
_PARSE = {int: int, float: float, str: str, bool: lambda v: {"true": True, "false": False}[v.lower()]}


def _accepts(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int in Python, never a number in a config
        return False
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:  # an int is a valid float (sparsity: 1 and sparsity: 1.0 are one setting)
        return isinstance(value, numbers.Real)
    return isinstance(value, kind)


def _kind_of(value: Any) -> str:
    """What the user wrote, in words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Integral):
        return "a whole number"
    if isinstance(value, numbers.Real):
        return "a float" if float(value).is_integer() else "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _example(kind: type, value: Any, default: Any) -> str | None:
    """A correct spelling of what the user meant, as YAML: their value converted, else the default."""
    for candidate in (value, default):
        try:
            if isinstance(candidate, str) and kind is not str:
                candidate = _PARSE[kind](candidate.strip())
            elif kind is int and isinstance(candidate, float) and candidate.is_integer():
                candidate = int(candidate)
        except (ValueError, KeyError):
            continue
        if _accepts(kind, candidate):
            return str(candidate).lower() if kind is bool else repr(candidate) if kind is str else str(candidate)
    return None


@functools.cache
def _field_types(cls: type) -> dict[str, tuple[type, ...]]:
    """Field name -> the scalar types its annotation allows (NoneType for Optional); fields annotated
    otherwise (lists, Any) are left to the class's own checks."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation this module cannot resolve: fall back to the plain names
        names = {"int": int, "float": float, "bool": bool, "str": str}
        hints = {
            f.name: names.get(f.type, f.type) if isinstance(f.type, str) else f.type for f in dataclasses.fields(cls)
        }
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        options = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
        if all(o in _TYPE_NAMES or o is NoneType for o in options):
            out[f.name] = options
    return out


class Parameterised:
    """Mixin for a dataclass whose fields are its user-facing parameters.

    ``resolve_params`` turns a (partial) config mapping into the complete, validated set of
    parameters, so unknown names and bad values fail at config time with a clear message.
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "component"

    @classmethod
    def resolve_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        return dataclasses.asdict(cls.from_params(params))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]):
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        unknown = sorted(set(params) - set(names))
        if unknown:
            guesses = [g for u in unknown for g in difflib.get_close_matches(u, names, n=1)]
            raise ValueError(
                f"{cls.kind} {cls.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"valid parameters: {', '.join(names) or '(none)'}"
                + (f"; did you mean {', '.join(guesses)}?" if guesses else "")
            )
        cls.check_types(params)
        return cls(**dict(params))

    @classmethod
    def check_types(cls, params: Mapping[str, Any]) -> None:
        """Each value against its field's annotated type, so ``sparsity: "0.5"`` is named here and
        not as a TypeError deep inside ``__post_init__``."""
        known = _field_types(cls)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for name, value in params.items():
            allowed = known.get(name)
            if allowed is None or (value is None and NoneType in allowed):
                continue
            kind = next(o for o in allowed if o is not NoneType)
            if _accepts(kind, value):
                continue
            example = _example(kind, value, defaults.get(name))
            raise ValueError(
                f"{cls.kind} {cls.name!r}: parameter {name}={value!r} is {_kind_of(value)}; it must be "
                f"{_TYPE_NAMES[kind]}{' or null' if NoneType in allowed else ''}"
                + (f", e.g. {name}: {example}" if example is not None else "")
            )

    def check(self, condition: bool, field: str, requirement: str) -> None:
        """Raise a ValueError naming the bad value and what would be valid."""
        if not condition:
            raise ValueError(
                f"{self.kind} {self.name!r}: {field}={getattr(self, field)!r} is invalid; it must be {requirement}"
            )


class Registry:
    """Name -> class, with errors that list what is available."""

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, cls: type) -> type:
        name = cls.name
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is already registered by {self._classes[name]}")
        cls.kind = self.kind
        self._classes[name] = cls
        return cls

    def get(self, name: str) -> type:
        if name not in self._classes:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._classes))}")
        return self._classes[name]

    def names(self) -> list[str]:
        return sorted(self._classes)

    def classes(self) -> list[type]:
        """The registered classes in registration order (:meth:`names` is sorted)."""
        return list(self._classes.values())

    def snapshot(self) -> dict[str, type]:
        return dict(self._classes)

    def restore(self, snapshot: dict[str, type]) -> None:
        """Back to a :meth:`snapshot`: classes registered since are forgotten (tests that register their own)."""
        self._classes.clear()  # in place: a test's monkeypatch may hold this dict
        self._classes.update(snapshot)
