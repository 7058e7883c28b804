"""Block-Sparse prefill with taller tiles: ``group`` neighbouring query blocks share their key tiles.

``sparse_prefill`` gives each (query head, query block) a program of its own, so a key block kept by
several neighbouring query blocks is loaded once per block: with 16-token blocks that gathered
traffic, not FLOPs, limits it (docs/methods.md). Here one program computes ``group`` consecutive
query blocks of one head (``group * block`` rows) over the *union* of their kept key blocks, and
masks, per row, the key blocks its own query block did not keep (a bit per member). Exact: each row
attends to the same keys as in ``sparse_prefill``. It pays where neighbouring selections overlap
(real attention, ``benchmarks/block_overlap.py``: at s = 0.9, 4 blocks load ~0.4 of the key tiles
for ~1.6x the products) and loses where they do not (random Q/K: 0.77 for 3.1x).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sparse_frontier.kernels.sparse_prefill import _check, _online_step, _start_rows, _store_rows


def group_blocks(blocks: torch.Tensor, counts: torch.Tensor, nb: int, group: int, entries: int = 1 << 26):
    """Per tile of ``group`` query blocks: ``union [Hq, NG, U]`` (its members' kept key blocks,
    sorted, padded with ``nb``), ``bits [Hq, NG, U]`` (bit m set: member m keeps that block) and
    ``union_count [Hq, NG]``. ``blocks [Hq, NB, K]`` lists each query block's kept key blocks, valid
    first, padded with ``nb``; ``counts [Hq, NB]``. Heads go in chunks of at most ``entries`` listed
    blocks (the sort's temporaries, ~9 int64 copies of them: ~5 GB at 128k, s = 0.5, G = 8, not ~40)."""
    hq, nqb, k = blocks.shape
    ng = -(-nqb // group)
    step = max(1, entries // max(1, ng * group * k))
    parts = [_group_heads(blocks[h : h + step], counts[h : h + step], nb, group) for h in range(0, hq, step)]
    width = max(max(u.shape[-1] for u, _, _ in parts), 1)
    union = torch.cat([torch.nn.functional.pad(u, (0, width - u.shape[-1]), value=nb) for u, _, _ in parts])
    bits = torch.cat([torch.nn.functional.pad(b, (0, width - b.shape[-1])) for _, b, _ in parts])
    return union.int().contiguous(), bits.int().contiguous(), torch.cat([n for _, _, n in parts]).int()


def _group_heads(blocks: torch.Tensor, counts: torch.Tensor, nb: int, group: int):
    """``group_blocks`` for a few heads: a sort of every tile's listed blocks, then a scatter per run."""
    hq, nqb, k = blocks.shape
    ng = -(-nqb // group)
    dev = blocks.device
    padded = torch.full((hq, ng * group, k), nb, dtype=torch.int64, device=dev)
    listed = torch.arange(k, device=dev) < counts[..., None]
    padded[:, :nqb] = torch.where(listed, blocks.long(), nb)
    member = torch.arange(group, device=dev).repeat_interleave(k)  # entry -> its query block in the tile
    # sort by key block, members of one key block side by side
    entries, _ = (padded.view(hq, ng, group * k) * group + member).sort(-1)
    del padded
    kb, who = entries // group, entries % group
    first = torch.ones_like(kb, dtype=torch.bool)
    first[..., 1:] = kb[..., 1:] != kb[..., :-1]
    slot = first.long().cumsum(-1) - 1  # entry -> its place in the union
    valid = kb < nb
    union_count = (first & valid).sum(-1)
    width = int(union_count.max().item()) if union_count.numel() else 0
    union = torch.full((hq, ng, group * k), nb, dtype=torch.int64, device=dev)
    union.scatter_(-1, slot, kb)  # every entry of a slot writes the same block
    bits = torch.zeros((hq, ng, group * k), dtype=torch.int64, device=dev)
    member_bit = torch.where(valid, torch.bitwise_left_shift(torch.ones_like(who), who), 0)
    bits.scatter_add_(-1, slot, member_bit)  # distinct members: sum = or
    return union[..., :width], bits[..., :width], union_count


@triton.jit
def _grouped_blocks_kernel(
    Q,
    K,
    V,
    O,
    UNION,
    BITS,
    UNION_CNT,
    T,
    qk_scale,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_ot,
    stride_oh,
    NG,
    MAXU,
    GROUP_KV: tl.constexpr,
    D: tl.constexpr,
    BLOCK: tl.constexpr,
    MEMBERS: tl.constexpr,
    KCHUNKS: tl.constexpr,
):
    # Tiles in reverse order: the longest rows (most kept blocks) start first.
    tile = tl.num_programs(0) - 1 - tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // GROUP_KV
    local = tl.arange(0, MEMBERS * BLOCK)
    rows = tile * MEMBERS * BLOCK + local
    own = local // BLOCK  # the row's member (query block) within the tile
    dims = tl.arange(0, D)
    row_ok = rows < T
    q, m_i, l_i, acc = _start_rows(Q, rows, row_ok, h, stride_qt, stride_qh, qk_scale, MEMBERS * BLOCK, D)
    kbase = K + kvh * stride_kh
    vbase = V + kvh * stride_kh
    offs = tl.arange(0, BLOCK)
    chunk = tl.arange(0, KCHUNKS)
    n = tl.load(UNION_CNT + h * NG + tile)
    for i in range(0, n, KCHUNKS):
        listed = i + chunk < n
        kb = tl.load(UNION + (h * NG + tile) * MAXU + i + chunk, mask=listed, other=-1)
        bits = tl.load(BITS + (h * NG + tile) * MAXU + i + chunk, mask=listed, other=0)
        # per-block values expanded to keys with a reshape (see sparse_prefill: no repeated-address loads)
        keys = tl.reshape(kb[:, None] * BLOCK + offs[None, :], [KCHUNKS * BLOCK])
        key_bits = tl.reshape(bits[:, None] + 0 * offs[None, :], [KCHUNKS * BLOCK])
        key_ok = (keys >= 0) & (keys < T)
        k = tl.load(kbase + keys[:, None] * stride_kt + dims[None, :], mask=key_ok[:, None], other=0.0)
        v = tl.load(vbase + keys[:, None] * stride_kt + dims[None, :], mask=key_ok[:, None], other=0.0)
        kept = ((key_bits[None, :] >> own[:, None]) & 1) != 0
        valid = kept & (keys[None, :] <= rows[:, None]) & key_ok[None, :]
        m_i, l_i, acc = _online_step(q, k, v, valid, m_i, l_i, acc, MASKED=True)
    _store_rows(O, acc, l_i, rows, row_ok, h, stride_ot, stride_oh, D)


def grouped_block_prefill(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float,
    block: int,
    blocks: torch.Tensor,
    block_count: torch.Tensor,
    *,
    group: int = 4,
    kchunks: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
) -> torch.Tensor:
    """Causal attention over per-query-block key-block lists (``blocks [Hq, NB, K]`` padded with NB,
    ``block_count [Hq, NB]``, as ``sparse_prefill`` takes them), ``group`` query blocks per program.
    Returns ``[T, Hq, D]``; every row must keep its own diagonal block."""
    gqa = _check(query, key, value)
    if group < 1 or group & (group - 1) or group * block > 128:
        raise ValueError(f"group {group} with {block}-token blocks: valid are powers of 2 with group * block <= 128")
    query, key, value = query.contiguous(), key.contiguous(), value.contiguous()
    t, hq, d = query.shape
    nb = triton.cdiv(t, block)
    union, bits, union_count = group_blocks(blocks, block_count, nb, group)
    ng = union.shape[1]
    out = torch.empty_like(query)
    _grouped_blocks_kernel[(ng, hq)](
        query,
        key,
        value,
        out,
        union,
        bits,
        union_count,
        t,
        scale * 1.4426950408889634,  # log2(e): the kernel uses exp2
        query.stride(0),
        query.stride(1),
        key.stride(0),
        key.stride(1),
        out.stride(0),
        out.stride(1),
        ng,
        union.shape[-1],
        GROUP_KV=gqa,
        D=d,
        BLOCK=block,
        MEMBERS=group,
        KCHUNKS=kchunks or max(1, 64 // block),
        num_warps=num_warps or 4,
        num_stages=num_stages or 3,
    )
    return out
