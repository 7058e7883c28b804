"""Resolved hyperparameters (Table 6): what each method setting uses at a length, asked of the method."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from sparse_frontier.attention import calibration, get_method_class
from sparse_frontier.attention.block_sparse import BlockSparse
from sparse_frontier.attention.quest import Quest, budget_pages
from sparse_frontier.attention.snapkv import AdaSnapKV, SnapKV
from sparse_frontier.attention.vertical_slash import FlexPrefill, VerticalSlash
from sparse_frontier.hyperparameters import BUILT_IN, resolved, resolved_table, typed_params

MODEL = "synthetic-qwen2.5-7b"  # a model of the built-in calibration table
# The paper's ten kept fractions (v1 Table 6) as the grid's sparsities, sparsest first.
SPARSITIES = [0.95, 0.9333, 0.9, 0.8667, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]


@pytest.fixture(autouse=True)
def built_in_table(monkeypatch):
    monkeypatch.delenv("SPARSE_FRONTIER_CALIBRATION", raising=False)


def test_method_args_are_parsed_with_the_method_classes_types():
    expected = {"sparsity": 0.9, "top_chunks": 0, "chunk_size": 16}
    assert typed_params("block_sparse", "chunk_size~16+sparsity~0.9") == expected
    assert typed_params("quest", {"share_pages": "false", "sparsity": 0.5})["share_pages"] is False
    assert typed_params("vertical_slash+quest", "decode_sparsity~0.9+prefill_sparsity~0.8")["prefill_sparsity"] == 0.8
    assert typed_params("dense", "none") == {}
    with pytest.raises(ValueError, match="chunk_size='x' is not a valid int"):
        typed_params("block_sparse", "chunk_size~x")
    with pytest.raises(ValueError, match="unknown parameter.*budget"):
        typed_params("quest", "budget~0.1")
    with pytest.raises(ValueError, match="chunk_size=24 is invalid"):
        resolved("block_sparse", "chunk_size~24+sparsity~0.9", 16384)


def test_block_sparse_top_chunks_are_the_methods():
    out = resolved("block_sparse", "chunk_size~16+sparsity~0.9", 16384)
    assert out == {"top_chunks": BlockSparse(sparsity=0.9, chunk_size=16).top(16384), "chunk_size": 16}
    assert out["top_chunks"] == 53  # the paper's Table 6 at 10x, 16k
    assert resolved("block_sparse", "top_chunks~40", 16384)["top_chunks"] == 40  # explicit wins


def test_quest_budget_is_what_the_method_reads():
    out = resolved("quest", "page_size~16+sparsity~0.95", 16384)
    pages = budget_pages(0.95, 0, 16384, 16)
    assert out == {"token_budget": pages * 16, "pages": pages, "page_size": 16} and pages == 51
    # Behaviour: a decode step at S = 1024 reads the budget's pages plus the current (full) page.
    s, method = 1024, Quest(sparsity=0.9, page_size=16)
    budget = resolved("quest", "page_size~16+sparsity~0.9", s)["token_budget"]
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(4, 64, generator=g), torch.randn(2, s, 64, generator=g), torch.randn(2, s, 64, generator=g)
    density = method.decode(q, k, v, layer_index=0, scale=0.125).density
    assert torch.allclose(density * s, torch.full((4,), float(budget + 16)))


def test_snapkv_capacity_is_the_methods_and_what_it_keeps():
    for t in (16384, 32768, 1024):
        assert resolved("snapkv", "sparsity~0.9", t) == {"token_capacity": SnapKV(sparsity=0.9).capacity(t)}
    cap = resolved("snapkv", "sparsity~0.5", 1024)["token_capacity"]
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1024, 4, 64, generator=g), torch.randn(1024, 2, 64, generator=g)
    kept = SnapKV(sparsity=0.5).compress_kv(q, k, k, layer_index=0, scale=0.125).lengths()
    assert kept.tolist() == [cap, cap] == [512, 512]


def test_ada_snapkv_capacity_and_head_floor_match_its_selection():
    out = resolved("ada_snapkv", "min_head_capacity_ratio~0.2+sparsity~0.5", 1024)
    method = AdaSnapKV(sparsity=0.5, min_head_capacity_ratio=0.2)
    assert out["token_capacity"] == method.capacity(1024) == 512 and out["min_head_capacity_ratio"] == 0.2
    # Head 0 attends sharply (its pooled scores win every shared slot), head 1 uniformly (zero keys):
    # head 1 keeps exactly the floor, and the heads together keep 2 x capacity.
    g = torch.Generator().manual_seed(0)
    t = 1024
    q = torch.randn(t, 2, 64, generator=g) * 4
    k = torch.stack([torch.randn(t, 64, generator=g) * 4, torch.zeros(t, 64)], 1)
    kept = method.compress_kv(q, k, k, layer_index=0, scale=0.125).lengths().tolist()
    assert kept[1] == out["min_head_capacity"] == 132 and sum(kept) == 2 * out["token_capacity"]


def test_vertical_slash_and_flexprefill_read_the_built_in_table():
    for s in (0.95, 0.9, 0.5):
        out = resolved("vertical_slash", f"sparsity~{s}", 16384, MODEL)
        sizes = VerticalSlash(sparsity=s).bind(model=MODEL).sizes(16384)
        assert (out["verticals"], out["slashes"]) == sizes and out["source"] == BUILT_IN and "note" not in out
    out = resolved("flexprefill", "sparsity~0.9", 32768, MODEL)
    assert (out["alpha"], out["min_budget"]) == FlexPrefill(sparsity=0.9).bind(model=MODEL).settings(32768)
    assert out["source"] == BUILT_IN
    # Explicit sizes and sparsity 0 need no table.
    assert resolved("vertical_slash", "slash_size~100+vertical_size~100", 16384, "any") == {
        "verticals": 100,
        "slashes": 100,
        "source": "method parameters",
    }
    assert resolved("flexprefill", "alpha~0.5", 16384)["min_budget"] == 512


@pytest.mark.parametrize("model, sparsity", [("qwen2.5-7b", 0.9), (None, 0.9), (MODEL, 0.99)])
def test_no_calibration_entry_gives_none_and_a_note(model, sparsity):
    out = resolved("vertical_slash", f"sparsity~{sparsity}", 16384, model)
    assert out["verticals"] is None and out["slashes"] is None
    assert "calibrate on each call" in out["note"] and (model is None or repr(model) in out["note"])
    # Only within resolved(): outside it a method without an entry still calibrates on the call.
    assert calibration.online(lambda: "fitted", what="a test setting") == "fitted"


def test_a_given_calibration_table_is_used_instead_of_the_built_in_one(tmp_path):
    fixed = VerticalSlash().calibration_key()
    table = {
        "entries": [
            {
                "model": "m",
                "method": "vertical_slash",
                "length": 16384,
                "fixed": fixed,
                "points": [{"sparsity": 0.9, "measured": 0.9, "params": {"vertical_size": 300, "slash_size": 300}}],
            }
        ]
    }
    out = resolved("vertical_slash", "sparsity~0.9", 16000, "m", calibration=table)
    assert out == {"verticals": 300, "slashes": 300, "source": "given calibration table"}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(table))
    assert resolved("vertical_slash", "sparsity~0.9", 16384, "m", calibration=str(path))["verticals"] == 300
    # As a run with that table: the built-in model is not in it.
    assert resolved("vertical_slash", "sparsity~0.9", 16384, MODEL, calibration=table)["verticals"] is None
    assert resolved("vertical_slash", "sparsity~0.9", 16384, "m")["verticals"] is None  # built-in: no "m"


def test_combinations_prefix_each_components_values_and_dense_has_none():
    out = resolved("vertical_slash+quest", "decode_sparsity~0.9+prefill_sparsity~0.9", 16384, MODEL)
    vs = resolved("vertical_slash", "sparsity~0.9", 16384, MODEL)
    quest = resolved("quest", "sparsity~0.9", 16384)
    assert out == {
        **{f"vertical_slash_{k}": v for k, v in vs.items() if k != "source"},
        **{f"quest_{k}": v for k, v in quest.items()},
        "source": BUILT_IN,
    }
    out = resolved("block_sparse+snapkv", {"prefill_sparsity": 0.9, "kv_sparsity": "0.8"}, 16384)
    assert out == {"block_sparse_top_chunks": 53, "block_sparse_chunk_size": 16, "snapkv_token_capacity": 3276}
    unknown = resolved("vertical_slash+snapkv", "kv_sparsity~0.9+prefill_sparsity~0.9", 16384, "other")
    assert unknown["vertical_slash_verticals"] is None and unknown["note"].startswith("vertical_slash: ")
    assert resolved("dense", "none", 16384, MODEL) == {}


def test_decode_budgets_against_the_papers_table_6_at_16k():
    """SnapKV/Ada-SnapKV capacity = floor(kept x L) (paper: 819 ... 11468); Quest rounds to pages of
    16. The grid's 0.9333 / 0.8667 stand for 1/15 and 2/15 kept: 0.8667 gives 2183, 2/15 gives 2184."""
    caps = [resolved("snapkv", f"sparsity~{s}", 16384)["token_capacity"] for s in SPARSITIES]
    assert caps == [819, 1092, 1638, 2183, 3276, 4915, 6553, 8192, 9830, 11468]
    assert [math.floor(f * 16384) for f in (1 / 15, 2 / 15)] == [1092, 2184]
    quest = [resolved("quest", f"sparsity~{s}", 16384)["token_budget"] for s in SPARSITIES]
    assert quest == [816, 1088, 1632, 2176, 3280, 4912, 6560, 8192, 9824, 11472]
    assert all(abs(q - c) <= 8 for q, c in zip(quest, caps))  # within half a page


def test_resolved_table_adds_one_column_per_value():
    settings = pd.DataFrame(
        [
            {
                "method": "block_sparse",
                "method_args": "chunk_size~16+sparsity~0.9",
                "model": MODEL,
                "length": 16384,
                "target": 10,
            },
            {"method": "vertical_slash", "method_args": "sparsity~0.9", "model": MODEL, "length": 16384, "target": 10},
            {
                "method": "vertical_slash",
                "method_args": "sparsity~0.9",
                "model": "other",
                "length": 16384,
                "target": 10,
            },
            {"method": "snapkv", "method_args": "sparsity~0.95", "model": "other", "length": 16384, "target": 20},
        ]
    )
    fixed = VerticalSlash().calibration_key()
    tables = {
        "other": {
            "entries": [
                {
                    "model": "other",
                    "method": "vertical_slash",
                    "length": 16384,
                    "fixed": fixed,
                    "points": [{"sparsity": 0.9, "measured": 0.9, "params": {"vertical_size": 7, "slash_size": 7}}],
                }
            ]
        }
    }
    out = resolved_table(settings, tables)
    assert list(out.columns) == list(settings.columns) + [
        "top_chunks",
        "chunk_size",
        "verticals",
        "slashes",
        "token_capacity",
        "source",
    ]
    assert out["top_chunks"].tolist()[0] == 53 and out["token_capacity"].tolist()[3] == 819
    assert out["verticals"].tolist()[1:3] == [VerticalSlash(sparsity=0.9).bind(model=MODEL).sizes(16384)[0], 7]
    assert out["source"].tolist()[1:3] == [BUILT_IN, "given calibration table"]
    assert pd.isna(out["verticals"].tolist()[0]) and out["target"].tolist() == [10, 10, 10, 20]
    no_tables = resolved_table(settings)
    assert no_tables["verticals"].tolist()[2] is None and "note" in no_tables.columns
    with pytest.raises(ValueError, match="lack column"):
        resolved_table(settings.drop(columns="length"))


def test_every_registered_method_resolves_or_says_why():
    from sparse_frontier.attention import METHODS

    for name in METHODS.names():
        if "+" in name:
            continue
        recorder = name in ("capture_estimation", "capture_qkv")  # they leave attention dense
        args = "out_dir~somewhere" if recorder else "none"
        out = resolved(name, args, 4096)
        assert ("note" in out) == recorder, (name, out)
        assert get_method_class(name).phase == "none" or out, name
