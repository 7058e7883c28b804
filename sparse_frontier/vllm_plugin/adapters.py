"""One adapter per vLLM attention-backend family: where its impl class lives, how to reach it.

Everything that differs between vLLM versions (0.20 CUDA .. 0.32 CPU) and backends stays here:
the rest of the plugin sees a request-split view of the batch and never touches vLLM classes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from sparse_frontier.vllm_plugin.cache import CPUCache, FlashAttentionCache, PagedCache


@dataclass(frozen=True)
class BackendAdapter:
    family: str
    module: str
    impl_class: str
    cache: PagedCache

    def load_impl(self) -> type:
        return getattr(importlib.import_module(self.module), self.impl_class)

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


CPU = BackendAdapter("cpu", "vllm.v1.attention.backends.cpu_attn", "CPUAttentionBackendImpl", CPUCache())
CUDA_FLASH_ATTN = BackendAdapter(
    "cuda-flash-attn", "vllm.v1.attention.backends.flash_attn", "FlashAttentionImpl", FlashAttentionCache()
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
