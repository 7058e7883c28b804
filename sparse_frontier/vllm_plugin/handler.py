"""The attention handler: sees every attention call of the model and routes it through the method.

Installed into the backend impl class of this process (see :mod:`adapters`); vLLM looks ``forward``
up at call time, so replacing it on the class reaches every layer of every model.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from sparse_frontier.vllm_plugin.adapters import BackendAdapter, current_adapter, layer_index

log = logging.getLogger(__name__)

_ORIGINAL = "_sparse_frontier_original_forward"


class LayerStats:
    """Attention work per layer since the last :meth:`AttentionHandler.take_stats`."""

    __slots__ = ("calls", "kept_pairs", "total_pairs", "prefill_tokens", "decode_tokens")

    def __init__(self):
        self.calls = 0
        self.kept_pairs = 0
        self.total_pairs = 0
        self.prefill_tokens = 0
        self.decode_tokens = 0


def causal_pairs(query_len: int, seq_len: int) -> int:
    """Query-key pairs of causal attention for ``query_len`` new tokens at the end of ``seq_len``."""
    past = seq_len - query_len
    return query_len * past + query_len * (query_len + 1) // 2


class AttentionHandler:
    def __init__(self):
        self.method = None
        self.adapter: BackendAdapter | None = None
        self.stats: dict[int, LayerStats] = defaultdict(LayerStats)

    def configure(self, spec: dict[str, Any], adapter: BackendAdapter) -> None:
        from sparse_frontier.attention import get_method_class

        self.method = get_method_class(spec["method"]).from_params(spec.get("params", {}))
        self.adapter = adapter
        hooks = [h for h in ("prefill", "decode", "compress_kv") if self.method.overrides(h)]
        if hooks:
            raise NotImplementedError(
                f"method {self.method.name!r} overrides {hooks}; this release routes attention "
                "through the handler but runs only methods that keep the backend's dense attention"
            )
        log.info("sparse_frontier: attention handler active (%s, %s)", self.method, adapter.family)

    def attention(self, original, impl, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs):
        if attn_metadata is None or self.method is None:  # profiling / warm-up run
            return original(impl, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        stats = self.stats[layer_index(layer)]
        stats.calls += 1
        for _, query_len, seq_len in self.adapter.requests(attn_metadata):
            pairs = causal_pairs(query_len, seq_len)
            stats.total_pairs += pairs
            stats.kept_pairs += pairs  # dense: every causal pair is computed
            if query_len == 1 and seq_len > 1:
                stats.decode_tokens += 1
            else:
                stats.prefill_tokens += query_len
        return original(impl, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)

    def take_stats(self) -> dict[str, Any]:
        """Summary since the last call (then reset): calls, tokens, sparsity averaged over layers."""
        layers = dict(self.stats)
        self.stats = defaultdict(LayerStats)
        if not layers:
            return {"layers": 0, "calls": 0, "prefill_tokens": 0, "decode_tokens": 0, "sparsity": None}
        per_layer = [1.0 - s.kept_pairs / s.total_pairs for s in layers.values() if s.total_pairs]
        first = next(iter(layers.values()))
        return {
            "layers": len(layers),
            "calls": sum(s.calls for s in layers.values()),
            "prefill_tokens": first.prefill_tokens,
            "decode_tokens": first.decode_tokens,
            "sparsity": sum(per_layer) / len(per_layer) if per_layer else None,
        }


HANDLER = AttentionHandler()


def install(spec: dict[str, Any]) -> None:
    """Route the backend's attention through :data:`HANDLER` (idempotent per process)."""
    adapter = current_adapter()
    impl = adapter.load_impl()
    if not hasattr(impl, _ORIGINAL):
        original = impl.forward

        def forward(self, layer, query, key, value, kv_cache, attn_metadata, output=None, *args, **kwargs):
            return HANDLER.attention(
                original, self, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs
            )

        setattr(impl, _ORIGINAL, original)
        impl.forward = forward
    HANDLER.configure(spec, adapter)


def take_stats_rpc(worker=None) -> dict[str, Any]:
    """``LLM.collective_rpc`` target: the handler's stats in this worker."""
    return HANDLER.take_stats()
