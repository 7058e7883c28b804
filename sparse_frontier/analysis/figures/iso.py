"""isoFLOPS (v1 Fig 2) and isoCost (v3 Fig 2): mean score over tasks vs the cost of a run.

One panel per model family and length (the paper: Qwen at 32k and 128k, Gemma at 64k; families are
never mixed on one Pareto front), a row per phase (prefill: Vertical-Slash, decode: Quest, from
``figures.phase_methods``). Marker = model size, colour = nominal compression ratio, dotted line =
the panel's Pareto frontier. Costs include each method's index (Vertical-Slash estimation, Quest page
summaries), as the paper's cost model does.
"""

from __future__ import annotations

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd

from sparse_frontier import paths
from sparse_frontier.analysis import cost
from sparse_frontier.analysis.figures.common import (
    Inputs,
    Output,
    arch,
    common_mean,
    grid,
    length_label,
    markers,
    need,
    ordered_models,
    phase_runs,
    prepare,
)


def panels(inputs: Inputs, table: pd.DataFrame) -> list[tuple[str, int]]:
    """(family, length) panels: ``figures.iso_panels`` or every pair the results hold."""
    chosen = inputs.settings["iso_panels"]
    have = sorted(set(zip(table["family"], table["length"].astype(int))))
    if not chosen:
        return have
    return [(p["family"], int(p["length"])) for p in chosen]


def phase_method_runs(frame: pd.DataFrame, inputs: Inputs) -> pd.Series:
    """Main-grid dense runs and runs of each phase's methods (``figures.phase_methods``)."""
    keep = frame["main"] & ((frame["method"] == "dense") | frame["phase"].isin(cost.PHASES))
    for phase in cost.PHASES:
        methods = inputs.settings["phase_methods"].get(phase)
        if methods:
            keep &= (frame["phase"] != phase) | frame["method"].isin(methods)
    return keep


def runs(frame: pd.DataFrame, inputs: Inputs) -> pd.Series:
    """The runs the iso figures plot: main-grid dense and phase-method runs of the chosen panels."""
    chosen = inputs.settings["iso_panels"]
    keep = phase_method_runs(frame, inputs)
    if chosen:
        wanted = {(p["family"], int(p["length"])) for p in chosen}
        keep &= pd.Series([(f, int(L)) in wanted for f, L in zip(frame["family"], frame["length"])], index=frame.index)
    return keep


def frontier(panel: pd.DataFrame) -> pd.Series:
    """Points no cheaper point beats (the best score at or below each cost)."""
    best, front = -np.inf, []
    for i, r in panel.sort_values(["cost", "score"], ascending=[True, False]).iterrows():
        if r["score"] > best:
            best, front = r["score"], front + [i]
    return pd.Series(panel.index.isin(front), index=panel.index)


def data(inputs: Inputs, metric: str, batch: int) -> Output:
    table, missing = prepare(inputs)
    need(table, "the iso-cost figures")
    table = table[runs(table, inputs)]  # the chosen panels' runs only
    notes, parts = [], []
    for phase in cost.PHASES:
        ph = phase_runs(inputs, table, phase)
        if not (ph["phase"] == phase).any():
            continue
        ph = ph.assign(
            cost=[
                cost.phase_cost(arch(inputs, m), phase, int(L), 1.0 - s, batch, metric, meth, paths.parse_args(a))
                for m, L, s, meth, a in zip(ph["model"], ph["length"], ph["sparsity"], ph["method"], ph["method_args"])
            ]
        )
        mean = common_mean(
            ph,
            ["family", "length"],
            ["model", "method", "target"],
            ["task"],
            ["score", "sparsity", "cost", "target_compression", "params"],
            notes,
            f"{phase}",
        )
        mean["phase"] = phase
        mean["on_frontier"] = False
        for _, g in mean.groupby(["family", "length"]):
            mean.loc[g.index, "on_frontier"] = frontier(g)
        parts.append(mean)
    if not parts:
        raise ValueError("no sparse runs of any phase in the results: nothing to compare with dense")
    out = pd.concat(parts, ignore_index=True)
    out["metric"], out["batch"] = metric, batch
    order = [
        "phase",
        "family",
        "length",
        "model",
        "params",
        "method",
        "target",
        "target_compression",
        "sparsity",
        "cost",
        "score",
        "score_se",
        "cells",
        "on_frontier",
        "metric",
        "batch",
    ]
    return Output(out[[c for c in order if c in out]], missing=missing, notes=notes)


def draw(out: Output, inputs: Inputs):
    """A row per (phase, family), a column per length: families never share a panel or a frontier."""
    d = out.data
    metric, batch = d["metric"].iloc[0], int(d["batch"].iloc[0])
    phases = [p for p in cost.PHASES if (d["phase"] == p).any()]
    families = sorted(d["family"].unique())
    rows = [(p, f) for p in phases for f in families if ((d["phase"] == p) & (d["family"] == f)).any()]
    lengths = sorted(d["length"].unique())
    fig, axes = grid(len(rows), len(lengths), 3.3, 2.7)
    fig.set_layout_engine("constrained")  # room for the shared colour bar
    norm = matplotlib.colors.LogNorm(1, max(20.0, float(d["target_compression"].max())))
    sc = None
    for r, (phase, family) in enumerate(rows):
        shapes = markers(ordered_models(inputs, d.loc[d["family"] == family, "model"]))
        for c, length in enumerate(lengths):
            ax = axes[r][c]
            g = d[(d["phase"] == phase) & (d["family"] == family) & (d["length"] == length)]
            if g.empty:
                ax.axis("off")
                continue
            for model in ordered_models(inputs, g["model"]):
                m = g[g["model"] == model]
                sc = ax.scatter(
                    m["cost"],
                    m["score"],
                    c=m["target_compression"],
                    cmap="viridis",
                    norm=norm,
                    marker=shapes[model],
                    edgecolor="k",
                    linewidth=0.3,
                    s=22,
                    label=model,
                )
            f = g[g["on_frontier"].astype(bool)].sort_values("cost")
            ax.plot(f["cost"], f["score"], ":", color="k", lw=1)
            unit = "FLOPs" if metric == "flops" or phase == "prefill" else "elements moved"
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.tick_params(labelsize=6)
            ax.set_title(f"{family} · {length_label(length)} · {phase}", fontsize=8)
            ax.set_xlabel(f"{phase} {unit} (batch {batch})", fontsize=6)
            ax.grid(alpha=0.3)
            if c == 0 or axes[r][c - 1].axison is False:
                ax.set_ylabel("mean score over tasks", fontsize=7)
                ax.legend(fontsize=5, title="model", title_fontsize=5, loc="lower right")
    if sc is not None:
        fig.colorbar(sc, ax=axes, label="compression ratio (nominal)", shrink=0.5)
    return fig


def isoflops(inputs: Inputs) -> Output:
    """v1 Fig 2: score vs FLOPs at batch 1 (decode: FLOPs of one step), Pareto frontier dotted."""
    return data(inputs, "flops", 1)


def isocost(inputs: Inputs) -> Output:
    """v3 Fig 2: score vs cost (prefill FLOPs; decode memory moved) at the configured batch size."""
    return data(inputs, "cost", int(inputs.settings["cost_batch_size"]))
