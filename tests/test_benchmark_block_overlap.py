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


@pytest.mark.skipif(__import__("os").environ.get("TRITON_INTERPRET") != "1", reason="CPU run needs TRITON_INTERPRET=1")
def test_grouped_blocks_benchmark_times_both_kernels_on_random_and_saved_inputs(tmp_path):
    """benchmarks/grouped_blocks.py end to end at a tiny size: random inputs and a --qk file in the
    format block_overlap.py --save-qk writes; the grouped outputs equal the one-block kernel's."""
    import subprocess

    import pandas as pd

    g = torch.Generator().manual_seed(0)
    layers = {3: (torch.randn(100, 4, 32, generator=g).bfloat16(), torch.randn(100, 2, 32, generator=g).bfloat16())}
    torch.save({"model": "tiny", "task": "niah", "layers": layers}, tmp_path / "qk.pt")
    repo = Path(__file__).resolve().parent.parent
    args = ["--qk", str(tmp_path / "qk.pt"), "--lengths", "64", "--heads", "2", "--kv-heads", "1"]
    args += ["--head-dim", "32", "--sparsities", "0.6", "--groups", "2", "4", "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, "benchmarks/grouped_blocks.py", str(tmp_path / "out"), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "out/grouped_blocks.csv")
    assert set(table["input"]) == {"random 2/1x32", "tiny niah layer 3"}
    assert sorted(table["group"].unique()) == [1, 2, 4] and table["ms"].notna().all()
    grouped = table[table["group"] > 1]
    assert (grouped["rel_err_vs_one_block"] < 1e-5).all()
    assert ((grouped["traffic"] <= 1) & (grouped["traffic"] >= 1 / grouped["group"])).all()
    assert (tmp_path / "out/grouped_blocks.md").read_text().startswith("# Block-Sparse: one query block")
