"""The GPUs the grid is planned for, as the resource model sees them (memory, decode bandwidth, prefill rate).

The H100 numbers are the ones the resource model was calibrated on (the measured H100 throughput of the
Qwen2.5-7B shape: the stock-vLLM 0.20 rows of benchmarks/results/throughput.csv and
benchmarks/results/plugin_gpu.json); another card's estimate
(``gpu_hours.card``, ``rows_card``) uses its entry of :data:`CARDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
#: GPU memory of the cards the grid is planned for (H100 80GB; A100 80GB and H200 have at least this).
GPU_MEMORY = 80 * GIB
#: Dense bf16 prefill throughput per GPU (H100: attention measured at 570-630 TFLOP/s, GEMMs similar;
#: 400 leaves room for the handler and the sparse methods' estimation passes).
PREFILL_FLOPS = 400e12
#: HBM bandwidth reached in decode (measured 2.0-2.4 TB/s for attention over the cache on the H100).
HBM_BYTES_PER_S = 2.5e12


@dataclass(frozen=True)
class Card:
    """A GPU as the resource model sees it: memory (as torch reports it), the HBM bandwidth decode
    reaches, the prefill FLOP rate. Estimates in another card's hours use it (``planning.estimate``)."""

    name: str
    memory: float
    hbm_bytes_per_s: float
    prefill_flops: float
    #: the data sheet's dense bf16 tensor-core rate and HBM bandwidth (the SXM cards): the limits a
    #: kernel's achieved FLOP/s and bytes/s are compared with (``planning.roofline``)
    peak_flops: float
    peak_hbm_bytes_per_s: float


#: The card the constants above were calibrated on.
H100 = Card("H100", GPU_MEMORY, HBM_BYTES_PER_S, PREFILL_FLOPS, 989e12, 3.35e12)
#: Same tensor cores as the H100 (989 dense bf16 TFLOP/s on both data sheets; cuDNN's 128k prefill
#: took 217 / 221-225 ms on the two cards here), HBM 4.8 vs 3.35 TB/s, 141 GB.
H200 = Card("H200", 139.8 * GIB, HBM_BYTES_PER_S * 4.8 / 3.35, PREFILL_FLOPS, 989e12, 4.8e12)
CARDS = {card.name: card for card in (H100, H200)}


def card_named(name: str | None) -> Card | None:
    """The card of :data:`CARDS` whose name is part of ``name`` (case-insensitive, e.g. a throughput
    row's ``NVIDIA H200``), else None."""
    for card in CARDS.values():
        if name and card.name.lower() in name.lower():
            return card
    return None
