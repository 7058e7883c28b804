"""Maximum compression with statistically significant performance retention (v1 Fig 3).

Per model family (rows) and phase method (columns, ``figures.phase_methods``: Vertical-Slash,
Quest): x = length, a bar per model size = mean over tasks of the largest compression whose
per-sample scores are not significantly worse than dense (one-sided paired test, ``figures.test``
at ``figures.alpha``; the paper's test was not recovered: stated on the figure), whisker = std over
tasks, dots = tasks. Between measured levels the p-value is interpolated in log-compression.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparse_frontier.analysis import stats
from sparse_frontier.analysis.aggregate import KEY_COLUMNS
from sparse_frontier.analysis.figures import iso
from sparse_frontier.analysis.figures.common import (
    Inputs,
    Output,
    grid,
    labelled_samples,
    length_label,
    need,
    ordered_models,
    palette,
    prepare,
    suptitle,
)

runs = iso.phase_method_runs  # every panel: figures.iso_panels only thins the iso figures


def data(inputs: Inputs) -> Output:
    s = inputs.settings
    table, missing = prepare(inputs)
    if inputs.samples is None:
        raise ValueError("max_compression needs the per-sample scores (paired tests)")
    table = table[runs(table, inputs) & table["phase"].isin(["prefill", "decode", "none"])]
    need(table, "max_compression")
    keys = table[KEY_COLUMNS].drop_duplicates()
    samples = labelled_samples(inputs.samples, table).merge(keys, on=KEY_COLUMNS, how="inner")
    sig = stats.significance_table(samples, s["test"], s["alpha"], s["bootstrap_resamples"])
    need(sig, "max_compression (sparse runs with a dense twin)")
    info = table.drop_duplicates("method").set_index("method")
    sig["phase"] = sig["method"].map(info["phase"])
    sig["family"] = sig["model"].map(lambda m: inputs.families.get(m, m))
    rows = []
    for key, g in sig.groupby(["family", "phase", "method", "model", "length", "task"]):
        c, censored = stats.max_retained_compression(g, s["alpha"])
        rows.append(
            dict(
                zip(["family", "phase", "method", "model", "length", "task"], key),
                max_compression=c,
                censored=censored,
                levels=len(g),
            )
        )
    out = pd.DataFrame(rows)
    out["test"], out["alpha"] = s["test"], s["alpha"]
    return Output(out, missing=missing)


def draw(out: Output, inputs: Inputs):
    d, s = out.data, inputs.settings
    families = sorted(d["family"].unique())
    methods = [m for p in ("prefill", "decode") for m in sorted(d.loc[d["phase"] == p, "method"].unique())]
    fig, axes = grid(len(families), len(methods), 4.6, 3.2, sharey=True)
    for r, family in enumerate(families):
        f = d[d["family"] == family]
        models = ordered_models(inputs, f["model"])
        lengths = sorted(f["length"].unique())
        colours = palette(models)
        width = 0.8 / max(len(models), 1)
        for c, method in enumerate(methods):
            ax = axes[r][c]
            for j, model in enumerate(models):
                for i, length in enumerate(lengths):
                    g = f[(f["method"] == method) & (f["model"] == model) & (f["length"] == length)]
                    if g.empty:
                        continue
                    x = i + (j - (len(models) - 1) / 2) * width
                    ax.bar(
                        x,
                        g["max_compression"].mean(),
                        width,
                        yerr=g["max_compression"].std(ddof=0),
                        color=colours[model],
                        alpha=0.65,
                        capsize=2,
                        label=model if i == 0 else None,
                    )
                    ax.scatter(np.full(len(g), x), g["max_compression"], s=5, color="k", zorder=3)
            ax.set_xticks(range(len(lengths)), [length_label(int(x)) for x in lengths])
            ax.set_title(f"{family} · {method}", fontsize=8)
            ax.set_xlabel("length", fontsize=7)
            ax.grid(alpha=0.3, axis="y")
            ax.legend(fontsize=6)
        axes[r][0].set_ylabel("max compression retained", fontsize=8)
    suptitle(fig, f"{s['test']} paired one-sided test (H1: sparse worse than dense), alpha = {s['alpha']}")
    return fig
