"""benchmarks/block_overlap.py's overlap measures on selections whose answer is known."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from block_overlap import overlap  # noqa: E402


def selections(lists: list[list[list[int]]], nb: int):
    """blocks [Hq, NB, K] padded with nb, counts [Hq, NB], from per-head per-row key-block lists."""
    k = max(len(r) for head in lists for r in head)
    blocks = torch.tensor([[r + [nb] * (k - len(r)) for r in head] for head in lists], dtype=torch.int32)
    counts = torch.tensor([[len(r) for r in head] for head in lists], dtype=torch.int32)
    return blocks, counts


def test_identical_selections_share_every_load_and_disjoint_ones_none():
    nb, top = 8, 0
    same = [[[0, 1] for _ in range(nb)]] * 2  # 2 heads of one kv head, every row keeps blocks 0 and 1
    stats = overlap(*selections(same, nb), nb, top, group=4, kv_heads=1)
    assert stats["tile_traffic"] == pytest.approx(1 / 4) and stats["tile_inflation"] == pytest.approx(1.0)
    assert stats["gqa_traffic"] == pytest.approx(1 / 2) and stats["gqa_inflation"] == pytest.approx(1.0)
    # row i keeps block i only; head 1 keeps the other block of its pair: no two members share one
    apart = [[[i] for i in range(nb)], [[i ^ 1] for i in range(nb)]]
    stats = overlap(*selections(apart, nb), nb, top, group=2, kv_heads=1)
    assert stats["tile_traffic"] == pytest.approx(1.0) and stats["tile_inflation"] == pytest.approx(2.0)
    assert stats["gqa_traffic"] == pytest.approx(1.0) and stats["gqa_inflation"] == pytest.approx(2.0)


def test_rows_that_keep_everything_and_a_partial_last_group_are_left_out():
    nb, top = 7, 2  # rows 0, 1 keep all their blocks; rows 2-5 make two groups of 2; row 6 is left over
    lists = [[[0], [0, 1]] + [[0, i] for i in range(2, 6)] + [[5, 6]]]
    stats = overlap(*selections(lists, nb), nb, top, group=2, kv_heads=1)
    # a group of rows (0, i) and (0, i+1): union 3 of 4 loads, 3 products for 2 per member
    assert stats["tile_traffic"] == pytest.approx(3 / 4) and stats["tile_inflation"] == pytest.approx(1.5)
