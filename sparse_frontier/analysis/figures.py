"""Figures drawn from the tidy scores table; each returns the figure and exactly the data it plots."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from sparse_frontier.io import write_text_atomic  # noqa: E402


def method_label(method: str, method_args: str) -> str:
    return method if method_args == "none" else f"{method} ({method_args})"


def accuracy_vs_length(table: pd.DataFrame):
    """Mean score vs target length, one line per method, one panel per (task, model).

    Error bars: standard error of the mean over samples (pooled over seeds).
    """
    if table.empty:
        raise ValueError("the scores table is empty: nothing to plot")
    table = table.assign(method_label=[method_label(m, a) for m, a in zip(table["method"], table["method_args"])])
    group = ["task", "model", "method_label", "length"]
    # Pool seeds: weight each run by its samples; SE from the pooled per-run SEs.
    data = (
        table.assign(
            weighted=table["score"] * table["samples"],
            var_sum=(table["score_se"] ** 2) * table["samples"] ** 2,
        )
        .groupby(group, as_index=False)
        .agg(samples=("samples", "sum"), weighted=("weighted", "sum"), var_sum=("var_sum", "sum"), runs=("seed", "count"))
    )
    data["score"] = data["weighted"] / data["samples"]
    data["score_se"] = data["var_sum"] ** 0.5 / data["samples"]
    data = data[group + ["runs", "samples", "score", "score_se"]]

    panels = data[["task", "model"]].drop_duplicates().itertuples(index=False)
    panels = list(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False, sharey=True)
    palette = dict(zip(sorted(data["method_label"].unique()), sns.color_palette("colorblind")))
    for ax, (task, model) in zip(axes[0], panels):
        panel = data[(data["task"] == task) & (data["model"] == model)]
        for label, line in panel.groupby("method_label"):
            line = line.sort_values("length")
            ax.errorbar(line["length"], line["score"], yerr=line["score_se"], marker="o", capsize=3,
                        label=label, color=palette[label])
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(panel["length"].unique()))
        ax.set_xticklabels([f"{x // 1024}k" if x % 1024 == 0 else str(x) for x in sorted(panel["length"].unique())])
        ax.set_title(f"{task} · {model}")
        ax.set_xlabel("target prompt length (tokens)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score (mean ± SE)")
    axes[0][-1].legend(title="method", fontsize=8)
    fig.tight_layout()
    return fig, data


FIGURES = {"accuracy_vs_length": accuracy_vs_length}


def draw_figure(name: str, table_path: str, pdf_path: str, png_path: str, csv_path: str) -> None:
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; available: {', '.join(sorted(FIGURES))}")
    table = pd.read_csv(table_path)
    fig, data = FIGURES[name](table)
    write_text_atomic(csv_path, data.to_csv(index=False))
    for path in (pdf_path, png_path):
        tmp = f"{path}.tmp.{path.rsplit('.', 1)[-1]}"
        fig.savefig(tmp, dpi=150)
        os.replace(tmp, path)
    plt.close(fig)
