"""The paper grid of config/config.yaml as the paper ran it: Block-Sparse / FlexPrefill levels, their
calibration, Vertical-Slash's estimation window per task, and the exclusions.

Facts (../shared/spec/paper.md): Block-Sparse top blocks per query block (block 16) at its seven levels
16384: 26 35 53 71 108 188 300 · 32768: 52 69 105 141 216 376 600 · 65536: 104 139 210 283 432 752 1200;
FlexPrefill at the same seven levels; Vertical-Slash estimates with 512 queries on NIAH and Story
Retrieval, 256 elsewhere; Gemma up to 64k; 128k only for dense, Vertical-Slash and Quest.
"""

from __future__ import annotations

import inspect
from collections import defaultdict

from sparse_frontier import calibrate, levels
from sparse_frontier.attention import calibration, synthetic
from sparse_frontier.attention.block_sparse import block_density, top_chunks_for
from sparse_frontier.attention.vertical_slash import FlexPrefill

LENGTHS = (16384, 32768, 65536)
DENSEST_TWO = {16384: (188, 300), 32768: (376, 600), 65536: (752, 1200)}


def main_levels(runs, method):
    return sorted({r.method_params["sparsity"] for r in runs if r.key.method == method and "qwen" in r.experiments})


def test_block_sparse_densest_levels_give_the_papers_top_blocks(runs):
    levels = main_levels(runs, "block_sparse")
    assert len(levels) == 7
    densest = levels[:2]
    for length, tops in DENSEST_TWO.items():
        assert tuple(top_chunks_for(length, 16, s) for s in reversed(densest)) == tops, (length, densest)
        # ... which are densities 1/3 and 1/2 (3x and 2x compression), not 0.3 / 0.4
        for s, top in zip(reversed(densest), tops):
            assert abs(1 - block_density(length, 16, top) - s) < 1e-3
    # FlexPrefill runs at the same seven levels (the paper's table pairs them)
    assert main_levels(runs, "flexprefill") == levels


def test_flexprefill_calibration_covers_its_levels(runs):
    """Every FlexPrefill / Vertical-Slash target of the grid is a calibrated level (within the 4-digit
    rounding of the config), so lookups never fall outside the table and calibrate on each call."""
    for method, fitted in (
        ("flexprefill", levels.CALIBRATION_SPARSITIES),
        ("vertical_slash", levels.CALIBRATION_SPARSITIES),
    ):
        for s in {r.method_params["sparsity"] for r in runs if r.key.method == method}:
            assert min(abs(s - f) for f in fitted) < 1e-4, (method, s, fitted)
    assert set(levels.FLEXPREFILL_SPARSITIES) <= set(levels.CALIBRATION_SPARSITIES)
    assert set(levels.PAPER_SPARSITIES) <= set(levels.CALIBRATION_SPARSITIES)
    # one definition: a model's calibration and the synthetic table fit these levels
    assert (
        inspect.signature(calibrate.calibrate_model).parameters["sparsities"].default is levels.CALIBRATION_SPARSITIES
    )
    assert synthetic.FLEXPREFILL_SPARSITIES is levels.FLEXPREFILL_SPARSITIES
    for s in main_levels(runs, "flexprefill"):
        assert min(abs(s - f) for f in levels.FLEXPREFILL_SPARSITIES) < 1e-4, s


def test_lookup_between_and_outside_calibrated_points(tmp_path, monkeypatch):
    """A target between two fitted points is interpolated; one outside every point is None (the method
    then calibrates on each call): what made 0.5 / 0.6667 need their own FlexPrefill points."""
    monkeypatch.setenv("SPARSE_FRONTIER_CALIBRATION", str(tmp_path / "table.json"))
    fixed = FlexPrefill().calibration_key()
    old_levels = levels.PAPER_SPARSITIES[:7]  # the list before: 0.95 ... 0.6
    points = [
        {"sparsity": s, "measured": s, "params": {"alpha": round(1 - s, 4), "min_budget": 512}}
        for s in levels.CALIBRATION_SPARSITIES
    ]
    calibration.write_entries(
        [
            {
                "model": "old",
                "method": "flexprefill",
                "length": 16384,
                "fixed": fixed,
                "source": "test",
                "points": [p for p in points if any(abs(p["sparsity"] - s) < 1e-12 for s in old_levels)],
            },
            {
                "model": "new",
                "method": "flexprefill",
                "length": 16384,
                "fixed": fixed,
                "source": "test",
                "points": points,
            },
        ]
    )
    assert calibration.lookup("old", "flexprefill", 16000, 0.5, fixed) is None  # below the old table
    assert calibration.lookup("new", "flexprefill", 16000, 0.5, fixed) == {"alpha": 0.5, "min_budget": 512}
    third = calibration.lookup("new", "flexprefill", 16000, 0.6667, fixed)  # next to its own point
    assert third["min_budget"] == 512 and abs(third["alpha"] - 1 / 3) < 1e-3


def test_vertical_slash_estimates_with_512_queries_on_niah_and_story_retrieval(runs):
    sizes = defaultdict(set)
    for r in runs:
        if r.key.method == "vertical_slash" and not any(e.startswith("ablation_") for e in r.experiments):
            sizes[r.key.task].add(r.method_params["approximation_size"])
    assert len(sizes) == 9
    for task, found in sizes.items():
        assert found == ({512} if task in ("ruler_niah", "story_retrieval") else {256}), (task, found)


def test_exclusions_are_kept(runs):
    for r in runs:
        if r.key.model.startswith("gemma"):
            assert r.key.length <= 65536, r.key
        if r.key.length > 65536:
            assert r.key.method in ("dense", "vertical_slash", "quest"), r.key
        if any(e.startswith("ablation_") for e in r.experiments):
            assert r.key.model == "qwen2.5-7b" and r.key.length == 16384, r.key
    assert {r.key.length for r in runs} == {16384, 32768, 65536, 128000}
