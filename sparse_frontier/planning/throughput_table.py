"""The throughput table: one measured setting a row (``benchmarks/results/throughput.csv``, written by
``benchmarks/throughput.py``, seeded with the earlier measurements); its columns, checks and I/O.

A setting is (model shape, tensor_parallel_size, cuda_graphs, handler, handler_graphs, length, method,
sparsity, output_tokens, concurrency): ``model`` names a model of the config (its ``architecture`` is the shape;
the benchmark runs dummy weights of that shape), ``length`` the grid length the prompts belong to
(``prompt_tokens`` the actual count, may be blank), ``method`` a registered method at ``sparsity``
(dense: 0; ``measured_sparsity`` what the handler measured, mean over the requests), ``output_tokens``
exactly that many per answer (ignore_eos), ``concurrency`` prompts handed to vLLM at once (the grid's
``engine.batch_size``), ``cuda_graphs`` ``piecewise`` or ``none`` (eager), or ``full`` (vLLM's
``FULL_AND_PIECEWISE``, its default on CUDA: stock rows only, the strongest baseline a user has; the
grid never runs it), ``handler`` ``on`` (through
the sparse_frontier handler, as the grid runs) or ``off`` (stock vLLM: the plugin inactive),
``handler_graphs`` ``on`` / ``off``: whether the handler's batched decode replayed its own CUDA graphs
(``engine.handler_graphs``, ``sparse_frontier/vllm_plugin/decode_graphs.py``; always ``off`` on CPU).
Blank ``handler_graphs``: stock vLLM (no handler), or a handler row measured before the graphs existed
(up to 2026-12-01), whose decode was eager, i.e. ``off`` (:func:`graphs_of` reads it so). A
``concurrency`` resolved by ``benchmarks/throughput.py --concurrency max`` (as many sequences as the
engine's KV cache holds) says so in ``source`` (:data:`MAX_CONCURRENCY_SOURCE`). Measured: ``samples_per_hour``
(= samples / wall_s x 3600), optionally ``engine_start_s`` (the engine's start-up, once per engine).
``card``, ``torch``, ``vllm``, ``triton``, ``date`` and ``source`` (where the number comes from)
record provenance; blank where the source did not say.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# the engine's graph modes (``full``: stock vLLM rows only)
from sparse_frontier.vllm_plugin.engine import CUDA_GRAPHS, STOCK_ONLY_GRAPHS

#: every column of the throughput table, in order
COLUMNS = [
    "model",
    "tensor_parallel_size",
    "cuda_graphs",
    "handler",
    "handler_graphs",
    "length",
    "prompt_tokens",
    "method",
    "sparsity",
    "measured_sparsity",
    "output_tokens",
    "concurrency",
    "samples",
    "wall_s",
    "samples_per_hour",
    "engine_start_s",
    "card",
    "torch",
    "vllm",
    "triton",
    "date",
    "source",
]
#: columns that must hold a value in every row
REQUIRED = [
    "model",
    "tensor_parallel_size",
    "cuda_graphs",
    "handler",
    "length",
    "method",
    "sparsity",
    "output_tokens",
    "concurrency",
    "samples_per_hour",
    "card",
    "source",
]
#: what identifies a measurement (a benchmark skips settings already in the table)
KEY = [
    "model",
    "tensor_parallel_size",
    "cuda_graphs",
    "handler",
    "handler_graphs",
    "length",
    "method",
    "sparsity",
    "output_tokens",
    "concurrency",
    "card",
]
_INT = ("tensor_parallel_size", "length", "prompt_tokens", "output_tokens", "concurrency", "samples")
_FLOAT = ("sparsity", "measured_sparsity", "wall_s", "samples_per_hour", "engine_start_s")
HANDLER = ("on", "off")
HANDLER_GRAPHS = ("on", "off")
#: What benchmarks/throughput.py adds to ``source`` when a Vertical-Slash / FlexPrefill row read a
#: calibration table fitted on the model's own attention, as every grid run does.
CALIBRATED_SOURCE = "calibration table captured on its own attention"
#: What benchmarks/throughput.py adds to ``source`` when ``concurrency`` is as many sequences as the
#: engine's KV cache held (``--concurrency max``); followed by the cache's size in tokens.
MAX_CONCURRENCY_SOURCE = "as many as fit in the KV cache"


def parse_row(raw: Mapping[str, str], where: str) -> dict[str, Any]:
    """One CSV row as typed values (blank optional cells become None); errors name row and column."""
    row: dict[str, Any] = {}
    for name in COLUMNS:
        value = (raw.get(name) or "").strip()
        if not value:
            if name in REQUIRED:
                raise ValueError(f"{where}: column {name!r} is empty (required: {', '.join(REQUIRED)})")
            row[name] = None
            continue
        try:
            row[name] = int(value) if name in _INT else float(value) if name in _FLOAT else value
        except ValueError:
            kind = "an integer" if name in _INT else "a number"
            raise ValueError(f"{where}: column {name!r} is {value!r}, not {kind}") from None
    if row["cuda_graphs"] not in CUDA_GRAPHS:
        raise ValueError(f"{where}: cuda_graphs {row['cuda_graphs']!r} is not one of {', '.join(CUDA_GRAPHS)}")
    if row["handler"] not in HANDLER:
        raise ValueError(f"{where}: handler {row['handler']!r} is not one of {', '.join(HANDLER)}")
    if row["handler_graphs"] is not None and row["handler_graphs"] not in HANDLER_GRAPHS:
        raise ValueError(
            f"{where}: handler_graphs {row['handler_graphs']!r} is not one of {', '.join(HANDLER_GRAPHS)} (or blank)"
        )
    if row["handler"] == "on" and row["cuda_graphs"] in STOCK_ONLY_GRAPHS:
        raise ValueError(
            f"{where}: cuda_graphs {row['cuda_graphs']!r} is for stock vLLM rows only (handler off): the handler "
            "cannot run inside vLLM's full CUDA graphs"
        )
    if row["handler"] == "off" and row["handler_graphs"] is not None:
        raise ValueError(f"{where}: handler_graphs must be blank where handler is off (stock vLLM has no handler)")
    for name in ("samples_per_hour", "tensor_parallel_size", "length", "output_tokens", "concurrency"):
        if row[name] <= 0:
            raise ValueError(f"{where}: {name} must be > 0, got {row[name]!r}")
    if not 0.0 <= row["sparsity"] < 1.0:
        raise ValueError(f"{where}: sparsity {row['sparsity']!r} is not in [0, 1)")
    return row


def read_table(path: str | os.PathLike, models: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Read and check a throughput table; with ``models`` (the config's), every model must be one of them."""
    from sparse_frontier.attention import get_method_class

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"throughput table {path} not found (write it with benchmarks/throughput.py)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; a throughput table has: {', '.join(COLUMNS)}"
            )
        rows = [parse_row(raw, f"{path} line {i + 2}") for i, raw in enumerate(reader)]
    for i, row in enumerate(rows):
        where = f"{path} line {i + 2}"
        if models is not None and row["model"] not in models:
            raise ValueError(
                f"{where}: unknown model {row['model']!r}; the config defines: {', '.join(sorted(models))}"
            )
        if models is not None and "architecture" not in models[row["model"]]:
            raise ValueError(
                f"{where}: model {row['model']!r} has no architecture in the config (needed to extrapolate)"
            )
        try:
            get_method_class(row["method"])
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    return rows


def key_of(row: Mapping[str, Any]) -> tuple:
    """The identity of a measurement, typed (so a row read back equals the row written; blank is "")."""
    return tuple(
        float(row[k]) if k == "sparsity" else int(row[k]) if k in _INT else "" if row.get(k) is None else str(row[k])
        for k in KEY
    )


def graphs_of(row: Mapping[str, Any]) -> str:
    """Whether a row's handler decode replayed the handler's graphs: ``on`` or ``off`` (blank: ``off``,
    the handler rows from before the graphs were eager; stock rows have no handler decode)."""
    return row.get("handler_graphs") or "off"


def _header(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def upgrade_table(path: str | os.PathLike) -> None:
    """Rewrite a table written with fewer columns (an older COLUMNS) with the current ones, new cells
    blank (atomically). Appending to it is refused until then: its rows would shift."""
    from sparse_frontier.io import write_text_atomic

    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        unknown = sorted(set(reader.fieldnames or []) - set(COLUMNS))
        if unknown:
            raise ValueError(f"{path}: unknown column(s) {unknown}; a throughput table has: {', '.join(COLUMNS)}")
        rows = list(reader)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: row.get(k) or "" for k in COLUMNS} for row in rows)
    write_text_atomic(path, buf.getvalue())


def append_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows (header first if the file is new); each line is flushed, so a killed run loses none."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    if not new and _header(path) != COLUMNS:
        raise ValueError(
            f"{path} has other columns than a throughput table now has ({', '.join(COLUMNS)}): rewrite it "
            "with sparse_frontier.planning.throughput_table.upgrade_table(path) before appending"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for row in rows:
            unknown = sorted(set(row) - set(COLUMNS))
            if unknown:
                raise ValueError(f"unknown throughput column(s) {unknown}; valid: {COLUMNS}")
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})
            f.flush()


def answers_path(table: str | os.PathLike) -> Path:
    """Beside the table: one JSON line per measured row with a digest of its answers' token ids."""
    table = Path(table)
    return table.with_name(table.stem + "_answers.jsonl")


#: what an answers record keeps of its row (with ``answers_sha256`` and ``first_answer_head``)
ANSWER_FIELDS = (*KEY, "samples")


def record_answers(table: str | os.PathLike, row: Mapping[str, Any], answers: list[list[int]]) -> None:
    """Append ``row``'s answers (token ids, in prompt order) as a digest. Stock vLLM and dense through the
    handler get the same prompts (one seed per setting), so equal digests at equal concurrency say that
    their greedy answers are token-identical."""
    record = {k: row.get(k) for k in ANSWER_FIELDS}
    record["answers_sha256"] = hashlib.sha256(json.dumps(answers).encode()).hexdigest()
    record["first_answer_head"] = answers[0][:8] if answers else []
    with answers_path(table).open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def read_answers(table: str | os.PathLike) -> list[dict[str, Any]]:
    """The answers records beside ``table`` (none if it has no such file)."""
    path = answers_path(table)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
