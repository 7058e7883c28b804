"""Tables 1 and 2 come from the registries: every shipped method and task carries its taxonomy row."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
import pytest

from sparse_frontier.analysis.registry_tables import (
    METHOD_COLUMNS,
    TASK_COLUMNS,
    is_sparse_method,
    method_taxonomy,
    task_group,
    task_taxonomy,
)
from sparse_frontier.attention import METHODS, AttentionMethod, get_method_class
from sparse_frontier.tasks import TASKS, Task

# spec/methods.md and the paper's Table 1, in the paper's order
TABLE1 = pd.DataFrame(
    [
        ("prefill", "vertical_slash", "Vertical-Slash", "verticals and slashes", "uniform", "untouched"),
        ("prefill", "flexprefill", "FlexPrefill", "verticals and slashes", "threshold (cumulative mass)", "untouched"),
        ("prefill", "block_sparse", "Block-Sparse", "blocks", "uniform", "untouched"),
        ("decode", "snapkv", "SnapKV", "tokens", "uniform", "eviction after prefill"),
        ("decode", "ada_snapkv", "Ada-SnapKV", "tokens", "adaptive across heads", "eviction after prefill"),
        ("decode", "quest", "Quest", "pages", "uniform", "full cache kept, pages selected per step"),
    ],
    columns=METHOD_COLUMNS,
)
# spec/tasks.md and the paper's Table 2, in the spec's order
TABLE2 = pd.DataFrame(
    [
        ("ruler_niah", "low", "low", "no"),
        ("ruler_vt", "high", "low", "no"),
        ("ruler_cwe", "low", "high", "no"),
        ("qa_squad", "low", "low", "yes"),
        ("qa_quality", "low", "low", "yes"),
        ("qa_toefl", "low", "low", "yes"),
        ("story_retrieval", "low", "low", "yes"),
        ("story_multihop", "high", "low", "yes"),
        ("story_filtering", "low", "high", "yes"),
    ],
    columns=["task", "dispersion", "scope", "natural"],
)
TAXONOMY_ATTRS = ("display_name", "unit", "budget_allocation", "kv_cache")
TASK_ATTRS = ("display_name", "dispersion", "scope", "natural")


def shipped(registry):
    """Classes the package itself registers (other tests may register extra ones in the session)."""
    return [c for c in registry._classes.values() if c.__module__.startswith("sparse_frontier.")]


def test_method_table_matches_the_paper():
    get_method_class("vertical_slash+quest")  # a registered combination is no row
    frame = method_taxonomy()
    assert list(frame.columns) == METHOD_COLUMNS
    ours = frame[frame["method"].isin(TABLE1["method"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, TABLE1)
    assert not {"dense", "capture_estimation", "vertical_slash+quest"} & set(frame["method"])
    # whatever else is registered comes after the paper's rows of its phase, never between phases
    assert list(frame["phase"]) == sorted(frame["phase"], key=["prefill", "decode"].index)


def test_every_shipped_method_sets_its_taxonomy():
    for cls in shipped(METHODS):
        if is_sparse_method(cls):
            for attr in TAXONOMY_ATTRS:
                assert attr in vars(cls) and isinstance(getattr(cls, attr), str), (cls.name, attr)
    dense, capture = get_method_class("dense"), get_method_class("capture_estimation")
    assert [getattr(dense, a) for a in TAXONOMY_ATTRS] == ["Dense", "none", "none", "untouched"]
    assert not is_sparse_method(dense) and not is_sparse_method(capture)
    assert (capture.unit, capture.kv_cache) == ("none", "untouched")  # base defaults: attention stays dense


def test_combination_names_its_components():
    cls = get_method_class("block_sparse+snapkv")
    assert cls.display_name == "Block-Sparse + SnapKV"
    assert cls.kv_cache == "untouched + eviction after prefill"
    assert not is_sparse_method(cls)


def test_task_table_matches_the_paper():
    frame = task_taxonomy()
    assert list(frame.columns) == TASK_COLUMNS
    ours = frame[frame["task"].isin(TABLE2["task"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(ours[TABLE2.columns], TABLE2)
    assert list(ours["family"]) == ["RULER"] * 3 + ["QA"] * 3 + ["Story"] * 3
    groups = ["retrieval", "multi-hop", "aggregation"]
    assert list(ours["group"]) == groups + ["retrieval"] * 3 + groups
    assert ours.set_index("task").loc[["ruler_niah", "story_multihop"], "name"].tolist() == ["NIAH", "Story Multi-hop"]


def test_every_shipped_task_sets_its_taxonomy():
    for cls in shipped(TASKS):
        for attr in TASK_ATTRS:
            assert attr in vars(cls) and getattr(cls, attr) is not None, (cls.name, attr)
        assert cls.dispersion in ("low", "high") and cls.scope in ("low", "high") and isinstance(cls.natural, bool)


def test_taxonomy_attributes_are_not_parameters():
    import dataclasses

    for cls in shipped(METHODS) + shipped(TASKS):
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & set(TAXONOMY_ATTRS + TASK_ATTRS), cls.name


def test_task_group():
    assert task_group("low", "low") == "retrieval"
    assert task_group("high", "low") == "multi-hop"
    assert task_group("low", "high") == "aggregation"


def test_new_method_without_taxonomy_gets_a_placeholder_row_or_a_clear_error(monkeypatch, caplog):
    @dataclass
    class Bare(AttentionMethod):
        name = "test_bare_sparse"
        phase = "kv"
        sparsity: float = 0.0
        unit = "tokens"  # one of four set

    @dataclass
    class NoKnob(AttentionMethod):  # a helper without a sparsity knob is no row
        name = "test_no_knob"
        phase = "prefill"

    for cls in (Bare, NoKnob):
        monkeypatch.setitem(METHODS._classes, cls.name, cls)
    with caplog.at_level(logging.WARNING):
        frame = method_taxonomy()
    row = frame.set_index("method").loc["test_bare_sparse"]
    assert row.tolist() == ["decode", "test_bare_sparse", "tokens", "unspecified", "unspecified"]
    assert "test_no_knob" not in set(frame["method"])
    assert "test_bare_sparse" in caplog.text and "budget_allocation" in caplog.text
    with pytest.raises(ValueError, match=r"'test_bare_sparse'.*display_name, budget_allocation, kv_cache"):
        method_taxonomy(strict=True)


def test_new_task_without_taxonomy_gets_a_placeholder_row_or_a_clear_error(monkeypatch):
    @dataclass
    class BareTask(Task):
        name = "test_bare_task"
        description = "none"
        dispersion = "high"

    monkeypatch.setitem(TASKS._classes, BareTask.name, BareTask)
    row = task_taxonomy().set_index("task").loc["test_bare_task"]
    assert row.tolist() == ["test_bare_task", "other", "high", "unspecified", "unspecified", "unspecified"]
    assert task_taxonomy()["task"].iloc[-1] == "test_bare_task"  # unknown family: last
    with pytest.raises(ValueError, match=r"'test_bare_task'.*display_name, scope, natural"):
        task_taxonomy(strict=True)
