"""One attention call of one global layer, as the router and the decode paths see it, and the
per-request rows they pass around (named records, one per request of the step)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from sparse_frontier.attention.base import AttentionResult
from sparse_frontier.kernels import use_triton
from sparse_frontier.vllm_plugin.adapters import BackendAdapter, RequestSpan
from sparse_frontier.vllm_plugin.state import RequestState
from sparse_frontier.vllm_plugin.step import Step


class PrefillRow(NamedTuple):
    """A request whose prompt this step computes; ``result``: the method's rows, or None (the backend's)."""

    row: int  # the request's index in the step's batch (and its block-table row)
    state: RequestState
    span: RequestSpan
    result: AttentionResult | None


class DecodeRow(NamedTuple):
    """A request's decode step (its one query row is ``span.start``)."""

    row: int
    state: RequestState
    span: RequestSpan


@dataclass(slots=True)
class LayerCall:
    """What vLLM handed the backend's ``forward`` for one global layer, with the handler's views of it."""

    index: int  # decoder-layer index (from the layer's name)
    impl: Any  # the backend impl: num_heads, num_kv_heads, head_size, scale
    layer: Any  # vLLM's attention layer (the CPU cache layout needs its ISA)
    query: torch.Tensor  # as vLLM passed them: what the backend's own attention gets
    key: torch.Tensor
    value: torch.Tensor
    output: torch.Tensor
    kv_cache: torch.Tensor
    meta: Any  # this layer's metadata: its KV-cache group's block table
    step: Step
    adapter: BackendAdapter
    backend: Callable[..., Any]  # the backend impl's own ``forward``
    extra: tuple[tuple, dict]  # further positional and keyword arguments of the call, passed on
    q: torch.Tensor  # [tokens, Hq, D]
    k: torch.Tensor  # [tokens, Hkv, D]
    v: torch.Tensor
    out: torch.Tensor  # [tokens, Hq, D], a view of ``output``
    views: tuple[torch.Tensor, torch.Tensor] | None  # K, V blocks for the batched CUDA decode, or None

    @classmethod
    def of(cls, *, backend, impl, layer, query, key, value, kv_cache, meta, output, extra, index, step, adapter):
        heads, kv_heads, dim = impl.num_heads, impl.num_kv_heads, impl.head_size
        q = query.view(query.shape[0], heads, dim)
        views = adapter.cache.block_views(kv_cache)
        return cls(
            index=index,
            impl=impl,
            layer=layer,
            query=query,
            key=key,
            value=value,
            output=output,
            kv_cache=kv_cache,
            meta=meta,
            step=step,
            adapter=adapter,
            backend=backend,
            extra=extra,
            q=q,
            k=key.view(key.shape[0], kv_heads, dim),
            v=value.view(value.shape[0], kv_heads, dim),
            out=output.view(output.shape[0], heads, dim),
            # CUDA: the batched decode reads straight from the blocks
            views=views if views is not None and use_triton(q) else None,
        )

    @property
    def page(self) -> int:
        """Tokens per cache block (the batched decode's page), where there are block views."""
        return self.views[0].shape[1]

    def block_row(self, row: int) -> torch.Tensor:
        """Request ``row``'s blocks in this layer's cache group."""
        return self.meta.block_table[row]

    def run_backend(self, meta=None, rows: slice | None = None) -> None:
        """The backend's own attention: on the whole batch, or on query ``rows`` with their ``meta``."""
        args, kwargs = self.extra
        meta = self.meta if meta is None else meta
        if rows is None:
            query, key, value, output = self.query, self.key, self.value, self.output
        else:
            query, key, value, output = self.query[rows], self.key[rows], self.value[rows], self.output[rows]
        self.backend(self.impl, self.layer, query, key, value, self.kv_cache, meta, output, *args, **kwargs)
