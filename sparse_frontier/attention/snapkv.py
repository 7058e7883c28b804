"""SnapKV and Ada-SnapKV: evict keys after prefill, keeping what the last queries attend to.

Importance of a key = softmax attention from the last ``approximation_window`` queries (causal),
summed over the window and averaged over the GQA group (SnapKV) or maxed over both (Ada-SnapKV),
smoothed with 1-D average pooling of width ``kernel_size`` over the candidates only, the keys before
the last ``local_window`` (zero padding counted at both ends, as upstream pools ``[0, T - window)``).
The first ``prefix_tokens`` and last ``local_window`` tokens are always kept.

- SnapKV keeps the top ``token_capacity`` tokens per kv head.
- Ada-SnapKV shares ``Hkv x token_capacity`` across the kv heads of a layer: each head first gets a
  floor of ``max(ceil(min_head_capacity_ratio x capacity), prefix + local)`` of its best tokens,
  then the rest go to the highest-scoring remaining tokens of any head. Lengths differ per head and
  sum to the layer budget.

Knob: ``sparsity`` -> ``token_capacity = floor((1 - sparsity) T)`` (the paper's 5% of 16384 = 819);
an explicit ``token_capacity`` (> 0) wins; sparsity 0 keeps everything. Scoring: Triton
(:mod:`sparse_frontier.kernels.snapkv`) on CUDA, torch on CPU. Decode afterwards is dense over the
compressed cache; its sparsity is ``1 - kept / (T x Hkv)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sparse_frontier.attention.base import AttentionMethod, KVSelection
from sparse_frontier.attention.registry import register_method
from sparse_frontier.kernels import use_triton
from sparse_frontier.kernels.torch_paths import window_scores_torch


def importance(query, key, scale: float, window: int, kernel_size: int, reduce: str, local: int = 0) -> torch.Tensor:
    """Pooled importance ``[Hkv, T]`` of every key; the last ``local`` keys keep their raw scores."""
    w = min(window, query.shape[0])
    if use_triton(query):
        from sparse_frontier.kernels.snapkv import window_scores

        s = window_scores(query[-w:], key, scale, reduce)
    else:
        s = window_scores_torch(query[-w:], key, scale, reduce)
    # Pool the candidates [0, T - local) alone: the force-kept local window draws most of the window's
    # attention, and pooled in it would lift the last kernel_size // 2 candidates (upstream pools the prefix).
    n = s.shape[1] - local
    if n > 0:
        s[:, :n] = F.avg_pool1d(s[:, None, :n], kernel_size, stride=1, padding=kernel_size // 2)[:, 0]
    return s


def force_kept(scores: torch.Tensor, prefix: int, local: int) -> torch.Tensor:
    s = scores.clone()
    s[:, :prefix] = float("inf")
    if local:
        s[:, -local:] = float("inf")
    return s


def capacity_for(sparsity: float, token_capacity: int, t: int, floor: int) -> int:
    cap = token_capacity or math.floor((1.0 - sparsity) * t + 1e-9)
    return min(t, max(cap, floor))


@dataclass
class _SnapBase(AttentionMethod):
    phase = "kv"
    sparsity: float = 0.0
    token_capacity: int = 0
    approximation_window: int = 256
    kernel_size: int = 21
    prefix_tokens: int = 4
    local_window: int = 128

    def _check_common(self):
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "a target sparsity in [0, 1)")
        self.check(self.token_capacity >= 0, "token_capacity", "an integer >= 0 (0: from sparsity)")
        self.check(self.token_capacity == 0 or self.sparsity == 0.0, "sparsity", "0 when token_capacity is given")
        self.check(self.approximation_window >= 1, "approximation_window", "an integer >= 1")
        self.check(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size", "an odd integer >= 1")
        self.check(self.prefix_tokens >= 0, "prefix_tokens", "an integer >= 0")
        self.check(self.local_window >= 0, "local_window", "an integer >= 0")

    def capacity(self, t: int) -> int:
        return capacity_for(self.sparsity, self.token_capacity, t, self.prefix_tokens + self.local_window)


@register_method
@dataclass
class SnapKV(_SnapBase):
    name = "snapkv"
    display_name = "SnapKV"
    unit = "tokens"
    budget_allocation = "uniform"
    kv_cache = "eviction after prefill"

    def __post_init__(self):
        self._check_common()

    def compress_kv(self, query, key, value, *, layer_index: int, scale: float) -> KVSelection | None:
        t = key.shape[0]
        cap = self.capacity(t)
        s = importance(query, key, scale, self.approximation_window, self.kernel_size, "sum", self.local_window)
        idx = force_kept(s, self.prefix_tokens, self.local_window).topk(cap, -1).indices.sort(-1).values
        return KVSelection(list(idx.unbind(0)))


@register_method
@dataclass
class AdaSnapKV(_SnapBase):
    name = "ada_snapkv"
    display_name = "Ada-SnapKV"
    unit = "tokens"
    budget_allocation = "adaptive across heads"
    kv_cache = "eviction after prefill"
    min_head_capacity_ratio: float = 0.2

    def __post_init__(self):
        self._check_common()
        self.check(0.0 < self.min_head_capacity_ratio <= 1.0, "min_head_capacity_ratio", "in (0, 1]")

    def compress_kv(self, query, key, value, *, layer_index: int, scale: float) -> KVSelection | None:
        t, hkv = key.shape[:2]
        cap = self.capacity(t)
        floor = min(cap, max(math.ceil(self.min_head_capacity_ratio * cap), self.prefix_tokens + self.local_window))
        s = importance(query, key, scale, self.approximation_window, self.kernel_size, "max", self.local_window)
        s = force_kept(s, self.prefix_tokens, self.local_window)
        keep = torch.zeros(hkv, t, dtype=torch.bool, device=key.device)
        keep.scatter_(1, s.topk(floor, -1).indices, True)
        rest = hkv * (cap - floor)
        if rest:
            flat = s.masked_fill(keep, float("-inf")).flatten()
            keep.view(-1)[flat.topk(rest).indices] = True
        return KVSelection([row.nonzero()[:, 0] for row in keep])
