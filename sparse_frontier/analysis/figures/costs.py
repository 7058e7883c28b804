"""Cost breakdowns (v3 Figs 12-14), from the cost model alone (no runs).

- Attention share of prefill FLOPs by length (projections and the quadratic core), a line per model
  of ``figures.breakdown_family`` (default: the config's first family without sliding windows) and
  their mean (paper: 40% at 16k, 68% at 64k, 80% at 128k over the Qwen sizes).
- The speedup ``breakdown_compression`` (5x) sparsity gives, computed the paper's way: Amdahl's law on
  that share (all of attention runs 5x faster), from the family mean: 1.48 / 2.20 / 2.80 in the paper.
  The cost model's own count (only the quadratic core shrinks) is drawn dashed for comparison.
- KV-cache share of one decode step's memory traffic by length and batch size, and its speedup the
  same way.
- Dense vs sliding-window architecture (``figures.sliding_window_pair``, paper Fig 14: Qwen 14B vs
  Gemma 12B): attention share of prefill, and KV share of decode at batch ``pair_batch_size`` (8).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparse_frontier.analysis import cost
from sparse_frontier.analysis.figures.common import Inputs, Output, arch, fixed, grid, length_label, palette


def breakdown_models(inputs: Inputs) -> tuple[str, dict]:
    s = inputs.settings
    full = {n: a for n, a in inputs.models.items() if a.sliding_window is None}
    if not full:
        raise ValueError("no model with a full-attention architecture in the config (models.<name>.architecture)")
    family = s["breakdown_family"] or inputs.families.get(next(iter(full)))
    chosen = {n: a for n, a in full.items() if inputs.families.get(n) == family}
    if not chosen:
        fams = sorted({inputs.families.get(n) for n in full})
        raise ValueError(f"figures.breakdown_family {family!r} has no full-attention model; families: {fams}")
    return family, chosen


@fixed
def data(inputs: Inputs) -> Output:
    s = inputs.settings
    lengths, batches, comp = s["breakdown_lengths"], s["breakdown_batch_sizes"], float(s["breakdown_compression"])
    family, models = breakdown_models(inputs)
    rows = []

    def add(panel, model, length, batch, value, kind="model"):
        rows.append(dict(panel=panel, model=model, length=length, batch=batch, value=value, kind=kind))

    for L in lengths:
        shares = {n: cost.attention_share(a, L) for n, a in models.items()}
        for n, v in shares.items():
            add("attention share of prefill FLOPs", n, L, 1, v)
            add(f"prefill speedup at {comp:g}x", n, L, 1, cost.prefill_speedup(models[n], L, comp), "core only")
        mean_share = float(np.mean(list(shares.values())))
        add("attention share of prefill FLOPs", f"{family} mean", L, 1, mean_share, "mean")
        add(f"prefill speedup at {comp:g}x", f"{family} mean", L, 1, cost.amdahl(mean_share, comp), "mean")
        for b in batches:
            kv = float(np.mean([cost.kv_share(a, L, b) for a in models.values()]))
            add("KV share of decode traffic", f"{family} mean", L, b, kv, "mean")
            add(f"decode speedup at {comp:g}x", f"{family} mean", L, b, cost.amdahl(kv, comp), "mean")
    pair = s.get("sliding_window_pair") or []
    b = int(s["pair_batch_size"])
    for n in pair:
        a = arch(inputs, n)
        for L in lengths:
            add("dense vs sliding window: attention share of prefill", n, L, 1, cost.attention_share(a, L))
            add(f"dense vs sliding window: KV share of decode (batch {b})", n, L, b, cost.kv_share(a, L, b))
    out = pd.DataFrame(rows)
    out["family"], out["compression"] = family, comp
    return Output(out)


def draw(out: Output, inputs: Inputs):
    d = out.data
    panels = list(d["panel"].unique())
    fig, axes = grid(1, len(panels), 3.6, 3.2)
    lengths = sorted(d["length"].unique())
    for ax, panel in zip(axes[0], panels):
        g = d[d["panel"] == panel]
        if g["batch"].nunique() > 1 and not panel.startswith("dense vs"):
            colours = palette(sorted(g["batch"].unique()))
            for b, line in g.groupby("batch"):
                ax.plot(line["length"], line["value"], marker="o", ms=3, color=colours[b], label=f"batch {b}")
        else:
            colours = palette(list(g["model"].unique()))
            for model, line in g.groupby("model", sort=False):
                kind = line["kind"].iloc[0]
                style = {"mean": dict(lw=2.2, color="k"), "core only": dict(lw=0.8, ls="--", color=colours[model])}.get(
                    kind, dict(lw=1, color=colours[model])
                )
                ax.plot(
                    line["length"],
                    line["value"],
                    marker="o",
                    ms=2.5,
                    label=model if kind != "core only" else None,
                    **style,
                )
            if "speedup" in panel:
                ax.plot([], [], ls="--", color="grey", label="per model, core only")
        ax.set(xscale="log", title=panel, xlabel="length")
        ax.title.set_fontsize(7)
        ax.set_xticks(lengths, [length_label(x) for x in lengths])
        ax.minorticks_off()  # log-axis minor labels would overprint the length ticks
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return fig
