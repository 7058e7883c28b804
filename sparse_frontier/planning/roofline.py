"""What a card allows for an attention kernel's work: its FLOPs and bytes, achieved rates, the bound.

Counts (``h`` query heads, ``h_kv`` kv heads, ``d`` head dim, ``L`` length, ``B`` batch, ``e`` bytes
an element, 2 for bf16):

- causal prefill FLOPs ``= 4 h d L^2 / 2``: QK^T and PV are ``2 h d L^2`` each over the full square,
  causality keeps half. A sparse prefill's work is its density (kept causal pairs / all causal
  pairs) times that, plus its index building: :func:`estimation_flops` (Vertical-Slash, FlexPrefill:
  the last ``n`` queries against every key) or :func:`pooled_index_flops` (Block-Sparse: block-pooled
  queries against block-pooled keys, causal half).
- prefill bytes ``= e L d (2 h + 2 h_kv)``: Q, K, V read once, O written once.
- decode FLOPs ``= 4 B h d L`` (tiny: decode is bound by bytes); decode bytes ``= 2 e B L h_kv d``: K and V read once (the query and output are negligible). Quest
  reads its kept pages (density times that) and the page summaries (min and max of each 16-token
  page: ``2 e B h_kv ceil(L / 16) d``).
- bound ``= max(FLOPs / peak FLOP/s, bytes / peak bytes/s)``: the least time the card's data sheet
  allows for that work (:class:`~sparse_frontier.planning.cards.Card` ``peak_flops``,
  ``peak_hbm_bytes_per_s``).
"""

from __future__ import annotations

from sparse_frontier.planning.cards import Card

BF16 = 2


def causal_flops(length: int, heads: int, head_dim: int) -> float:
    """FLOPs of causal attention over one sequence: ``4 * heads * head_dim * length**2 / 2``."""
    return 4.0 * heads * head_dim * length**2 / 2


def prefill_bytes(length: int, heads: int, kv_heads: int, head_dim: int, elem: int = BF16) -> float:
    """Bytes a prefill moves at least: Q, K, V read and O written once."""
    return float(elem * length * head_dim * (2 * heads + 2 * kv_heads))


def estimation_flops(n_queries: int, length: int, heads: int, head_dim: int) -> float:
    """QK^T of the last ``n_queries`` queries against all ``length`` keys (Vertical-Slash's estimate)."""
    return 2.0 * heads * head_dim * min(n_queries, length) * length


def pooled_index_flops(length: int, block: int, heads: int, head_dim: int) -> float:
    """Block-pooled QK^T over the causal half of the ``ceil(length / block)`` blocks (Block-Sparse's index)."""
    nb = -(-length // block)
    return 2.0 * heads * head_dim * nb * nb / 2


def gathered_kv_bytes(length: int, block: int, top: int, heads: int, head_dim: int, elem: int = BF16) -> float:
    """K and V bytes a kernel with one program per (query head, query block) loads: each query block's
    ``min(top, i + 1)`` kept key blocks, again for every query block and head that keeps them (no
    sharing between programs). Against :func:`prefill_bytes` (each byte once) this is the traffic
    that 16-row tiles turn into loads; a kernel sustaining R bytes/s of it needs at least bytes / R."""
    nb = -(-length // block)
    kept = sum(min(top, i + 1) for i in range(nb))
    return float(2 * elem * heads * kept * block * head_dim)


def decode_flops(batch: int, length: int, heads: int, head_dim: int) -> float:
    """FLOPs of one decode step (one query per sequence): QK^T and PV, ``2 * heads * head_dim * length`` each."""
    return 4.0 * batch * heads * head_dim * length


def kv_bytes(batch: int, length: int, kv_heads: int, head_dim: int, elem: int = BF16) -> float:
    """Bytes of K and V of ``batch`` sequences of ``length`` cached tokens (a dense decode step reads them all)."""
    return float(2 * elem * batch * length * kv_heads * head_dim)


def page_summary_bytes(batch: int, length: int, kv_heads: int, head_dim: int, page: int = 16, elem: int = BF16):
    """Bytes of Quest's page summaries (a min and a max key per page and kv head)."""
    return float(2 * elem * batch * kv_heads * -(-length // page) * head_dim)


def quest_bytes(batch, length, kv_heads, head_dim, density: float, page: int = 16, elem: int = BF16) -> float:
    """Bytes a Quest decode step reads at least: its kept pages' K and V and every page summary."""
    return density * kv_bytes(batch, length, kv_heads, head_dim, elem) + page_summary_bytes(
        batch, length, kv_heads, head_dim, page, elem
    )


def bound_ms(card: Card, flops: float = 0.0, nbytes: float = 0.0) -> float:
    """The least time in ms the card allows for ``flops`` and ``nbytes`` (whichever limit is tighter)."""
    return 1e3 * max(flops / card.peak_flops, nbytes / card.peak_hbm_bytes_per_s)


def tflops(flops: float, ms: float) -> float:
    """Achieved TFLOP/s of ``flops`` done in ``ms`` milliseconds."""
    return flops / ms / 1e9


def tbytes_per_s(nbytes: float, ms: float) -> float:
    """Achieved TB/s of ``nbytes`` moved in ``ms`` milliseconds."""
    return nbytes / ms / 1e9
