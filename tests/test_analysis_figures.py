"""Every figure and table built from a SYNTHETIC results table made here (not model outputs).

Structure: scores follow a known logit-linear law in log params, log length and log compression with
per-task offsets; the prefill method loses accuracy with compression, so paired tests have gaps to find.
"""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sparse_frontier.analysis import figures, scaling, stats
from sparse_frontier.analysis.aggregate import KEY_COLUMNS
from sparse_frontier.analysis.figures import scaling_law

REPO = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())
MODELS = ["qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b"]
LENGTHS = [16384, 32768, 65536]
TASKS = {"ruler_niah": 1.5, "ruler_vt": -0.5}  # synthetic per-task offsets
ALPHA, BETA, GAMMA = 0.6, -0.4, -0.8  # synthetic law: log params, log length, log compression
METHODS = [("dense", "none", "none", 0.0)] + [
    (m, f"budget~{s}", phase, s)
    for m, phase in [("vs_synth", "prefill"), ("quest_synth", "decode")]
    for s in (0.5, 0.8, 0.9, 0.95)
]


def law(task, params, length, compression):
    eta = ALPHA * np.log(params / 1e9) + BETA * np.log(length / 1024) + GAMMA * np.log(compression) + TASKS[task]
    return 1 / (1 + np.exp(-eta))


def synthetic(samples=40, seed=0):
    """(runs table, per-sample table): per-sample scores Bernoulli(law); sparse samples are the dense
    ones with extra failures, so paired tests see the loss."""
    rng = np.random.default_rng(seed)
    params = {m: CONFIG["models"][m]["architecture"]["params"] for m in MODELS}
    runs, rows = [], []
    for task in TASKS:
        for model in MODELS:
            for length in LENGTHS:
                u = rng.random(samples)
                for method, args, phase, sp in METHODS:
                    score = (u < law(task, params[model] / 1e0, length, 1 / (1 - sp))).astype(float)
                    key = dict(
                        task=task,
                        task_args="none",
                        length=length,
                        model=model,
                        samples=samples,
                        seed=43,
                        method=method,
                        method_args=args,
                        max_tokens=64,
                    )
                    rows.append(
                        pd.DataFrame(
                            {
                                **key,
                                "id": range(samples),
                                "score": score,
                                "answer_found": True,
                                "sparsity": sp,
                                "prompt_tokens": rng.integers(int(0.95 * length), length + 1, samples),
                                "question_tokens": 300,
                                "output_tokens": 10,
                            }
                        )
                    )
                    runs.append(
                        {
                            **key,
                            "score": score.mean(),
                            "score_se": score.std(ddof=1) / np.sqrt(samples),
                            "score_std": score.std(ddof=1),
                            "missing_answers": 0,
                            "sparsity": sp,
                            "prompt_tokens": 0.97 * length,
                            "output_tokens": 10.0,
                            "experiments": "main",
                            "phase": phase,
                        }
                    )
    return pd.DataFrame(runs)[KEY_COLUMNS + [c for c in runs[0] if c not in KEY_COLUMNS]], pd.concat(
        rows, ignore_index=True
    )


@pytest.fixture(scope="module")
def data():
    return synthetic()


def inputs(data, **settings):
    config = copy.deepcopy(CONFIG)
    # The synthetic methods are not the paper config's phase_methods (vertical_slash / quest): use all.
    config["figures"] = {**config.get("figures", {}), "phase_methods": {}, **settings}
    return figures.Inputs.from_config(config, data[0].copy(), data[1].copy())


@pytest.mark.parametrize("name", list(figures.FIGURES) + list(figures.TABLES))
def test_every_figure_and_table_builds(name, data, tmp_path):
    out = figures.build(name, inputs(data))
    assert not out.data.empty and out.missing == []
    paths = {"data_path": str(tmp_path / f"{name}.csv")}
    if out.fig is not None:
        paths.update(pdf_path=str(tmp_path / f"{name}.pdf"), png_path=str(tmp_path / f"{name}.png"))
    else:
        paths["md_path"] = str(tmp_path / f"{name}.md")
    figures.save(out, name, **paths)
    for p in paths.values():
        assert Path(p).stat().st_size > 0
    assert len(pd.read_csv(paths["data_path"])) == len(out.data)


def test_isocost_frontier_and_costs(data):
    out = figures.build("isocost", inputs(data))
    d = out.data
    assert set(d["phase"]) == {"prefill", "decode"}
    # sparser runs of one model cost less; the frontier is non-decreasing in score along cost
    g = d[(d["phase"] == "decode") & (d["model"] == "qwen2.5-7b") & (d["length"] == 65536)].sort_values("sparsity")
    assert g["cost"].is_monotonic_decreasing
    for _, panel in d.groupby(["phase", "length"]):
        f = panel[panel["on_frontier"].astype(bool)].sort_values("cost")
        assert f["score"].is_monotonic_increasing and len(f) >= 1


def test_scaling_law_recovers_known_coefficients():
    runs, _ = synthetic()
    prefill = runs[runs["phase"].isin(["prefill", "none"])].copy()
    prefill["params"] = prefill["model"].map(lambda m: CONFIG["models"][m]["architecture"]["params"])
    prefill["compression"] = 1 / (1 - prefill["sparsity"])
    # noise-free scores from the law: the fit must return the synthetic coefficients
    prefill["score"] = [
        law(t, p, L, c)
        for t, p, L, c in zip(prefill["task"], prefill["params"], prefill["length"], prefill["compression"])
    ]
    result = scaling.fit(prefill)
    assert result.params["log_params"] == pytest.approx(ALPHA, abs=1e-3)
    assert result.params["log_length"] == pytest.approx(BETA, abs=1e-3)
    assert result.params["log_compression"] == pytest.approx(GAMMA, abs=1e-3)
    offset = -ALPHA * np.log(1e9) - BETA * np.log(1024)
    assert result.params["task[ruler_vt]"] == pytest.approx(TASKS["ruler_vt"] + offset, abs=1e-3)
    metrics, _ = scaling.holdout_validation(prefill)
    assert set(metrics["held_out"]) == {"params", "length", "compression"}
    assert (metrics["mae"] < 1e-3).all() and (metrics["spearman_rho"].dropna() > 0.99).all()


def test_scaling_law_on_noisy_samples_is_close(data):
    table, _, _ = scaling_law.fits(inputs(data))
    est = table[(table["kind"] == "coefficient") & (table["statistic"] == "estimate")].set_index(["phase", "term"])[
        "value"
    ]
    assert est[("prefill", "log_compression")] == pytest.approx(GAMMA, abs=0.35)
    r2 = table[(table["statistic"] == "r2") & (table["kind"] == "fit")].set_index("phase")["value"]
    assert (r2 > 0.5).all()


@pytest.mark.parametrize("test", ["wilcoxon", "bootstrap"])
def test_paired_test_finds_a_real_gap_and_not_a_null_one(test):
    rng = np.random.default_rng(1)
    dense = (rng.random(100) < 0.9).astype(float)
    worse = dense * (rng.random(100) > 0.4)  # synthetic: 40% of the successes lost
    assert stats.paired_pvalue(dense, worse, test, resamples=2000) < 0.01
    assert stats.paired_pvalue(dense, dense, test, resamples=2000) > 0.5
    noise = dense.copy()
    ones, zeros = np.flatnonzero(dense == 1)[:3], np.flatnonzero(dense == 0)[:3]
    noise[ones], noise[zeros] = 0, 1  # as many losses as gains: no systematic loss
    assert stats.paired_pvalue(dense, noise, test, resamples=2000) > 0.05
    with pytest.raises(ValueError, match="unknown test 'ttest'"):
        stats.paired_pvalue(dense, worse, "ttest")


def test_max_compression_interpolates_between_levels():
    levels = pd.DataFrame({"compression": [2.0, 5.0, 10.0], "p_value": [0.5, 0.2, 0.01]})
    c, censored = stats.max_retained_compression(levels, 0.05)
    assert c == pytest.approx(5 * 2 ** ((0.2 - 0.05) / (0.2 - 0.01))) and not censored
    c, censored = stats.max_retained_compression(levels.assign(p_value=0.9), 0.05)
    assert c == 10 and censored
    assert stats.max_retained_compression(levels.assign(p_value=0.0), 0.05)[0] < 2


def test_max_compression_figure_names_its_test(data):
    out = figures.build("max_compression", inputs(data, test="bootstrap", alpha=0.01, bootstrap_resamples=500))
    assert set(out.data["test"]) == {"bootstrap"} and set(out.data["alpha"]) == {0.01}
    assert "bootstrap" in out.fig._suptitle.get_text()
    assert (out.data["max_compression"] >= 1).all()


def test_missing_runs_fail_or_are_listed(data):
    table, samples = data
    gone = table.index[(table["method"] == "vs_synth") & (table["task"] == "ruler_vt")][:1]
    # A run absent from the table: every line of the panel averages the cells all lines have, and says so.
    out = figures.build("isoflops", inputs((table.drop(gone), samples)))
    assert out.missing == [] and any("averaged over the 1 of 2 (task) cells" in n for n in out.notes)
    marked = table.assign(status="ok")
    marked.loc[gone, "status"] = "missing"
    with pytest.raises(ValueError, match=r"(?s)1 runs missing.*ruler_vt/none/length~16384/qwen2.5-7b/seed~43/vs_synth"):
        figures.build("task_comparison", inputs((marked, samples)))
    out = figures.build("task_comparison", inputs((marked, samples), allow_missing=True))
    assert any("vs_synth" in m for m in out.missing)


def test_ablation_lines_per_parameter_value(data):
    table, samples = data
    table = table.assign(experiments="abl")
    out = figures.build(
        "ablation_budget", inputs((table, samples), ablations={"budget": {"experiment": "abl", "parameter": "budget"}})
    )
    assert set(out.data["value"]) == {"0.5", "0.8", "0.9", "0.95"}  # one line per value of the knob
    assert "mean over tasks" in set(out.data["task"])
    with pytest.raises(ValueError, match="unknown ablation 'nope'"):
        figures.build("ablation_nope", inputs(data))


def test_unknown_figure_names_the_choices(data):
    with pytest.raises(ValueError, match="unknown figure or table 'isoflop'.*isoflops"):
        figures.build("isoflop", inputs(data))


def test_entries_of_one_task_are_drawn_apart(data):
    """Two tasks entries of one registered task (the demo's one- and two-needle NIAH) stay two tasks
    in the figures, under their config names, with their task's retrieval type."""
    from sparse_frontier import paths
    from sparse_frontier.config import resolve_task

    entries = {
        "niah": {"task": "ruler_niah", "params": {"num_queries": 1}},
        "niah_2q": {"task": "ruler_niah", "params": {"num_queries": 2}},
    }
    args = {name: paths.format_args(resolve_task(entry)[1]) for name, entry in entries.items()}
    as_variants = {"ruler_niah": args["niah"], "ruler_vt": args["niah_2q"]}  # the synthetic tasks become the two
    table, samples = (f.assign(task_args=f["task"].map(as_variants), task="ruler_niah") for f in data)
    config = copy.deepcopy(CONFIG)
    config["tasks"].update(entries)
    config["figures"] = {**config.get("figures", {}), "phase_methods": {}}
    built = {
        name: figures.build(name, figures.Inputs.from_config(config, table.copy(), samples.copy())).data
        for name in list(figures.FIGURES) + list(figures.TABLES)
    }
    per_task = built["task_comparison"]
    assert set(per_task["task"]) == {"niah", "niah_2q"}
    assert per_task.groupby("task")["group"].first().tolist() == ["retrieval", "retrieval"]
    assert {"niah", "niah_2q"} <= set(built["main_results"].columns)
    assert set(built["max_compression"]["task"]) == {"niah", "niah_2q"}  # paired per-sample tests per entry
    assert set(built["prompt_lengths"]["task"]) == {"niah", "niah_2q"}
    # one entry of the task alone keeps the registered name (the paper grid's figures are unchanged)
    alone = table[table["task_args"] == args["niah"]]
    one = figures.build("task_comparison", figures.Inputs.from_config(config, alone, samples)).data
    assert set(one["task"]) == {"ruler_niah"}


@pytest.mark.parametrize("name", ["task_comparison", "isoflops"])  # tight layout; constrained layout
def test_a_long_footnote_sits_below_every_axis(data, name):
    """A partial run's note (missing runs, dropped cells) can run to tens of lines: the figure grows
    to hold it, and it covers no axis, tick label or axis label."""
    from sparse_frontier.analysis.figures.common import fit_width

    table = data[0].assign(status="ok")
    gone = table.index[(table["method"] != "dense") & (table["task"] == "ruler_vt")][:12]
    table.loc[gone, "status"] = "missing"
    out = figures.build(name, inputs((table, data[1]), allow_missing=True))
    out.notes += [f"a note that wraps over several lines of the figure, number {i}, " * 8 for i in range(6)]
    note = fit_width(out.fig, figures.footnote(out), 5)
    assert note.count("\n") >= 10
    height = out.fig.get_size_inches()[1]
    figures.place_footnote(out.fig, note)
    assert out.fig.get_size_inches()[1] > height + 1
    out.fig.canvas.draw()
    renderer = out.fig.canvas.get_renderer()
    text = out.fig.texts[-1].get_window_extent(renderer)
    for ax in out.fig.axes:
        if ax.get_visible() and ax.axison:
            assert not text.overlaps(ax.get_tightbbox(renderer)), ax.get_title()
    assert text.y0 >= 0


def test_a_panel_that_loses_a_length_says_which_it_averages(data):
    """A level one method cannot reach at one length (its measured sparsity short of the target by more
    than the interpolation tolerance, as FlexPrefill 0.95 at 8k on the GPU demo) drops that length
    from its whole panel: the panel's points and title name the lengths they average; the others keep all."""
    import matplotlib.pyplot as plt

    table, samples = (f.copy() for f in data)
    short = (table["method"] == "vs_synth") & (table["length"] == 65536) & (table["method_args"] == "budget~0.95")
    table.loc[short, "sparsity"] = 0.9
    given = inputs((table, samples))
    out = figures.build("task_comparison", given)
    d = out.data
    assert set(d.loc[d["row"] == "prefill", "panel_lengths"]) == {"16k 32k"}
    assert set(d.loc[d["row"] == "decode", "panel_lengths"]) == {"16k 32k 64k"}
    assert set(d["lengths"]) == {"16k 32k 64k"}
    fig = figures.FIGURES["task_comparison"].draw(out, given)
    titles = [ax.get_title() for ax in fig.axes]
    assert sum("(16k, 32k only)" in t for t in titles) == 2  # the two prefill panels, not the decode ones
    plt.close(fig)
