"""Every figure and table built from a SYNTHETIC results table of the WHOLE paper grid.

The table holds every run config/config.yaml asks for (~15k, exclusions and ablations as configured;
tests/grid_results.py makes it, scores from a known law, not from a model), in three forms real runs
leave: complete, with measured sparsities jittered around their targets, and with runs missing under
``figures.allow_missing``. The fast tests build each figure's data and check what the paper's figure
shows; the slow one also draws and saves every figure of every form.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from grid_results import whole_grid  # pytest puts tests/ on sys.path

from sparse_frontier.analysis import cost
from sparse_frontier.analysis.figures import (
    FIGURES,
    TABLES,
    build,
    checks,
    per_task,
    plan_table,
    runs_per_figure,
    save,
    spec,
)
from sparse_frontier.analysis.figures.common import Inputs, length_label, prepare, run_name
from sparse_frontier.config import expand_runs, load_config

REPO = Path(__file__).resolve().parent.parent
CONFIG = load_config(REPO / "config/config.yaml")
NAMES = list(FIGURES) + list(TABLES) + [f"ablation_{a}" for a in CONFIG["figures"]["ablations"]]
RUN_NAMES = [n for n in NAMES if spec(n).runs is not None]
GRID_TASKS = sorted({r.key.task for r in expand_runs(CONFIG)})
GRID_LENGTHS = sorted({r.key.length for r in expand_runs(CONFIG)})


def inputs_of(tables, **settings) -> Inputs:
    config = copy.deepcopy(CONFIG)
    config["figures"] = {**config["figures"], **settings}
    return Inputs.from_config(config, tables[0], tables[1])


@pytest.fixture(scope="module")
def complete():
    return inputs_of(whole_grid(CONFIG, seed=0))


@pytest.fixture(scope="module")
def jittered():
    return inputs_of(whole_grid(CONFIG, jitter=0.01, seed=0))


@pytest.fixture(scope="module")
def partial():
    return inputs_of(whole_grid(CONFIG, missing=0.02, seed=3), allow_missing=True)


def test_the_table_is_the_whole_grid(complete):
    runs = expand_runs(CONFIG)
    assert len(complete.table) == len(runs) > 15000
    assert (complete.table["status"] == "ok").all()
    lengths = complete.table.groupby("model")["length"].max()
    assert lengths[[m for m in lengths.index if m.startswith("gemma")]].max() == 65536
    long = complete.table[complete.table["length"] == 128000]
    assert set(long["method"]) == {"dense", "vertical_slash", "quest"}


@pytest.fixture(scope="module")
def built(complete):
    return {name: build(name, complete, draw=False).data for name in NAMES}


def test_every_figure_and_table_builds_on_the_complete_grid(complete):
    for name in NAMES:
        out = build(name, complete, draw=False)
        assert not out.data.empty, name
        assert out.missing == [], name


def lines_share_cells(data: pd.DataFrame, panel: list[str]) -> bool:
    """Every line of a panel averages the same number of cells (no line's mean covers other cells)."""
    return bool((data.groupby(panel)["cells"].nunique() == 1).all())


def test_iso_panels_one_family_and_length_with_index_costs(built, complete):
    for name in ("isoflops", "isocost"):
        d = built[name]
        table, _ = prepare(complete)
        expected = set(zip(table["family"], table["length"]))
        assert set(zip(d["family"], d["length"])) == expected  # a panel per family and length, families apart
        assert lines_share_cells(d, ["phase", "family", "length"])
        for _, panel in d.groupby(["phase", "family", "length"]):
            front = panel[panel["on_frontier"]].sort_values("cost")
            assert front["score"].is_monotonic_increasing and len(front) >= 1
    d = built["isocost"]
    qwen = complete.models["qwen2.5-7b"]
    row = d[
        (d["model"] == "qwen2.5-7b") & (d["length"] == 65536) & (d["method"] == "quest") & (d["target"] == 0.9)
    ].iloc[0]
    plain = cost.decode_memory(qwen, 65536, 1 - row["sparsity"], 64)["total"]
    summaries = cost.quest_page_summary_elements(qwen, 65536, 16, 64)
    assert row["cost"] == pytest.approx(plain + summaries)  # Quest's page summaries are paid
    row = d[
        (d["model"] == "qwen2.5-7b") & (d["length"] == 65536) & (d["method"] == "vertical_slash") & (d["target"] == 0.9)
    ].iloc[0]
    assert row["cost"] > cost.prefill_flops(qwen, 65536, 1 - row["sparsity"], 64)["total"]  # estimation is paid


def test_per_task_figure_as_the_paper(built):
    d = built["task_comparison"]
    assert {"prefill", "decode"} <= set(d["row"])
    assert set(d.loc[d["row"] == "prefill", "method"]) == {"vertical_slash", "flexprefill", "block_sparse"}
    assert set(d.loc[d["row"] == "decode", "method"]) == {"quest", "snapkv", "ada_snapkv"}
    # main grid only, 16k-64k: every line averages all 9 models x 3 lengths (ablation runs would add cells)
    assert set(d["cells"]) == {27}
    bs = d[d["method"] == "block_sparse"]
    assert sorted(bs["target"].unique()) == pytest.approx([0.5, 0.6667, 0.8, 0.8667, 0.9, 0.9333, 0.95])
    groups = [g for g, _ in per_task.ordered_tasks(dict(zip(d["task"], d["group"])))]
    assert groups == sorted(groups, key=groups.index)  # tasks of a retrieval type side by side
    assert len(set(groups)) >= 2


def test_length_effect_and_model_size_aggregate_over_methods(built, complete):
    d = built["length_effect"]
    assert set(d["view"]) == {"all methods", "prefill methods", "decode methods"}
    assert set(d["length"]) == {16384, 32768, 65536}  # 128k: only VS and Quest run there, left out and noted
    assert any("length 128k left out" in n for n in build("length_effect", complete, draw=False).notes)
    assert lines_share_cells(d, ["view", "target"])
    # the paper: the relative error at 1/20 shrinks with length
    top = d[(d["view"] == "all methods") & (d["target"] == 0.95)].set_index("length")["relative_error"]
    assert top[16384] > top[32768] > top[65536] > 0
    per_method = built["length_effect_per_method"]
    assert 128000 in set(per_method.loc[per_method["method"] == "quest", "length"])
    m = built["model_size"]
    assert set(m["view"]) == {"easy tasks", "hard tasks"}
    assert set(m["family"]) == {"qwen2.5", "llama3.1", "gemma3"}
    for fam, models in m.groupby("family")["model"]:
        assert all(x.startswith(fam) for x in models)  # families never share a panel
    assert {"family", "task", "length"} <= set(built["length_effect_per_task"].columns)
    assert {"family", "length", "model"} <= set(built["model_size_per_length"].columns)


def test_scaling_law_per_family_with_held_out_r2(built, complete):
    t = built["scaling_law_fit"]
    r2 = t[t["statistic"] == "r2"]
    sizes = {f: len([m for m in CONFIG["models"] if m.startswith(f)]) for f in ("qwen2.5", "llama3.1", "gemma3")}
    for (phase, family), g in r2.groupby(["phase", "family"]):
        # holding out the largest of two sizes leaves one: no size axis to extrapolate along (Llama)
        axes = {"none", "length", "compression"} | ({"params"} if sizes[family] > 2 else set())
        assert set(g["held_out"]) == axes, (phase, family)
    # the compression fold holds out the largest nominal level: every run of it, not one jittered run
    comp = r2[(r2["held_out"] == "compression") & (r2["phase"] == "prefill") & (r2["family"] == "qwen2.5")].iloc[0]
    table, _ = prepare(complete)
    largest = table[(table["method"] == "vertical_slash") & table["main"] & (table["family"] == "qwen2.5")]
    assert comp["n"] == (largest["target"] == largest["target"].max()).sum()
    assert {"spearman_rho", "mae"} <= set(t["statistic"])


def test_cost_breakdown_speedups_the_papers_way(built):
    d = built["cost_breakdown"]
    mean = d[(d["kind"] == "mean") & d["panel"].str.startswith("prefill speedup")].set_index("length")["value"]
    for length, paper in [(16384, 1.48), (65536, 2.20), (131072, 2.80)]:
        assert mean[length] == pytest.approx(paper, abs=0.035)
    pair = d[d["panel"].str.contains("KV share of decode \\(batch 8\\)")]
    assert set(pair["model"]) == set(CONFIG["figures"]["sliding_window_pair"])


def test_tables_from_registries_and_resolved_settings(built):
    assert set(built["taxonomy"]["method"]) == {
        "vertical_slash",
        "flexprefill",
        "block_sparse",
        "quest",
        "snapkv",
        "ada_snapkv",
    }
    assert len(built["tasks"]) == 9 and len(built["models"]) == 9
    p = built["pattern_params"]
    bs = p[(p["method"] == "block_sparse") & (p["length"] == 16384) & (p["model"] == "qwen2.5-7b")]
    assert sorted(bs["top_chunks"].astype(int)) == [26, 35, 53, 71, 109, 188, 300]  # the paper: 108 at 5x
    q = built["prompt_lengths"]
    assert {"question_tokens_mean", "prompts_in_window"} <= set(q.columns)
    assert built["main_results"]["se_bound"].between(0, 0.5).all()


def test_ablations_are_curves_per_value(built):
    d = built["ablation_block_size"]
    assert set(d["value"]) == {"16", "32", "64"}
    assert (d[d["task"] == "mean over tasks"].groupby("value")["target"].nunique() >= 5).all()


def test_jittered_sparsities_average_at_nominal_points(jittered, built):
    d = build("task_comparison", jittered, draw=False).data
    ref = built["task_comparison"]
    assert set(d["target"]) == set(ref["target"])  # nominal points, not 300 scattered measured values
    assert set(d["cells"]) == {27}  # no cell lost to the jitter
    both = d.merge(ref, on=["row", "task", "method", "target"], suffixes=("", "_ref"))
    assert len(both) == len(ref)
    assert (both["score"] - both["score_ref"]).abs().mean() < 0.03
    fit = build("scaling_law_fit", jittered, draw=False).data
    comp = fit[(fit["statistic"] == "r2") & (fit["held_out"] == "compression")]
    assert (comp["n"] > 20).all()  # whole nominal levels held out, never a single jittered run


def test_frontier_checks_flag_off_target_sparsity_and_rising_accuracy(complete, jittered):
    """On the whole grid: the synthetic law falls with compression at every step and every measured
    sparsity is its target; a run 0.03 off its target, and a run scoring far above its previous
    level, are named in the notes (a jitter of 0.01 stays mostly within the 0.02 tolerance)."""
    checks = build("frontier_checks", complete, draw=False)
    d = checks.data
    prepared, _ = prepare(complete)
    assert len(d) == (prepared["main"] & (prepared["method"] != "dense")).sum()  # ablation-only runs apart
    assert d["sparsity_ok"].all() and set(d["direction"]) <= {"falls", "within noise"}
    assert "higher beyond it: 0" in checks.notes[1]
    table = complete.table.copy()
    sparse = table[(table["method"] == "vertical_slash") & (table["length"] == 32768)]
    sparse = sparse[sparse["method_args"].str.contains("sparsity~0.8+", regex=False)]
    off, up = sparse.index[0], sparse.index[1]
    table.loc[off, "sparsity"] += 0.03
    table.loc[up, ["score", "score_se"]] = [1.0, 0.0]
    notes = build("frontier_checks", inputs_of((table, complete.samples)), draw=False).notes
    task_of = {i: table.loc[i, "task"] for i in (off, up)}
    assert f"{task_of[off]} 32k vertical_slash 0.8 (+0.030)" in notes[0]
    assert "higher beyond it: 1;" in notes[1] and f"{task_of[up]} 32k vertical_slash 0.8" in notes[1]
    jittered_checks = build("frontier_checks", jittered, draw=False).data
    assert jittered_checks["sparsity_ok"].mean() > 0.9


def test_compare_scores_matches_cells_across_two_results_tables(complete):
    """The GPU-vs-CPU comparison: dense cells both tables hold, differences in combined SEs."""
    a = complete.table
    b = a[a["length"] == 16384].copy()
    dense_b = b.index[b["method"] == "dense"]
    b.loc[dense_b[0], "score"] += 0.1
    both = checks.compare_scores(a, b)
    assert len(both) == len(dense_b) and set(both["length"]) == {16384}
    changed = both[both["difference"] != 0]
    assert len(changed) == 1 and changed["difference"].iloc[0] == pytest.approx(-0.1)
    row = changed.iloc[0]
    assert row["in_se"] == pytest.approx(0.1 / np.hypot(row["score_se_a"], row["score_se_b"]))


def test_compare_scores_cli_writes_the_shared_cells_and_names_a_missing_table(complete, tmp_path, capsys):
    from sparse_frontier.cli import main

    a = complete.table[complete.table["length"] == 16384]
    a.to_csv(tmp_path / "a.csv", index=False)
    a[a["model"] == "qwen2.5-7b"].to_csv(tmp_path / "b.csv", index=False)
    main(["compare-scores", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "c.md")])
    text = (tmp_path / "c.md").read_text()
    assert "Within 1 combined SE: 9 of 9 cells" in text  # the 7B's nine dense tasks, identical
    with pytest.raises(SystemExit, match="no results table at 'nope.csv'"):
        main(["compare-scores", "nope.csv", str(tmp_path / "b.csv")])


def test_missing_runs_are_listed_and_means_stay_fair(partial):
    table = partial.table
    gone = table[table["status"] == "missing"]
    assert len(gone) > 100
    plan = plan_table(CONFIG)
    for name in RUN_NAMES:
        out = build(name, partial, draw=False)
        chosen = plan[spec(name).runs(plan, partial)]
        keys = ["task", "task_args", "length", "model", "seed", "method", "method_args"]
        expected = gone.merge(chosen[keys], on=keys)
        assert set(out.missing) == {run_name(r) for _, r in expected.iterrows()}, name
        if "cells" in out.data and name in ("task_comparison", "isocost", "length_effect", "model_size"):
            panel = {
                "task_comparison": ["row", "task"],
                "isocost": ["phase", "family", "length"],
                "length_effect": ["view", "target"],
                "model_size": ["view", "family", "target"],
            }[name]
            assert lines_share_cells(out.data, panel), name
            assert any("averaged over the" in n for n in out.notes), name
    with pytest.raises(ValueError, match="runs missing from the results"):
        build("isoflops", inputs_of((table, partial.samples)), draw=False)


def stopped_part_way(task: str, length: int) -> bool:
    """Datasets a run stopped part-way has not reached: every length but the shortest lacks a
    different half of the tasks, so no task has all lengths (the GPU demo's first sessions)."""
    i = GRID_LENGTHS.index(length)
    return i > 0 and (GRID_TASKS.index(task) + i) % 2 == 0


@pytest.fixture(scope="module")
def stopped():
    return inputs_of(whole_grid(CONFIG, missing_datasets=stopped_part_way, seed=5), allow_missing=True)


def test_a_run_stopped_part_way_draws_accuracy_vs_length_at_the_lengths_it_has(stopped):
    """Whole datasets missing, a different task at each length (every figure draws from such a
    table in the slow test below): the mean over tasks leaves out the lengths lacking some, instead
    of averaging over the tasks all lengths share (none here)."""
    assert (stopped.table["status"] == "missing").sum() > 1000
    out = build("accuracy_vs_length", stopped, draw=False)
    assert set(out.data["length"]) == {GRID_LENGTHS[0]}
    assert any("left out" in n and length_label(GRID_LENGTHS[-1]) in n for n in out.notes), out.notes
    assert len(out.missing) > 0


def legends_over_titles(fig) -> list[str]:
    """The panel titles a legend covers, in the figure as saved (laid out, footnote strip included)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # save() closed the figure: a canvas to measure on
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [
        ax.title.get_text()
        for legend in legends
        for ax in fig.axes
        if ax.title.get_text() and legend.get_window_extent(renderer).overlaps(ax.title.get_window_extent(renderer))
    ]


def test_a_single_model_accuracy_vs_length_keeps_its_legend_off_the_title(complete, tmp_path):
    """One model = one panel: the legend has a column of its own instead of covering the title."""
    one = complete.table[complete.table["model"] == "qwen2.5-7b"]
    out = build("accuracy_vs_length", inputs_of((one, complete.samples)))
    assert len([ax for ax in out.fig.axes if ax.lines]) == 1
    save(out, "accuracy_vs_length", data_path=str(tmp_path / "a.csv"), png_path=str(tmp_path / "a.png"))
    assert legends_over_titles(out.fig) == []


def test_each_figure_reads_only_its_runs():
    plan = runs_per_figure(CONFIG)
    every = len(expand_runs(CONFIG))
    assert plan["taxonomy"] == plan["tasks"] == plan["models"] == plan["pattern_masks"] == plan["cost_breakdown"] == []
    assert 0 < len(plan["isoflops"]) < every / 2
    assert all("/dense/" in p or "/vertical_slash/" in p or "/quest/" in p for p in plan["isoflops"])
    assert all("/dense/" in p for p in plan["prompt_lengths"])
    assert all("length~16384/qwen2.5-7b/" in p for p in plan["ablation_block_size"])
    assert not any("length~128000" in p for p in plan["task_comparison"])


def test_length_labels():
    assert [length_label(x) for x in (16384, 65536, 128000, 131072, 500)] == ["16k", "64k", "128k", "128k", "500"]


@pytest.mark.slow
@pytest.mark.filterwarnings("error:No artists with labels found")  # an empty legend: a panel without its lines
@pytest.mark.parametrize("form", ["complete", "jittered", "partial", "stopped"])
def test_every_figure_draws_and_saves_at_paper_scale(form, request, tmp_path):
    inputs = request.getfixturevalue(form)
    for name in NAMES:
        out = build(name, inputs)
        assert not out.data.empty, (form, name)
        files = {"data_path": str(tmp_path / f"{name}.csv")}
        if out.fig is not None:
            files.update(pdf_path=str(tmp_path / f"{name}.pdf"), png_path=str(tmp_path / f"{name}.png"))
        else:
            files["md_path"] = str(tmp_path / f"{name}.md")
        save(out, name, **files)
        for f in files.values():
            assert Path(f).stat().st_size > 0, (form, name, f)
        assert len(pd.read_csv(files["data_path"])) == len(out.data)
        if out.fig is not None:
            assert legends_over_titles(out.fig) == [], (form, name)
