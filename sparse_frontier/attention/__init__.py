"""Attention methods: a base class with dense fallbacks, a registry, one module per method."""

from sparse_frontier.attention.base import METHODS, AttentionMethod, get_method_class, register_method
from sparse_frontier.attention import dense as _dense  # noqa: F401  (registers dense)

__all__ = ["METHODS", "AttentionMethod", "get_method_class", "register_method"]
