"""Batched decode straight from vLLM's paged cache (CUDA FlashAttention layout), one call per layer.

The handler's per-request decode gathers each request's tokens into contiguous tensors: exact, and
the only way on the CPU backend, but its Python and launch overhead grows with the batch (measured
on an H100: Quest at 16k, 8 concurrent requests, ~6.5x slower end to end than dense). Here every
decode request of a step that a method handles is served by one set of kernel launches:

- **Quest** (pages = cache blocks): page summaries live in a per-layer pool indexed like the cache
  (``[num_blocks, Hkv, D]`` min and max, 1/16 of the K/V bytes), written at prefill and updated with
  each new key; scores, top-k selection (per-request budgets) and the sparse decode read the block
  table directly.
- **Compacted caches** (SnapKV / Ada-SnapKV): a head's valid tokens are its kept prompt tokens
  ``[0, kept_h)`` plus everything generated since, ``[prompt_len, seq_len)``; the decode kernel reads
  those pages and skips the evicted gap.

Each function returns the attention output rows and the per-request density (tokens read / tokens
in the cache, averaged over query heads), both on the device.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sparse_frontier.kernels import use_triton
from sparse_frontier.kernels.quest import page_scores, page_summaries, select_pages, sparse_decode


@triton.jit
def _fold_keys_kernel(PMIN, PMAX, KEYS, BLOCKS, FRESH, stride_pb, stride_ph, stride_kr, stride_kh, D: tl.constexpr):
    """One new key per (request, kv head) folded into its block's min/max (replacing it if fresh)."""
    r = tl.program_id(0)
    h = tl.program_id(1)
    dims = tl.arange(0, D)
    block = tl.load(BLOCKS + r).to(tl.int64)
    key = tl.load(KEYS + r * stride_kr + h * stride_kh + dims)
    at = block * stride_pb + h * stride_ph + dims
    fresh = tl.load(FRESH + r) != 0
    lo = tl.load(PMIN + at)
    hi = tl.load(PMAX + at)
    key = key.to(lo.dtype)
    tl.store(PMIN + at, tl.where(fresh, key, tl.minimum(lo, key)))
    tl.store(PMAX + at, tl.where(fresh, key, tl.maximum(hi, key)))


class SummaryPool:
    """Per-layer page min/max pools ``[num_blocks, Hkv, D]``, allocated at first use."""

    def __init__(self):
        self.pools: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, layer: int, key_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool = self.pools.get(layer)
        if pool is None:
            num_blocks, _, hkv, d = key_cache.shape
            pool = self.pools[layer] = tuple(key_cache.new_zeros(num_blocks, hkv, d) for _ in range(2))
        return pool

    @staticmethod
    def write_prompt(pool, keys: torch.Tensor, block_row: torch.Tensor, page: int) -> None:
        """Summaries of a prompt's keys ``[T, Hkv, D]`` into the pool rows of its blocks."""
        pmin, pmax = page_summaries(keys.transpose(0, 1)[None], page)  # [1, Hkv, P, D]
        blocks = block_row[: pmin.shape[2]].long()
        pool[0][blocks] = pmin[0].transpose(0, 1).to(pool[0].dtype)
        pool[1][blocks] = pmax[0].transpose(0, 1).to(pool[1].dtype)

    @staticmethod
    def add_keys(pool, keys: torch.Tensor, blocks: torch.Tensor, fresh: torch.Tensor) -> None:
        """Fold one new key per request ``[R, Hkv, D]`` into its block's summary (``fresh``: the key opens it).
        One kernel launch where the kernels run (the per-layer cost of a decode step), else torch."""
        if use_triton(keys):
            r, hkv, d = keys.shape
            _fold_keys_kernel[(r, hkv)](
                pool[0],
                pool[1],
                keys,
                blocks,
                fresh,
                pool[0].stride(0),
                pool[0].stride(1),
                keys.stride(0),
                keys.stride(1),
                D=d,
                num_warps=1,
            )
            return
        f = fresh[:, None, None]
        keys = keys.to(pool[0].dtype)
        pool[0][blocks] = torch.where(f, keys, torch.minimum(pool[0][blocks], keys))
        pool[1][blocks] = torch.where(f, keys, torch.maximum(pool[1][blocks], keys))


def quest_density(seq_len: int, n_select: int, page: int) -> float:
    """Tokens a Quest decode step reads / tokens in the cache: ``k = min(n_select + 1, pages)`` distinct
    pages, the current (last, partial) one among them and every other one full (:class:`QuestStep`)."""
    pages = -(-seq_len // page)
    k = min(n_select + 1, pages)
    return ((k - 1) * page + seq_len - (pages - 1) * page) / seq_len


class QuestStep:
    """One decode step's Quest requests, for every global layer of the step: the index tensors the
    kernels take (int32, on the device) and each request's density, made once per step rather than
    once per layer (a host-to-device copy per layer waits for the GPU and stalls the launch queue).

    The density is what the kernels read: the selection holds exactly ``k = min(n_select + 1, pages)``
    distinct pages, the current (last, partial) one always among them and every other one full, so
    ``(k - 1) * page + tokens in the last page`` tokens of ``seq_len`` (tests compare it with the
    positions the per-request path reads).
    """

    def __init__(
        self, block_tables, seq_lens: list[int], n_select: list[int], page: int, share: bool, group: int, hkv: int
    ):
        dev = block_tables.device
        r, width = len(seq_lens), block_tables.shape[1]
        self.page, self.share = page, share
        self.tables = block_tables.to(torch.int32).contiguous()
        seq = torch.tensor(seq_lens, dtype=torch.int32, device=dev)
        npages = (seq + page - 1) // page
        self.npages = npages[:, None].expand(r, hkv).contiguous()
        self.current = (self.npages - 1) if share else (self.npages - 1).repeat_interleave(group, 1).contiguous()
        self.lengths = seq[:, None].expand(r, hkv).contiguous()
        self.widest = max(n_select)
        hsel = hkv if share else hkv * group
        self.row_k = torch.tensor(
            [min(n + 1, width) for n in n_select for _ in range(hsel)], dtype=torch.int32, device=dev
        )
        self.density = [quest_density(s, n, page) for s, n in zip(seq_lens, n_select)]

    def decode(self, query, key_cache, value_cache, pool, scale: float, out=None) -> torch.Tensor:
        """Quest attention rows ``[R, Hq, D]`` of this step's requests for one layer (into ``out``, if given)."""
        return quest_attention(
            query,
            key_cache,
            value_cache,
            pool,
            self.tables,
            self.npages,
            self.current,
            self.lengths,
            self.row_k,
            self.widest,
            self.page,
            self.share,
            scale,
            out,
        )


def quest_attention(
    query, key_cache, value_cache, pool, tables, npages, current, lengths, row_k, widest, page, share, scale, out=None
) -> torch.Tensor:
    """Quest attention rows ``[R, Hq, D]`` from a step's index tensors (:class:`QuestStep`'s, int32 on the
    device): page scores through the block tables, each row's top ``row_k`` pages (``widest + 1`` at most,
    the output width), the sparse paged decode (into ``out``, if given)."""
    scores = page_scores(query, pool[0], pool[1], npages, share, True, block_table=tables)
    pages = select_pages(scores, current, widest, use_kernel=True, row_k=row_k)
    return sparse_decode(query, key_cache, value_cache, pages, lengths, page, scale, share, block_table=tables, out=out)


def quest_decode(
    query, key_cache, value_cache, pool, block_tables, seq_lens, n_select, page: int, scale: float, share: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quest for ``R`` decode requests of one layer: ``query [R, Hq, D]``, ``block_tables [R, M]``,
    ``seq_lens [R]``, ``n_select [R]`` pages per request besides the current one. -> (out, density [R])."""
    hq, hkv = query.shape[1], key_cache.shape[2]
    step = QuestStep(block_tables, seq_lens.tolist(), [int(n) for n in n_select], page, share, hq // hkv, hkv)
    out = step.decode(query, key_cache, value_cache, pool, scale)
    return out, torch.tensor(step.density, device=query.device)


@triton.jit
def _compacted_pages_kernel(KEPT, PROMPT, SEQ, OUT, HKV, WIDTH, PAGE: tl.constexpr, BLOCK_W: tl.constexpr):
    r = tl.program_id(0)
    h = tl.program_id(1)
    first_recent = tl.load(PROMPT + r) // PAGE
    n1 = tl.minimum((tl.load(KEPT + r * HKV + h) + PAGE - 1) // PAGE, first_recent)
    n2 = (tl.load(SEQ + r) + PAGE - 1) // PAGE - first_recent
    for w0 in range(0, WIDTH, BLOCK_W):
        idx = w0 + tl.arange(0, BLOCK_W)
        recent = idx - n1
        pages = tl.where(idx < n1, idx, tl.where(recent < n2, first_recent + recent, -1))
        tl.store(OUT + (r * HKV + h) * WIDTH + idx, pages, mask=idx < WIDTH)


def compacted_pages(kept: torch.Tensor, prompt_lens: torch.Tensor, seq_lens: torch.Tensor, page: int, width: int):
    """Pages ``[R, Hkv, width]`` (-1 padded) holding a compacted head's tokens: ``[0, kept)`` and
    ``[prompt_len, seq_len)``; the page holding ``prompt_len`` is listed once. One kernel launch
    where the kernels run (once per layer of a decode step), else torch."""
    if use_triton(kept):
        r, hkv = kept.shape
        out = torch.empty(r, hkv, width, dtype=torch.int32, device=kept.device)
        _compacted_pages_kernel[(r, hkv)](
            kept.to(torch.int32).contiguous(),
            prompt_lens.to(torch.int32).contiguous(),
            seq_lens.to(torch.int32).contiguous(),
            out,
            hkv,
            width,
            PAGE=page,
            BLOCK_W=min(1024, max(16, triton.next_power_of_2(width))),
            num_warps=4,
        )
        return out
    first_recent = (prompt_lens // page)[:, None]  # [R, 1]
    n1 = torch.minimum((kept + page - 1) // page, first_recent)  # pages wholly before the recent run
    n2 = ((seq_lens + page - 1) // page)[:, None] - first_recent
    idx = torch.arange(width, device=kept.device)[None, None, :]
    n1, n2, first_recent = n1[..., None], n2[..., None], first_recent[..., None]
    recent = idx - n1
    return torch.where(idx < n1, idx, torch.where(recent < n2, first_recent + recent, -1)).int()


def compacted_attention(
    query,
    key_cache,
    value_cache,
    block_tables,
    kept,
    prompt_lens,
    seq_lens,
    page: int,
    scale: float,
    width: int,
    lengths=None,
    out=None,
) -> torch.Tensor:
    """Attention rows ``[R, Hq, D]`` over compacted caches: ``kept [R, Hkv]`` tokens kept per head, then
    the generated ones. ``width``: enough page slots for the longest head (host int); ``lengths``:
    ``seq_lens`` per (request, kv head) as contiguous int32, if the caller has it; ``out``: see
    :func:`~sparse_frontier.kernels.quest.sparse_decode`."""
    pages = compacted_pages(kept, prompt_lens, seq_lens, page, width)
    if lengths is None:
        lengths = seq_lens[:, None].expand(kept.shape)
    return sparse_decode(
        query,
        key_cache,
        value_cache,
        pages,
        lengths,
        page,
        scale,
        True,
        block_table=block_tables,
        kept=kept,
        start=prompt_lens,
        out=out,
    )


def compacted_decode(
    query, key_cache, value_cache, block_tables, kept, prompt_lens, seq_lens, page: int, scale: float, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`compacted_attention` and the density per request (tokens read / tokens in the cache)."""
    out = compacted_attention(
        query, key_cache, value_cache, block_tables, kept, prompt_lens, seq_lens, page, scale, width
    )
    valid = kept.float() + (seq_lens - prompt_lens).float()[:, None]
    return out, valid.mean(-1) / seq_lens.float()
