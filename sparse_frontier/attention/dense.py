"""Dense causal attention: every hook falls back to the backend, sparsity 0."""

from __future__ import annotations

from dataclasses import dataclass

from sparse_frontier.attention.base import AttentionMethod
from sparse_frontier.attention.registry import register_method


@register_method
@dataclass
class Dense(AttentionMethod):
    name = "dense"
    display_name = "Dense"
    phase = "none"
