"""The GPU-hours report: read the throughput table, run the estimate, write the per-model CSV, the
per-(model, length, method) CSV and the Markdown report, with the checks it shows of the estimate
against measurements (every measured row against the resource model; rows measured on both cards
against their conversion).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from typing import Any

from sparse_frontier.planning.cards import H100, Card, card_named
from sparse_frontier.planning.estimate import (
    NUMBERS,
    TYPICAL_OUTPUT_TOKENS,
    Estimator,
    describe,
    estimate,
    estimated_card,
    grid_rows,
    modelled_seconds_per_sample,
    per_model,
    representative,
    row_card,
    row_setting,
    rows_of_card,
)
from sparse_frontier.planning.throughput_table import read_table

MODEL_FIELDS = ["model", "tensor_parallel_size", *NUMBERS, "measured_budget", "measured_typical"]
RUN_FIELDS = [
    "model",
    "tensor_parallel_size",
    "length",
    "method",
    *NUMBERS,
    "measured_budget",
    "measured_typical",
    "basis_budget",
    "basis_typical",
    "rows_used",
]


def measured_vs_modelled(
    rows: list[dict], models: Mapping[str, Any], engine: Mapping[str, Any], default: Card = H100
) -> list[dict]:
    """Every measured row against the resource model at its own setting and card (measured / modelled;
    ``default``: the card of rows naming none the model knows, as the :class:`Estimator` takes them)."""
    out = []
    for r in rows:
        setting = row_setting(r)
        model = dict(models[r["model"]], name=r["model"])
        modelled = 3600.0 / modelled_seconds_per_sample(model, engine, setting, row_card(r, default))
        out.append(dict(r, modelled_samples_per_hour=modelled, measured_over_modelled=r["samples_per_hour"] / modelled))
    return out


def cross_card_check(table: list[dict], rows: list[dict], config: Mapping[str, Any], target: Card) -> list[dict]:
    """Every row of ``target`` (in ``table``) whose setting ``rows`` (another card's) also measured:
    its measured samples/hour against the conversion of the other card's row to ``target``."""
    est = Estimator(rows, config["models"], dict(config["engine"]), target)
    own = [r for r in representative(grid_rows(table))[0] if card_named(str(r["card"])) == target]
    checks = []
    for r in own:
        setting = row_setting(r)
        source = [o for o in rows if row_setting(o) == setting]
        if not source:
            continue
        seconds, _, used = est.seconds_per_sample(setting)
        converted = 3600.0 / seconds
        checks.append(
            {
                "setting": describe(r),
                "source_samples_per_hour": used["samples_per_hour"],
                "source_date": used["date"],
                "measured_samples_per_hour": r["samples_per_hour"],
                "measured_date": r["date"],
                "converted_samples_per_hour": converted,
                "converted_over_measured": converted / r["samples_per_hour"],
            }
        )
    return checks


def write_outputs(
    config: Mapping[str, Any],
    table_path: str | os.PathLike,
    csv_path,
    md_path,
    runs_csv_path=None,
    typical_output_tokens: int = TYPICAL_OUTPUT_TOKENS,
    card: str | None = None,
    rows_card: str | None = None,
) -> list[dict]:
    """Read the throughput table (the rows of ``rows_card``, default ``card``, if given), estimate the
    grid in ``card``'s hours, write the per-model CSV, the Markdown report and (optionally) the
    per-(model, length, method) CSV; returns the per-model rows. Rows of another card than ``card``
    are converted by the resource model (their measured / modelled ratio on their own card carried to
    ``card``; basis "converted"), and the report checks that conversion on every setting measured on
    both cards."""
    from sparse_frontier.io import write_text_atomic

    if rows_card and not card:
        raise ValueError(f"gpu_hours.rows_card {rows_card!r} needs gpu_hours.card: the card whose hours are estimated")
    table = read_table(table_path, config["models"])
    rows, left_out = representative(grid_rows(rows_of_card(table, rows_card or card)))
    target, memory_note = estimated_card(card)
    groups = estimate(config, rows, typical_output_tokens, target)
    models = per_model(groups)
    converted = bool(rows_card) and card_named(rows_card) != target
    checks = cross_card_check(table, rows, config, target) if converted else []
    write_text_atomic(csv_path, _csv_text(models, MODEL_FIELDS))
    if runs_csv_path:
        write_text_atomic(runs_csv_path, _csv_text(groups, RUN_FIELDS))
    text = markdown(
        config,
        table_path,
        rows,
        left_out,
        models,
        memory_note,
        typical_output_tokens,
        target,
        rows_card if converted else None,
        checks,
    )
    write_text_atomic(md_path, text)
    return models


def _csv_text(records: list[dict], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rec.items()})
    return buf.getvalue()


def _handler(row: Mapping[str, Any]) -> str:
    """``on`` / ``off``, with the handler's decode graphs where the row says (``on (graphs on)``)."""
    return row["handler"] + (f" (graphs {row['handler_graphs']})" if row.get("handler_graphs") else "")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def markdown(
    config: Mapping[str, Any],
    table_path,
    rows: list[dict],
    left_out: list[dict],
    models: list[dict],
    memory_note: str,
    typical_output_tokens: int,
    target: Card,
    converted_from: str | None,
    checks: list[dict],
) -> str:
    """The report: the per-model table, every row used against the resource model, the rows left out
    and, for rows converted from the card ``converted_from``, the cross-card check."""
    engine = config["engine"]
    lines = _summary(config, table_path, rows, memory_note, typical_output_tokens, target, converted_from)
    lines += [
        "| model | TP | runs | samples | engine starts | GPU-h (budget) | GPU-h (typical) | runs measured (budget / typical) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        bold = "**" if m["model"] == "total" else ""
        lines.append(
            f"| {bold}{m['model']}{bold} | {_fmt(m['tensor_parallel_size'])} | {m['runs']} | {m['samples']} | "
            f"{m['engine_starts']:,.0f} | {bold}{m['gpu_hours_budget']:,.0f}{bold} | "
            f"{bold}{m['gpu_hours_typical']:,.0f}{bold} | {m['measured_budget']} / {m['measured_typical']} |"
        )
    lines += [
        "",
        "## Measured rows against the resource model",
        "",
        "| model | TP | CUDA graphs | handler | length | method | sparsity | out | at once | samples/h | "
        "modelled samples/h | measured / modelled | card | source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in measured_vs_modelled(rows, config["models"], engine, target):
        lines.append(
            f"| {r['model']} | {r['tensor_parallel_size']} | {r['cuda_graphs']} | {_handler(r)} | {r['length']} | "
            f"{r['method']} | {r['sparsity']:g} | {r['output_tokens']} | {r['concurrency']} | "
            f"{r['samples_per_hour']:,.0f} | {r['modelled_samples_per_hour']:,.0f} | "
            f"{r['measured_over_modelled']:.2f} | {r['card']} | {r['source']} |"
        )
    if left_out:
        lines += [
            "",
            "## Rows left out",
            "",
            "Calibrated methods measured without a calibration table (they calibrate on every call, which "
            "no grid run does: `representative` in `sparse_frontier/planning/estimate.py`):",
            "",
        ]
        lines += [
            f"* {describe(r)}: {r['samples_per_hour']:,.0f} samples/h, {r['card']}, {r['source']}" for r in left_out
        ]
    if converted_from:
        lines += _cross_card_section(checks, target, converted_from)
    return "\n".join(lines) + "\n"


def _summary(
    config: Mapping[str, Any],
    table_path,
    rows: list[dict],
    memory_note: str,
    typical_output_tokens: int,
    target: Card,
    converted_from: str | None,
) -> list[str]:
    """The report's title and the paragraph saying what was estimated and how."""
    engine = config["engine"]
    per_job = int(engine.get("methods_per_job", 1) or 1)
    return [
        "# GPU-hours of the grid",
        "",
        f"Config `{config.get('name', '?')}`; measured throughput from `{table_path}` ({len(rows)} rows; "
        f"cards: {', '.join(sorted({r['card'] for r in rows}))}). Method: `sparse_frontier/planning/`. "
        f"Engine setting of the grid: CUDA graphs `{engine['cuda_graphs']}`, up to {engine['batch_size']} sequences at "
        f"once (fewer where their KV cache does not fit on a GPU of {memory_note}), "
        + (
            "one engine start per job."
            if per_job <= 1
            else f"one engine start per chunk of {per_job} method settings; in chunks of dense-prefill methods (dense, "
            "Quest) each prompt's prefill is paid once (prefix caching; modelled from the resource model's prefill "
            "share, basis 'modelled sharing')."
        )
        + f" 'budget' = every answer uses the run's full output budget (upper bound); 'typical' = "
        f"{typical_output_tokens} output tokens per answer. 'measured' counts the runs whose own setting was "
        "measured; the others are extrapolated from the nearest measured row by the resource model "
        "(a method without rows of its own at the speed of dense). Per model, length and method: the "
        "`_runs` CSV beside this file."
        + (
            f" **{target.name}-hours from rows measured on {converted_from}**: each row's measured / modelled ratio "
            f"on its own card is carried to the {target.name} (basis 'converted'; the resource model's cards: "
            "`planning.cards.CARDS`, bandwidth, FLOP rate and memory per card); the check against the settings "
            "measured on both cards is at the end."
            if converted_from
            else ""
        ),
        "",
    ]


def _cross_card_section(checks: list[dict], target: Card, rows_card: str) -> list[str]:
    lines = ["", f"## Cross-card check: {target.name} rows against their conversion from {rows_card}", ""]
    if not checks:
        return lines + ["No setting was measured on both cards: the conversion is unchecked."]
    lines += [
        f"Settings measured on both cards: the {target.name} row against what the estimate makes of "
        f"the {rows_card} row (converted / measured > 1: the conversion is optimistic for the "
        f"{target.name}). Rows of different dates may differ in more than the card (the handler "
        "changed over time: `docs/hpc.md`).",
        "",
        f"| setting | {rows_card} samples/h (date) | {target.name} measured (date) | "
        f"{target.name} converted | converted / measured |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {c['setting']} | {c['source_samples_per_hour']:,.0f} ({c['source_date'] or '?'}) | "
        f"{c['measured_samples_per_hour']:,.0f} ({c['measured_date'] or '?'}) | "
        f"{c['converted_samples_per_hour']:,.0f} | {c['converted_over_measured']:.2f} |"
        for c in checks
    ]
    return lines
