"""Triton top-k of Block-Sparse's block scores: one program per (query head, query block) row.

``torch.topk`` with k in the hundreds over rows of thousands of blocks, plus the masks and the sort
around it, was most of Block-Sparse's index at 128k (50 ms of a 152 ms call on an H100). Here each
row is held in registers once: the causal mask and the always-kept blocks (sink, diagonal and the
one below it) are applied in place, the top k are found as Quest's page selection finds its pages
(:func:`sparse_frontier.kernels.topk.top_k_mask`), and the kept block ids are written in ascending
order, which the prefill kernel wants. Ties at the threshold are taken in block order
(``torch.topk`` breaks them arbitrarily).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sparse_frontier.kernels.topk import order_keys, top_k_mask


@triton.jit
def _block_select_kernel(
    S,
    OUT,
    ROW0,
    ROWS,
    K,
    stride_sh,
    stride_sr,
    stride_oh,
    stride_or,
    BLOCK_W: tl.constexpr,
):
    pid = tl.program_id(0)
    head = pid // ROWS
    local = pid % ROWS
    qi = ROW0 + local  # this row's query block: key blocks 0..qi are causal
    cols = tl.arange(0, BLOCK_W)
    valid = cols <= qi
    s = tl.load(S + head * stride_sh + local * stride_sr + cols, mask=valid, other=0.0)
    forced = (cols == 0) | (cols == qi) | (cols == qi - 1)
    s = tl.where(forced, float("inf"), s)
    key = order_keys(s, valid)
    chosen = top_k_mask(key, valid, tl.minimum(K, qi + 1))
    pos = tl.cumsum(chosen.to(tl.int32), 0) - 1
    tl.store(OUT + head * stride_oh + local * stride_or + pos, cols.to(tl.int32), mask=chosen)


def select_blocks(scores: torch.Tensor, row0: int, k: int, out: torch.Tensor) -> torch.Tensor:
    """Write each row's ``k`` kept key blocks, ascending, into ``out [H, R, k]`` (int32, any strides).

    ``scores [H, R, W]``: float32 scores of query blocks ``row0 .. row0 + R - 1`` against key
    blocks ``0 .. W - 1`` (W >= row0 + R); blocks above a row's diagonal are ignored, block 0, the
    diagonal and the block below it are always kept. Every row must have at least ``k`` causal
    blocks (``row0 >= k - 1``).
    """
    h, r, w = scores.shape
    if scores.dtype != torch.float32 or scores.stride(-1) != 1:
        raise ValueError(f"scores must be float32 with unit last stride; got {scores.dtype}, strides {scores.stride()}")
    if w < row0 + r or row0 < k - 1:
        raise ValueError(
            f"rows {row0}..{row0 + r - 1} need >= {row0 + r} key blocks and row0 >= k - 1 (k {k}); got {w}"
        )
    if out.shape != (h, r, k) or out.dtype != torch.int32 or out.stride(-1) != 1:
        raise ValueError(f"out must be int32 [{h}, {r}, {k}] with unit last stride; got {out.dtype} {tuple(out.shape)}")
    block_w = max(16, triton.next_power_of_2(w))
    _block_select_kernel[(h * r,)](
        scores,
        out,
        row0,
        r,
        k,
        scores.stride(0),
        scores.stride(1),
        out.stride(0),
        out.stride(1),
        BLOCK_W=block_w,
        num_warps=4 if block_w <= 2048 else (8 if block_w <= 8192 else 16),
    )
    return out
