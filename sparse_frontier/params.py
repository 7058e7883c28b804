"""Validated parameter dataclasses shared by tasks and attention methods."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping


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
            raise ValueError(
                f"{cls.kind} {cls.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"valid parameters: {', '.join(names) or '(none)'}"
            )
        return cls(**dict(params))

    def check(self, condition: bool, field: str, requirement: str) -> None:
        """Raise a ValueError naming the bad value and what would be valid."""
        if not condition:
            raise ValueError(
                f"{self.kind} {self.name!r}: {field}={getattr(self, field)!r} is invalid; "
                f"it must be {requirement}"
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
            raise ValueError(
                f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._classes))}"
            )
        return self._classes[name]

    def names(self) -> list[str]:
        return sorted(self._classes)
