"""Exact top-k of one row held in registers, shared by Quest's page selection and Block-Sparse's
block selection (both inline it into their one-program-per-row kernels).

Bisection over the order-preserving int32 image of the float32 scores (at most 32 steps; it stops as
soon as a threshold keeps exactly k, ~14 steps for distinct scores), then the ties at the threshold
taken in index order. A step is one int32 compare and add per element: with few programs per launch
the per-element work is what costs (radix histograms were slower).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def order_keys(s, valid):
    """Scores as int32 keys in float order; invalid entries get the smallest key, below any threshold."""
    bits = s.to(tl.int32, bitcast=True)
    return tl.where(valid, tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF), -2147483648)


@triton.jit
def top_k_mask(key, valid, k):
    """Mask of the ``k`` largest valid keys (``k`` <= the number of valid entries), ties in index order."""
    lo = tl.full([], -2147483647, tl.int64)  # invariant: count(key >= lo) >= k (every valid key >= lo)
    hi = tl.full([], 2147483647, tl.int64)
    while lo < hi:  # stops as soon as a threshold keeps exactly k
        mid = lo + (hi - lo + 1) // 2
        count = tl.sum((key >= mid.to(tl.int32)).to(tl.int32), 0)
        lo = tl.where(count >= k, mid, lo)
        hi = tl.where(count > k, hi, tl.where(count == k, mid, mid - 1))
    thr = lo.to(tl.int32)
    above = key > thr
    tie = valid & (key == thr)
    room = k - tl.sum(above.to(tl.int32), 0)
    return above | (tie & (tl.cumsum(tie.to(tl.int32), 0) <= room))
