"""The scaling law (v1 Tables 3, 4, 7): one fit per phase and model family.

``acc = sigmoid(a log params + b log length + g log compression + delta_task)`` on main-grid runs of
dense and the phase's method (``figures.phase_methods``). Reported per (phase, family): the
coefficients, R^2 of the full fit and R^2 on each held-out axis (Table 3), and per task the
Spearman rho (p) and mean absolute error on the held-out axis (Tables 4 / 7). Folds hold out the
largest model, the longest length, and the largest *nominal* compression level.
"""

from __future__ import annotations

import pandas as pd

from sparse_frontier.analysis import cost, scaling
from sparse_frontier.analysis.figures import iso
from sparse_frontier.analysis.figures.common import Inputs, Output, grid, main_runs, palette, phase_runs, prepare

runs = iso.phase_method_runs  # every panel: figures.iso_panels only thins the iso figures


def fits(inputs: Inputs) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """(statistics in long form, every prediction, missing runs)."""
    table, missing = prepare(inputs)
    table = main_runs(table).dropna(subset=["score", "params"])
    stats_rows, preds = [], []
    for phase in cost.PHASES:
        ph = phase_runs(inputs, table, phase)
        for family, fr in ph.groupby("family"):
            if not (fr["phase"] == phase).any():
                continue
            result = scaling.fit(fr)
            full = fr.assign(predicted=scaling.predict(result, fr), held_out="none")
            base = dict(phase=phase, family=family)
            stats_rows.append(
                dict(
                    base,
                    kind="fit",
                    held_out="none",
                    statistic="r2",
                    value=scaling.r_squared(full["score"], full["predicted"]),
                    n=len(full),
                )
            )
            for _, c in scaling.coefficients(result).iterrows():
                for col in ("estimate", "se", "ci_low", "ci_high"):
                    stats_rows.append(dict(base, kind="coefficient", term=c["term"], statistic=col, value=c[col]))
            metrics, held = scaling.holdout_validation(fr)
            for _, m in metrics.iterrows():
                for col in ("spearman_rho", "spearman_p", "mae", "n"):
                    stats_rows.append(
                        dict(base, kind="holdout", held_out=m["held_out"], task=m["task"], statistic=col, value=m[col])
                    )
            if not held.empty:
                for axis, h in held.groupby("held_out"):
                    stats_rows.append(
                        dict(
                            base,
                            kind="holdout",
                            held_out=axis,
                            statistic="r2",
                            value=scaling.r_squared(h["score"], h["predicted"]),
                            n=len(h),
                        )
                    )
            preds += [full.assign(phase=phase, family=family), held.assign(phase=phase, family=family)]
    if not preds:
        raise ValueError("no sparse runs of any phase in the results: the scaling law needs them")
    return pd.DataFrame(stats_rows), pd.concat(preds, ignore_index=True), missing


def data(inputs: Inputs) -> Output:
    stats, preds, missing = fits(inputs)
    cols = [
        "phase",
        "family",
        "held_out",
        "task",
        "model",
        "params",
        "length",
        "method",
        "method_args",
        "target",
        "compression",
        "score",
        "predicted",
    ]
    out = preds[cols]
    r2 = stats[stats["statistic"] == "r2"].set_index(["phase", "family", "held_out"])["value"]
    out = out.assign(r2=[r2.get((p, f, h)) for p, f, h in zip(out["phase"], out["family"], out["held_out"])])
    return Output(out, missing=missing)


def table(inputs: Inputs) -> Output:
    stats, _, missing = fits(inputs)
    return Output(stats, missing=missing)


def draw(out: Output, inputs: Inputs):
    d = out.data
    rows = list(d[["phase", "family"]].drop_duplicates().itertuples(index=False))
    folds = list(dict.fromkeys(["none"] + list(d["held_out"].unique())))
    fig, axes = grid(len(rows), len(folds), 3.0, 3.0)
    colours = palette(sorted(d["task"].unique()))
    for r, (phase, family) in enumerate(rows):
        for c, fold in enumerate(folds):
            ax = axes[r][c]
            g = d[(d["phase"] == phase) & (d["family"] == family) & (d["held_out"] == fold)]
            for task, t in g.groupby("task"):
                ax.scatter(t["score"], t["predicted"], s=6, color=colours[task], label=task)
            ax.plot([0, 1], [0, 1], "k:", lw=1)
            what = "full fit" if fold == "none" else f"held out: largest {fold}"
            r2 = f", R² {g['r2'].iloc[0]:.2f}" if not g.empty and pd.notna(g["r2"].iloc[0]) else ""
            ax.set(
                title=f"{family} · {phase} · {what}{r2}",
                xlabel="true score",
                ylabel="predicted",
                xlim=(-0.02, 1.02),
                ylim=(-0.02, 1.02),
            )
            ax.title.set_fontsize(7)
    axes[0][0].legend(fontsize=5)
    return fig
