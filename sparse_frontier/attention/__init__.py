"""Attention methods: a base class with dense fallbacks, a registry, one module per method.

Registered: dense; prefill vertical_slash, flexprefill, block_sparse; decode quest; KV compression
snapkv, ada_snapkv; capture_estimation (records estimation scores for calibration); capture_qkv (records one layer's
queries, keys and values for the pattern figure); and any ``a+b`` combination of different phases (see ``registry.py``).
"""

from sparse_frontier.attention import block_sparse as _bs  # noqa: F401
from sparse_frontier.attention import capture as _capture  # noqa: F401  (calibration capture)
from sparse_frontier.attention import dense as _dense  # noqa: F401  (registers dense)
from sparse_frontier.attention import quest as _quest  # noqa: F401
from sparse_frontier.attention import snapkv as _snapkv  # noqa: F401
from sparse_frontier.attention import vertical_slash as _vs  # noqa: F401
from sparse_frontier.attention.base import AttentionMethod, AttentionResult, KVSelection
from sparse_frontier.attention.registry import (
    METHODS,
    chunk_shares_prompts,
    get_method_class,
    register_method,
    shares_prompts,
)

__all__ = [
    "METHODS",
    "AttentionMethod",
    "AttentionResult",
    "KVSelection",
    "chunk_shares_prompts",
    "get_method_class",
    "register_method",
    "shares_prompts",
]
