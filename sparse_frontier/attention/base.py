"""Base class of every attention method: parameters, registry, and hooks with dense fallbacks.

The vLLM handler calls a method through three hooks. Each hook returns ``None`` to mean "use the
backend's own dense attention" (the fallback), so a method overrides only the phase it changes:
prefill methods override ``prefill``, decode methods ``decode``, KV-compression methods
``compress_kv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sparse_frontier.params import Parameterised, Registry

METHODS = Registry("attention method")


@dataclass
class AttentionMethod(Parameterised):
    name: ClassVar[str]
    #: which phase(s) the method sparsifies; documentation and taxonomy tables read it
    phase: ClassVar[str] = "none"

    def prefill(self, query, key, value, *, layer_index: int) -> Any:
        """Causal attention of a request's prompt; return (output, kept_fraction) or None (dense)."""
        return None

    def decode(self, query, cache, *, layer_index: int) -> Any:
        """Attention of one new token over the request's cache; None means dense over the cache."""
        return None

    def compress_kv(self, key, value, query, *, layer_index: int) -> Any:
        """Which cached tokens to keep after prefill; None keeps them all."""
        return None

    def overrides(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(AttentionMethod, hook)


def register_method(cls: type[AttentionMethod]) -> type[AttentionMethod]:
    return METHODS.register(cls)


def get_method_class(name: str) -> type[AttentionMethod]:
    return METHODS.get(name)
