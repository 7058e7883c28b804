"""Block-Sparse prefill (MInference): each query block keeps its ``top_chunks`` best key blocks.

Blocks are ``chunk_size`` queries x ``chunk_size`` keys. Queries and keys are mean-pooled per block;
a key block's score for a query block is the dot product of the pooled vectors (ranking by it equals
ranking by its softmax). The first block (sink), the diagonal block and the one below it are always
kept; blocks above the diagonal never. Query block ``i`` therefore keeps ``min(top_chunks, i + 1)``
blocks, so the density depends only on (T, chunk_size, top_chunks) and the target sparsity maps to
``top_chunks`` by formula (:func:`block_density`), the exact count the kernel computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sparse_frontier.attention.base import AttentionMethod, AttentionResult
from sparse_frontier.attention.calibration.search import search_int
from sparse_frontier.attention.reference import block_list_mask, masked_attention_rows
from sparse_frontier.attention.registry import register_method
from sparse_frontier.kernels import use_triton


def block_density(t: int, block: int, top: int) -> float:
    """Kept causal pairs / all causal pairs when every query block keeps min(top, i + 1) blocks."""
    nb = -(-t // block)
    last = t - block * (nb - 1)
    rows = torch.full((nb,), block, dtype=torch.float64)
    rows[-1] = last
    count = torch.clamp(torch.arange(nb, dtype=torch.float64) + 1, max=top)
    pairs = ((count - 1) * rows * block + rows * (rows + 1) / 2).sum().item()
    return pairs / (t * (t + 1) / 2)


def top_chunks_for(t: int, block: int, sparsity: float) -> int:
    """Number of key blocks per query block whose density is closest to ``1 - sparsity`` (>= 3)."""
    nb = -(-t // block)
    if sparsity == 0.0:
        return nb
    return max(3, search_int(lambda k: block_density(t, block, k), 1.0 - sparsity, 1, nb))


#: query blocks scored at once: bounds the score tensor to ROW_CHUNK x NB floats per query head
ROW_CHUNK = 1024


def block_index(query, key, block: int, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``blocks [Hq, NB, K]`` (kept key blocks, valid first, sorted; padding NB) and ``counts [Hq, NB]``.

    Query blocks go in row chunks, each scored only against the key blocks up to its last row (the
    causal lower triangle: half the scores, masks and top-k width of the full square), and the
    chunks whose every row keeps all its blocks (row ``i < top``) need no scores at all."""
    t, hq, d = query.shape
    hkv = key.shape[1]
    g = hq // hkv
    nb = -(-t // block)
    pad = nb * block - t
    n = torch.full((nb,), float(block), device=query.device)
    n[-1] = block - pad
    pq = F.pad(query.float(), (0, 0, 0, 0, 0, pad)).reshape(nb, block, hq, d).sum(1) / n[:, None, None]
    pk = F.pad(key.float(), (0, 0, 0, 0, 0, pad)).reshape(nb, block, hkv, d).sum(1) / n[:, None, None]
    pq = pq.view(nb, hkv, g, d).permute(1, 2, 0, 3)  # [Hkv, g, NB, D]
    pk = pk.permute(1, 2, 0)[:, None]  # [Hkv, 1, D, NB]
    k = min(top, nb)
    qi = torch.arange(nb, device=query.device)
    blocks = torch.empty(hkv, g, nb, k, dtype=torch.int32, device=query.device)
    # rows i < k keep blocks 0..i (then padding)
    first = min(k, nb)
    blocks[:, :, :first] = torch.where(qi[None, :k] <= qi[:first, None], qi[None, :k], nb).int()
    select_blocks = None
    if use_triton(query):  # the same selection in one pass over each row (torch.topk was most of the index)
        from sparse_frontier.kernels.block_select import select_blocks
    for r0 in range(first, nb, ROW_CHUNK):
        r1 = min(r0 + ROW_CHUNK, nb)
        s = torch.matmul(pq[:, :, r0:r1], pk[..., :r1])  # [Hkv, g, rows, r1]
        if select_blocks is not None:
            select_blocks(s.view(hq, r1 - r0, r1), r0, k, blocks.view(hq, nb, k)[:, r0:r1])
            continue
        rows, cols = qi[r0:r1, None], qi[None, :r1]
        # sink, diagonal and the block below it always; blocks above the diagonal never
        s.masked_fill_((cols == 0) | (cols == rows) | (cols == rows - 1), float("inf"))
        s.masked_fill_(cols > rows, float("-inf"))
        blocks[:, :, r0:r1] = s.topk(k, -1).indices.sort(-1).values.int()  # every row here has >= k blocks
    counts = torch.clamp(qi + 1, max=k).expand(hq, nb).int()
    return blocks.view(hq, nb, k), counts


def run_blocks(query, key, value, scale, blocks, counts, block) -> torch.Tensor:
    """Attention over per-query-block key-block lists: Triton on CUDA, chunked torch on CPU."""
    if use_triton(query):
        from sparse_frontier.kernels.sparse_prefill import sparse_prefill

        return sparse_prefill(query, key, value, scale, block, blocks=blocks, block_count=counts)
    t = query.shape[0]
    return masked_attention_rows(
        query, key, value, scale, lambda r0, r1: block_list_mask(t, blocks, counts, block, rows=(r0, r1))
    )


@register_method
@dataclass
class BlockSparse(AttentionMethod):
    """Top key blocks per query block. Knob: ``sparsity`` -> ``top_chunks`` by formula; explicit > 0 wins."""

    name = "block_sparse"
    display_name = "Block-Sparse"
    unit = "blocks"
    budget_allocation = "uniform"
    kv_cache = "untouched"
    phase = "prefill"
    sparsity: float = 0.0
    top_chunks: int = 0
    chunk_size: int = 16

    def __post_init__(self):
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "a target sparsity in [0, 1)")
        self.check(
            self.top_chunks == 0 or self.top_chunks >= 3,
            "top_chunks",
            "0 (from sparsity) or >= 3 (sink, diagonal and its neighbour are always kept)",
        )
        self.check(self.chunk_size in (16, 32, 64, 128), "chunk_size", "one of 16, 32, 64, 128")
        self.check(self.top_chunks == 0 or self.sparsity == 0.0, "sparsity", "0 when top_chunks is given")

    def top(self, t: int) -> int:
        return self.top_chunks or top_chunks_for(t, self.chunk_size, self.sparsity)

    def build_mask(self, query, key, value, *, scale: float) -> torch.Tensor:
        blocks, counts = block_index(query, key, self.chunk_size, self.top(query.shape[0]))
        return block_list_mask(query.shape[0], blocks, counts, self.chunk_size)

    def prefill(self, query, key, value, *, layer_index: int, scale: float) -> AttentionResult | None:
        t, hq = query.shape[:2]
        top = self.top(t)
        blocks, counts = block_index(query, key, self.chunk_size, top)
        out = run_blocks(query, key, value, scale, blocks, counts, self.chunk_size)
        density = torch.full((hq,), block_density(t, self.chunk_size, top), device=query.device)
        return AttentionResult(out, density)
