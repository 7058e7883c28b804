"""Figures and tables drawn from the tidy tables; each returns the figure and exactly the data it plots.

Every function takes :class:`Inputs` (runs table, per-sample table, ``figures`` settings of the config,
architectures) and returns :class:`Output`. Runs missing from the results (``status == "missing"`` rows,
or an average lacking some of its runs) are collected in ``Output.missing``: :func:`draw` then fails
with the list, or, with ``allow_missing``, draws what exists and prints the list under the figure.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from sparse_frontier import paths  # noqa: E402
from sparse_frontier.analysis import cost, masks, scaling, stats  # noqa: E402
from sparse_frontier.analysis.cost import Architecture  # noqa: E402
from sparse_frontier.io import write_text_atomic  # noqa: E402

log = logging.getLogger(__name__)
RUN_KEYS = ["task", "task_args", "length", "model", "samples", "seed", "method", "method_args", "max_tokens"]
DENSE_KEYS = ["task", "task_args", "length", "model", "samples", "seed", "max_tokens"]
DEFAULTS = {
    "allow_missing": False, "test": "wilcoxon", "alpha": 0.05, "bootstrap_resamples": 10000,
    "cost_batch_size": 64, "breakdown_lengths": [16384, 32768, 65536, 131072], "breakdown_batch_sizes": [1, 8, 64],
    "breakdown_compression": 5, "phase_methods": {}, "easy_tasks": ["story_retrieval", "ruler_niah"],
    "hard_tasks": ["ruler_vt", "story_filtering"], "ablations": {},
}


@dataclass
class Inputs:
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples: Optional[pd.DataFrame] = None
    settings: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # name -> Architecture

    def __post_init__(self):
        self.settings = {**DEFAULTS, **(self.settings or {})}

    @classmethod
    def from_config(cls, config: dict, table: pd.DataFrame | None = None, samples=None) -> "Inputs":
        models = {n: Architecture.from_config(m, n) for n, m in config["models"].items() if "architecture" in m}
        return cls(table if table is not None else pd.DataFrame(), samples, config.get("figures", {}), models)


@dataclass
class Output:
    data: pd.DataFrame
    fig: Any = None
    missing: list = field(default_factory=list)


# ---------------------------------------------------------------- helpers
def run_name(row) -> str:
    return f"{row['task']}/{row['task_args']}/length~{row['length']}/{row['model']}/seed~{row['seed']}/{row['method']}/{row['method_args']}"


def method_label(method: str, method_args: str) -> str:
    return method if method_args == paths.NO_ARGS else f"{method} ({method_args})"


def with_phase(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``phase`` (prefill / decode / none) from the table or from the method registry."""
    if "phase" not in table:
        from sparse_frontier.attention import get_method_class

        table = table.assign(phase=[get_method_class(m).phase for m in table["method"]])
    phase = table["phase"].map(lambda p: cost.METHOD_PHASE.get(p, "none"))
    return table.assign(phase=phase, compression=1.0 / (1.0 - table["sparsity"].fillna(0).clip(upper=1 - 1e-9)))


def split_missing(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    if "status" not in table or table.empty:
        return table, []
    gone = table["status"] == "missing"
    return table[~gone].copy(), [run_name(r) for _, r in table[gone].iterrows()]


def complete_mean(df, by, over, values, missing: list, expected=None):
    """Mean of ``values`` over ``over`` per ``by`` group; groups lacking some ``over`` values are reported."""
    expected = expected if expected is not None else set(map(tuple, df[over].drop_duplicates().to_numpy()))
    rows = []
    for key, g in df.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        have = set(map(tuple, g[over].drop_duplicates().to_numpy()))
        for lack in sorted(expected - have):
            missing.append(", ".join(f"{k}={v}" for k, v in zip(list(by) + list(over), key + lack)))
        row = dict(zip(by, key), **{v: g[v].mean() for v in values}, runs=len(g))
        if "score_se" in g:
            row["score_se"] = float(np.sqrt((g["score_se"] ** 2).sum()) / len(g))
        rows.append(row)
    return pd.DataFrame(rows)


def phase_runs(inputs: Inputs, table: pd.DataFrame, phase: str) -> pd.DataFrame:
    """Dense runs plus the runs of the phase's methods (config figures.phase_methods or all)."""
    chosen = inputs.settings["phase_methods"].get(phase)
    keep = table["phase"] == phase
    if chosen:
        keep &= table["method"].isin(chosen)
    return table[keep | (table["method"] == "dense")]


def arch(inputs: Inputs, model: str) -> Architecture:
    if model not in inputs.models:
        raise ValueError(f"model {model!r} has no architecture in the config; models with one: {sorted(inputs.models)}")
    return inputs.models[model]


def with_dense(table: pd.DataFrame) -> pd.DataFrame:
    """Sparse runs with the dense score of the same prompts (error = dense - sparse)."""
    dense = table[table["method"] == "dense"][DENSE_KEYS + ["score"]].rename(columns={"score": "dense_score"})
    out = table[table["method"] != "dense"].merge(dense, on=DENSE_KEYS, how="inner")
    return out.assign(error=out["dense_score"] - out["score"])


def grid(rows, cols, w=3.8, h=3.2, **kw):
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False, **kw)
    return fig, axes


def length_label(x: int) -> str:
    return f"{x // 1024}k" if x % 1024 == 0 else str(x)


def need(table: pd.DataFrame, what: str) -> None:
    if table.empty:
        raise ValueError(f"no runs for {what} in the results table")


# ---------------------------------------------------------------- figures
def accuracy_vs_length(inputs: Inputs) -> Output:
    """Mean score vs target length, one line per method, one panel per (task, model)."""
    table, missing = split_missing(inputs.table)
    need(table, "accuracy_vs_length")
    table = table.assign(method_label=[method_label(m, a) for m, a in zip(table["method"], table["method_args"])])
    group = ["task", "model", "method_label", "length"]
    data = (
        table.assign(weighted=table["score"] * table["samples"], var_sum=(table["score_se"] ** 2) * table["samples"] ** 2)
        .groupby(group, as_index=False)
        .agg(samples=("samples", "sum"), weighted=("weighted", "sum"), var_sum=("var_sum", "sum"), runs=("seed", "count"))
    )
    data["score"] = data["weighted"] / data["samples"]
    data["score_se"] = data["var_sum"] ** 0.5 / data["samples"]
    data = data[group + ["runs", "samples", "score", "score_se"]]
    panels = list(data[["task", "model"]].drop_duplicates().itertuples(index=False))
    fig, axes = grid(1, len(panels), 4.5, 3.6, sharey=True)
    palette = dict(zip(sorted(data["method_label"].unique()), sns.color_palette("colorblind", 20)))
    for ax, (task, model) in zip(axes[0], panels):
        panel = data[(data["task"] == task) & (data["model"] == model)]
        for label, line in panel.groupby("method_label"):
            line = line.sort_values("length")
            ax.errorbar(line["length"], line["score"], yerr=line["score_se"], marker="o", capsize=3, label=label, color=palette[label])
        ticks = sorted(panel["length"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [length_label(x) for x in ticks])
        ax.set(title=f"{task} · {model}", xlabel="target prompt length (tokens)", ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score (mean ± SE)")
    axes[0][-1].legend(title="method", fontsize=8)
    return Output(data, fig, missing)


def _iso(inputs: Inputs, metric: str, batch: int) -> Output:
    table, missing = split_missing(with_phase(inputs.table))
    need(table, "the iso-cost plots")
    parts = []
    for phase in cost.PHASES:
        runs = phase_runs(inputs, table, phase)
        if not (runs["phase"] == phase).any():
            continue
        mean = complete_mean(runs, ["model", "length", "method", "method_args"], ["task"], ["score", "sparsity", "compression"], missing)
        mean["phase"] = phase
        mean["cost"] = [cost.phase_cost(arch(inputs, m), phase, int(L), 1 - s, batch, metric)
                        for m, L, s in zip(mean["model"], mean["length"], mean["sparsity"].fillna(0))]
        for _, g in mean.groupby("length"):
            best, front = -np.inf, []
            for i, r in g.sort_values(["cost", "score"], ascending=[True, False]).iterrows():
                if r["score"] > best:
                    best, front = r["score"], front + [i]
            mean.loc[g.index, "on_frontier"] = g.index.isin(front)
        parts.append(mean)
    if not parts:
        raise ValueError("no sparse runs of any phase in the results: nothing to compare with dense")
    data = pd.concat(parts, ignore_index=True)
    phases, lengths = list(data["phase"].unique()), sorted(data["length"].unique())
    fig, axes = grid(len(phases), len(lengths), 4.2, 3.4)
    markers = dict(zip(sorted(data["model"].unique(), key=lambda m: inputs.models[m].params), "osD^vP*X"))
    norm = matplotlib.colors.LogNorm(1, max(20.0, data["compression"].max()))
    for r, phase in enumerate(phases):
        for c, length in enumerate(lengths):
            ax, g = axes[r][c], data[(data["phase"] == phase) & (data["length"] == length)]
            for model, m in g.groupby("model"):
                sc = ax.scatter(m["cost"], m["score"], c=m["compression"], cmap="viridis", norm=norm, marker=markers[model],
                                edgecolor="k", linewidth=0.4, label=model)
            f = g[g["on_frontier"].astype(bool)].sort_values("cost")
            ax.plot(f["cost"], f["score"], ":", color="k", lw=1)
            unit = "FLOPs" if metric == "flops" or phase == "prefill" else "elements moved"
            ax.set(xscale="log", title=f"{phase} · {length_label(int(length))}", xlabel=f"{phase} {unit} (batch {batch})")
            ax.grid(alpha=0.3)
        axes[r][0].set_ylabel("mean score over tasks")
    fig.colorbar(sc, ax=axes, label="compression ratio")
    axes[0][0].legend(fontsize=7, title="model")
    return Output(data, fig, missing)


def isoflops(inputs: Inputs) -> Output:
    """v1 Fig 2: score vs FLOPs at batch 1 (decode: FLOPs of one step), Pareto frontier dotted."""
    return _iso(inputs, "flops", 1)


def isocost(inputs: Inputs) -> Output:
    """v3 Fig 2: score vs cost (prefill FLOPs; decode memory moved) at the configured batch size."""
    return _iso(inputs, "cost", int(inputs.settings["cost_batch_size"]))


def max_compression(inputs: Inputs) -> Output:
    """v1 Fig 3: largest compression not significantly worse than dense, per model, length and task."""
    s = inputs.settings
    table, missing = split_missing(inputs.table)
    if inputs.samples is None:
        raise ValueError("max_compression needs the per-sample table (paired tests)")
    sig = stats.significance_table(inputs.samples, s["test"], s["alpha"], s["bootstrap_resamples"])
    need(sig, "max_compression (sparse runs with a dense twin)")
    sig["phase"] = sig["method"].map(with_phase(table).drop_duplicates("method").set_index("method")["phase"])
    rows = []
    for key, g in sig.groupby(["phase", "method", "model", "length", "task"]):
        if s["phase_methods"].get(key[0]) and key[1] not in s["phase_methods"][key[0]]:
            continue
        c, censored = stats.max_retained_compression(g, s["alpha"])
        rows.append(dict(zip(["phase", "method", "model", "length", "task"], key), max_compression=c, censored=censored, levels=len(g)))
    data = pd.DataFrame(rows)
    methods = list(data["method"].unique())
    models = sorted(data["model"].unique(), key=lambda m: inputs.models[m].params if m in inputs.models else 0)
    lengths = sorted(data["length"].unique())
    fig, axes = grid(1, len(methods), 5, 3.6, sharey=True)
    colors = dict(zip(models, sns.color_palette("colorblind", len(models))))
    width = 0.8 / len(models)
    for ax, method in zip(axes[0], methods):
        for j, model in enumerate(models):
            for i, length in enumerate(lengths):
                g = data[(data["method"] == method) & (data["model"] == model) & (data["length"] == length)]
                if g.empty:
                    continue
                x = i + (j - (len(models) - 1) / 2) * width
                ax.bar(x, g["max_compression"].mean(), width, yerr=g["max_compression"].std(ddof=0), color=colors[model],
                       alpha=0.6, capsize=2, label=model if i == 0 else None)
                ax.scatter(np.full(len(g), x), g["max_compression"], s=8, color="k", zorder=3)
        ax.set_xticks(range(len(lengths)), [length_label(int(x)) for x in lengths])
        ax.set(title=method, xlabel="length")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("max compression retained")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{s['test']} paired one-sided test, alpha = {s['alpha']}", fontsize=9)
    data["test"], data["alpha"] = s["test"], s["alpha"]
    return Output(data, fig, missing)


def task_comparison(inputs: Inputs) -> Output:
    """v1 Fig 4: score vs compression per task, one line per method, SE band; over lengths and models."""
    table, missing = split_missing(with_phase(inputs.table))
    need(table, "task_comparison")
    data = complete_mean(table, ["task", "phase", "method", "method_args"], ["model", "length"], ["score", "compression"], missing)
    tasks = sorted(data["task"].unique())
    fig, axes = grid(1, len(tasks), 3.8, 3.2, sharey=True)
    methods = sorted(data.loc[data["method"] != "dense", "method"].unique())
    colors = dict(zip(methods, sns.color_palette("colorblind", max(len(methods), 1))))
    for ax, task in zip(axes[0], tasks):
        t = data[data["task"] == task]
        dense = t[t["method"] == "dense"]
        for method in methods:
            line = pd.concat([dense, t[t["method"] == method]]).sort_values("compression")
            ax.plot(line["compression"], line["score"], marker="o", ms=3, color=colors[method], label=method)
            ax.fill_between(line["compression"], line["score"] - line["score_se"], line["score"] + line["score_se"], color=colors[method], alpha=0.2)
        ax.scatter(dense["compression"], dense["score"], color="k", zorder=3, label="dense")
        ax.set(xscale="log", title=task, xlabel="compression ratio")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score (mean ± SE)")
    axes[0][-1].legend(fontsize=7)
    return Output(data, fig, missing)


def length_effect(inputs: Inputs) -> Output:
    """v3 Fig 4: relative error (p_dense - p_sparse)/p_dense and absolute error vs sparsity, per length."""
    table, missing = split_missing(with_phase(inputs.table))
    paired = with_dense(table)
    need(paired, "length_effect (sparse runs with a dense twin)")
    data = complete_mean(paired, ["method", "method_args", "length"], ["task", "model"], ["score", "dense_score", "sparsity"], missing)
    data["absolute_error"] = data["dense_score"] - data["score"]
    data["relative_error"] = data["absolute_error"] / data["dense_score"].replace(0, np.nan)
    methods = sorted(data["method"].unique())
    fig, axes = grid(2, len(methods), 4, 3.2)
    for c, method in enumerate(methods):
        for length, line in data[data["method"] == method].groupby("length"):
            line = line.sort_values("sparsity")
            for r, col in enumerate(["relative_error", "absolute_error"]):
                axes[r][c].plot(line["sparsity"], line[col], marker="o", ms=3, label=length_label(int(length)))
        for r, col in enumerate(["relative error", "absolute error"]):
            axes[r][c].set(title=method, xlabel="sparsity", ylabel=col)
            axes[r][c].grid(alpha=0.3)
    axes[0][-1].legend(title="length", fontsize=7)
    return Output(data, fig, missing)


def model_size(inputs: Inputs) -> Output:
    """v3 Figs 20-21: error (dense - sparse) vs sparsity per model size; easy vs hard tasks."""
    s = inputs.settings
    table, missing = split_missing(with_phase(inputs.table))
    paired = with_dense(table)
    groups = {"easy": s["easy_tasks"], "hard": s["hard_tasks"]}
    parts = []
    for name, tasks in groups.items():
        sub = paired[paired["task"].isin(tasks)]
        if not sub.empty:
            m = complete_mean(sub, ["method", "method_args", "model"], ["task", "length"], ["error", "sparsity"], missing)
            parts.append(m.assign(tasks=name))
    if not parts:
        raise ValueError(f"no sparse runs on the easy tasks {groups['easy']} or hard tasks {groups['hard']} "
                         "(config figures.easy_tasks / hard_tasks)")
    data = pd.concat(parts, ignore_index=True)
    methods, kinds = sorted(data["method"].unique()), [k for k in groups if (data["tasks"] == k).any()]
    fig, axes = grid(len(methods), len(kinds), 4, 3.2)
    for r, method in enumerate(methods):
        for c, kind in enumerate(kinds):
            ax = axes[r][c]
            for model, line in data[(data["method"] == method) & (data["tasks"] == kind)].groupby("model"):
                line = line.sort_values("sparsity")
                ax.plot(line["sparsity"], line["error"], marker="o", ms=3, label=model)
            ax.set(title=f"{method} · {kind} tasks", xlabel="sparsity", ylabel="dense − sparse score")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return Output(data, fig, missing)


def cost_breakdown(inputs: Inputs) -> Output:
    """v3 Figs 12-14: attention share of prefill, KV share of decode, speedups, dense vs sliding window."""
    s = inputs.settings
    lengths, batches, comp = s["breakdown_lengths"], s["breakdown_batch_sizes"], float(s["breakdown_compression"])
    full = {n: a for n, a in inputs.models.items() if a.sliding_window is None}
    if not full:
        raise ValueError("no model with a full-attention architecture in the config (models.<name>.architecture)")
    rows = []
    for n, a in full.items():
        for L in lengths:
            rows.append(dict(panel="attention share of prefill FLOPs", model=n, length=L, batch=1, value=cost.attention_share(a, L)))
            rows.append(dict(panel=f"prefill speedup at {comp:g}x", model=n, length=L, batch=1, value=cost.prefill_speedup(a, L, comp)))
            for b in batches:
                rows.append(dict(panel="KV share of decode traffic", model=n, length=L, batch=b, value=cost.kv_share(a, L, b)))
                rows.append(dict(panel=f"decode speedup at {comp:g}x", model=n, length=L, batch=b, value=cost.decode_speedup(a, L, comp, b)))
    pair = s.get("sliding_window_pair") or []
    for n in pair:
        a, b = arch(inputs, n), int(s["cost_batch_size"])
        for L in lengths:
            rows.append(dict(panel="dense vs sliding window: attention share", model=n, length=L, batch=1, value=cost.attention_share(a, L)))
            rows.append(dict(panel=f"dense vs sliding window: KV share (batch {b})", model=n, length=L, batch=b, value=cost.kv_share(a, L, b)))
    data = pd.DataFrame(rows)
    panels = list(data["panel"].unique())
    fig, axes = grid(1, len(panels), 3.8, 3.3)
    for ax, panel in zip(axes[0], panels):
        g = data[data["panel"] == panel]
        by = "batch" if g["batch"].nunique() > 1 else "model"
        if by == "batch":  # mean over model sizes, one line per batch size
            g = g.groupby(["batch", "length"], as_index=False)["value"].mean()
        for key, line in g.groupby(by):
            ax.plot(line["length"], line["value"], marker="o", ms=3, label=f"{by} {key}" if by == "batch" else key)
        ax.set(xscale="log", title=panel, xlabel="length")
        ax.set_xticks(lengths, [length_label(x) for x in lengths])
        ax.minorticks_off()  # log-axis minor labels would overprint the length ticks
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return Output(data, fig)


def pattern_masks(inputs: Inputs) -> Output:
    """v3 Fig 1: the query-key pairs each method keeps on a toy example at several sparsities."""
    sparsities = [0.5, 0.7, 0.9]
    methods = list(masks.PREFILL + masks.DECODE)
    fig, axes = grid(len(methods), len(sparsities), 2.4, 2.4)
    rows = []
    for r, method in enumerate(methods):
        for c, sp in enumerate(sparsities):
            m = masks.mask_at_sparsity(method, sp)
            q, k = np.nonzero(m.numpy())
            rows.append(pd.DataFrame({"method": method, "target_sparsity": sp, "density": masks.density(m, method), "query": q, "key": k}))
            ax = axes[r][c]
            ax.imshow(m.numpy(), cmap="Greys", interpolation="nearest", aspect="auto")
            ax.set(xticks=[], yticks=[], title=f"{method} · {sp:g} ({1 - masks.density(m, method):.2f})")
            ax.title.set_fontsize(7)
        axes[r][0].set_ylabel("decode step" if method in masks.DECODE else "query")
    return Output(pd.concat(rows, ignore_index=True), fig)


def _scaling_runs(inputs: Inputs, phase: str, missing: list) -> pd.DataFrame:
    table, gone = split_missing(with_phase(inputs.table))
    missing.extend(gone)
    runs = phase_runs(inputs, table, phase)
    runs = runs.assign(params=[arch(inputs, m).params for m in runs["model"]])
    return runs.dropna(subset=["score"])


def scaling_law_fits(inputs: Inputs) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Per phase: coefficients, R^2 and hold-out metrics (long table) and every prediction."""
    stats_rows, preds, missing = [], [], []
    for phase in cost.PHASES:
        runs = _scaling_runs(inputs, phase, missing)
        if not (runs["phase"] == phase).any():
            continue
        result = scaling.fit(runs)
        full = runs.assign(predicted=scaling.predict(result, runs), held_out="none")
        stats_rows.append(dict(phase=phase, kind="fit", statistic="r2", value=scaling.r_squared(full["score"], full["predicted"])))
        for _, c in scaling.coefficients(result).iterrows():
            for col in ("estimate", "se", "ci_low", "ci_high"):
                stats_rows.append(dict(phase=phase, kind="coefficient", term=c["term"], statistic=col, value=c[col]))
        metrics, held = scaling.holdout_validation(runs)
        for _, m in metrics.iterrows():
            for col in ("spearman_rho", "spearman_p", "mae", "n"):
                stats_rows.append(dict(phase=phase, kind="holdout", held_out=m["held_out"], task=m["task"], statistic=col, value=m[col]))
        preds += [full.assign(phase=phase), held.assign(phase=phase)]
    if not preds:
        raise ValueError("no sparse runs of any phase in the results: the scaling law needs them")
    return pd.DataFrame(stats_rows), pd.concat(preds, ignore_index=True), missing


def scaling_law(inputs: Inputs) -> Output:
    """Tables 3/4/7: predicted vs true accuracy of the per-phase fit, full fit and held-out axes."""
    _, preds, missing = scaling_law_fits(inputs)
    data = preds[["phase", "held_out", "task", "model", "params", "length", "method", "method_args", "compression", "score", "predicted"]]
    phases, folds = list(data["phase"].unique()), list(data["held_out"].unique())
    fig, axes = grid(len(phases), len(folds), 3.2, 3.2)
    for r, phase in enumerate(phases):
        for c, fold in enumerate(folds):
            ax, g = axes[r][c], data[(data["phase"] == phase) & (data["held_out"] == fold)]
            for task, t in g.groupby("task"):
                ax.scatter(t["score"], t["predicted"], s=10, label=task)
            ax.plot([0, 1], [0, 1], "k:", lw=1)
            title = "full fit" if fold == "none" else f"held out: largest {fold}"
            ax.set(title=f"{phase} · {title}", xlabel="true score", ylabel="predicted", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
            ax.title.set_fontsize(8)
    axes[0][0].legend(fontsize=6)
    return Output(data, fig, missing)


# ---------------------------------------------------------------- tables
TAXONOMY = pd.DataFrame(
    [("prefill", "vertical_slash", "Vertical-Slash", "verticals and slashes", "uniform", "untouched"),
     ("prefill", "flexprefill", "FlexPrefill", "verticals and slashes", "threshold (cumulative mass)", "untouched"),
     ("prefill", "block_sparse", "Block-Sparse", "blocks", "uniform", "untouched"),
     ("decode", "snapkv", "SnapKV", "tokens", "uniform", "eviction after prefill"),
     ("decode", "ada_snapkv", "Ada-SnapKV", "tokens", "adaptive across heads", "eviction after prefill"),
     ("decode", "quest", "Quest", "pages", "uniform", "full cache kept, pages selected per step")],
    columns=["phase", "method", "name", "unit", "budget allocation", "KV cache"],
)
TASKS = pd.DataFrame(
    [("ruler_niah", "low", "low", "no"), ("ruler_vt", "high", "low", "no"), ("ruler_cwe", "low", "high", "no"),
     ("qa_squad", "low", "low", "yes"), ("qa_quality", "low", "low", "yes"), ("qa_toefl", "low", "low", "yes"),
     ("story_retrieval", "low", "low", "yes"), ("story_multihop", "high", "low", "yes"), ("story_filtering", "low", "high", "yes")],
    columns=["task", "dispersion", "scope", "natural"],
)


def taxonomy_table(inputs: Inputs) -> Output:
    """Table 1 (paper taxonomy), marking which methods the results hold."""
    have = set(inputs.table["method"]) if "method" in inputs.table else set()
    return Output(TAXONOMY.assign(in_results=TAXONOMY["method"].isin(have)))


def tasks_table(inputs: Inputs) -> Output:
    """Table 2 (dispersion / scope / natural), marking which tasks the results hold."""
    have = set(inputs.table["task"]) if "task" in inputs.table else set()
    return Output(TASKS.assign(in_results=TASKS["task"].isin(have)))


def prompt_lengths_table(inputs: Inputs) -> Output:
    """Table 5 analogue: prompt tokens (after the chat template) per task, model and target length."""
    if inputs.samples is None:
        raise ValueError("prompt_lengths needs the per-sample table")
    dense_or_all = inputs.samples.drop_duplicates(DENSE_KEYS + ["id"])
    g = dense_or_all.groupby(["task", "model", "length"])["prompt_tokens"]
    data = g.agg(["count", "mean", "std", "min", "max"]).reset_index()
    data["in_window"] = g.apply(lambda x: float(((x >= 0.95 * x.name[2]) & (x <= x.name[2])).mean())).to_numpy()
    _, missing = split_missing(inputs.table)
    return Output(data, missing=missing)


def pattern_params_table(inputs: Inputs) -> Output:
    """Table 6 analogue: the method settings actually run, with their measured sparsity per length."""
    table, missing = split_missing(with_phase(inputs.table))
    g = table.groupby(["phase", "method", "method_args", "length"])
    data = g.agg(runs=("score", "size"), sparsity_mean=("sparsity", "mean"), sparsity_min=("sparsity", "min"),
                 sparsity_max=("sparsity", "max"), compression=("compression", "mean")).reset_index()
    return Output(data, missing=missing)


def main_results_table(inputs: Inputs) -> Output:
    """Mean score per (model, method setting, length), per task and averaged over tasks."""
    table, missing = split_missing(with_phase(inputs.table))
    need(table, "main_results")
    by = ["model", "length", "phase", "method", "method_args"]
    mean = complete_mean(table, by, ["task"], ["score", "compression"], missing).rename(columns={"score": "mean_over_tasks"})
    per_task = table.pivot_table(index=by, columns="task", values="score", aggfunc="mean").reset_index()
    return Output(mean.merge(per_task, on=by), missing=missing)


def scaling_law_table(inputs: Inputs) -> Output:
    """Tables 3/4/7: coefficients, R^2, per-task Spearman rho (p) and MAE on each held-out axis."""
    data, _, missing = scaling_law_fits(inputs)
    return Output(data, missing=missing)


def ablation(inputs: Inputs, name: str) -> Output:
    """Figs 5-11: score vs compression per task, one line per value of the ablated parameter."""
    spec = inputs.settings["ablations"].get(name)
    if spec is None:
        raise ValueError(f"unknown ablation {name!r}; config figures.ablations defines: {sorted(inputs.settings['ablations'])}")
    table, missing = split_missing(with_phase(inputs.table))
    table = table[table["experiments"].fillna("").str.split(",").map(lambda e: spec["experiment"] in e)]
    param = spec["parameter"]
    table = table.assign(value=[paths.parse_args(a).get(param, "dense" if m == "dense" else None) for m, a in zip(table["method"], table["method_args"])])
    if table["value"].isna().all():
        raise ValueError(f"ablation {name!r}: no run of experiment {spec['experiment']!r} has parameter {param!r}")
    data = complete_mean(table, ["task", "method", "value", "method_args"], ["model", "length"], ["score", "compression"], missing)
    tasks = sorted(data["task"].unique())
    fig, axes = grid(1, len(tasks), 3.8, 3.2, sharey=True)
    for ax, task in zip(axes[0], tasks):
        t = data[data["task"] == task]
        dense = t[t["method"] == "dense"]
        for value, line in t[t["method"] != "dense"].groupby("value"):
            line = pd.concat([dense, line]).sort_values("compression")
            ax.plot(line["compression"], line["score"], marker="o", ms=3, label=f"{param}={value}")
        ax.set(xscale="log", title=task, xlabel="compression ratio")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score")
    axes[0][-1].legend(fontsize=7)
    return Output(data, fig, missing)


#: name -> (function, inputs it reads: "table", "samples" or "none")
FIGURES: dict[str, tuple[Callable, tuple]] = {
    "accuracy_vs_length": (accuracy_vs_length, ("table",)),
    "pattern_masks": (pattern_masks, ()),
    "isoflops": (isoflops, ("table",)),
    "isocost": (isocost, ("table",)),
    "max_compression": (max_compression, ("table", "samples")),
    "task_comparison": (task_comparison, ("table",)),
    "length_effect": (length_effect, ("table",)),
    "model_size": (model_size, ("table",)),
    "cost_breakdown": (cost_breakdown, ()),
    "scaling_law": (scaling_law, ("table",)),
}
TABLES: dict[str, tuple[Callable, tuple]] = {
    "taxonomy": (taxonomy_table, ("table",)),
    "tasks": (tasks_table, ("table",)),
    "prompt_lengths": (prompt_lengths_table, ("table", "samples")),
    "pattern_params": (pattern_params_table, ("table",)),
    "main_results": (main_results_table, ("table",)),
    "scaling_law_fit": (scaling_law_table, ("table",)),
}


def build(name: str, inputs: Inputs) -> Output:
    """Figure or table ``name`` (``ablation_<name>`` for the config's ablations), with missing runs checked."""
    if name.startswith("ablation_"):
        out = ablation(inputs, name.removeprefix("ablation_"))
    elif name in FIGURES or name in TABLES:
        out = (FIGURES.get(name) or TABLES[name])[0](inputs)
    else:
        raise ValueError(f"unknown figure or table {name!r}; available: {', '.join(sorted({**FIGURES, **TABLES}))}, ablation_<name>")
    out.missing = sorted(set(out.missing))
    if out.missing:
        listing = "\n  ".join(out.missing)
        if not inputs.settings["allow_missing"]:
            raise ValueError(f"{name}: {len(out.missing)} runs missing from the results (set figures.allow_missing "
                             f"to draw what exists):\n  {listing}")
        log.warning("%s: drawn without %d missing runs:\n  %s", name, len(out.missing), listing)
    return out


def save(out: Output, name: str, data_path: str, pdf_path: str | None = None, png_path: str | None = None, md_path: str | None = None) -> None:
    """Write the tidy CSV and the figure (PDF + PNG) or the markdown table, atomically."""
    write_text_atomic(data_path, out.data.to_csv(index=False))
    if md_path:
        text = out.data.to_markdown(index=False) if hasattr(out.data, "to_markdown") else out.data.to_string(index=False)
        if out.missing:
            text += "\n\nMissing runs (" + str(len(out.missing)) + "): " + "; ".join(out.missing) + "\n"
        write_text_atomic(md_path, text + "\n")
    if out.fig is not None:
        if out.missing:
            note = f"Missing ({len(out.missing)}): " + "; ".join(out.missing[:8]) + (" ..." if len(out.missing) > 8 else "")
            out.fig.text(0.01, 0.002, note, fontsize=6, color="firebrick", wrap=True, va="bottom")
        out.fig.tight_layout(rect=(0, 0.04 if out.missing else 0, 1, 1))
        for path in filter(None, (pdf_path, png_path)):
            tmp = f"{path}.tmp.{path.rsplit('.', 1)[-1]}"
            out.fig.savefig(tmp, dpi=150)
            os.replace(tmp, path)
        plt.close(out.fig)


def load_inputs(config: dict, table_path: str | None = None, samples_path: str | None = None) -> Inputs:
    table = pd.read_csv(table_path) if table_path else pd.DataFrame()
    samples = pd.read_csv(samples_path) if samples_path else None
    return Inputs.from_config(config, table, samples)
