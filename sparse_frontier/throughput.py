"""Measured end-to-end throughput, and the GPU-hours of a config's grid estimated from it.

**The throughput table** (``benchmarks/results/throughput.csv``; written by ``benchmarks/throughput.py``,
seeded with the earlier measurements): one row per measured setting, columns :data:`COLUMNS`.
A setting is (model shape, tensor_parallel_size, cuda_graphs, handler, length, method, sparsity,
output_tokens, concurrency): ``model`` names a model of the config (its ``architecture`` is the shape;
the benchmark runs dummy weights of that shape), ``length`` the grid length the prompts belong to
(``prompt_tokens`` the actual count, may be blank), ``method`` a registered method at ``sparsity``
(dense: 0; ``measured_sparsity`` what the handler measured, mean over the requests), ``output_tokens`` exactly that many per answer (ignore_eos), ``concurrency`` prompts handed
to vLLM at once (the grid's ``engine.batch_size``), ``cuda_graphs`` ``piecewise`` or ``none`` (eager),
``handler`` ``on`` (through the sparse_frontier handler, as the grid runs) or ``off`` (stock vLLM).
Measured: ``samples_per_hour`` (= samples / wall_s x 3600), optionally ``engine_start_s`` (the
engine's start-up, once per engine). ``card``, ``torch``, ``vllm``, ``triton``, ``date`` and
``source`` (where the number comes from) record provenance; blank where the source did not say.

**The estimate** (:func:`estimate`): every run of the grid takes the time per sample of the
*nearest* measured row. Nearest = same model, then same tensor-parallel size, same CUDA-graph mode,
same method (else dense, else any), nearest sparsity, concurrency, length, output tokens, with the
handler preferred over stock vLLM and later rows over earlier ones. If that row is the run's own
setting (all of these equal; the handler may differ, its overhead was measured at 0.98-1.09x) the
run is **measured**; otherwise it is **extrapolated**: the resource model's time per sample for the
run (``sparse_frontier.resources.predict_seconds``, dense, engine start left out) times the ratio
measured / modelled at that row. So a sparse method measured at one length carries its measured
speed-up to the others, and a method never measured runs at the speed of dense.
Engine starts are added unscaled: one per job, or with ``engine.methods_per_job`` N > 1 one per
chunk of at most N runs sharing (dataset, output budget); each lasts the measured
``engine_start_s`` of that model and TP when a row has it, else the resource model's
``START_S + weights / LOAD_BYTES_PER_S``. GPU-hours = (samples x time per sample + starts) x TP.
Two variants: **budget** (every answer uses the run's ``max_tokens``, an upper bound) and
**typical** (``min(max_tokens, typical_output_tokens)``, 256 by default).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from sparse_frontier.resources import (
    H100,
    Card,
    card_named,
    engine_start_seconds,
    memory_plan,
    predict_phases,
)

#: every column of the throughput table, in order
COLUMNS = [
    "model", "tensor_parallel_size", "cuda_graphs", "handler", "length", "prompt_tokens", "method", "sparsity",
    "measured_sparsity", "output_tokens", "concurrency", "samples", "wall_s", "samples_per_hour", "engine_start_s", "card", "torch",
    "vllm", "triton", "date", "source",
]  # fmt: skip
#: columns that must hold a value in every row
REQUIRED = ["model", "tensor_parallel_size", "cuda_graphs", "handler", "length", "method", "sparsity",
            "output_tokens", "concurrency", "samples_per_hour", "card", "source"]  # fmt: skip
#: what identifies a measurement (a benchmark skips settings already in the table)
KEY = ["model", "tensor_parallel_size", "cuda_graphs", "handler", "length", "method", "sparsity",
       "output_tokens", "concurrency", "card"]  # fmt: skip
_INT = ("tensor_parallel_size", "length", "prompt_tokens", "output_tokens", "concurrency", "samples")
_FLOAT = ("sparsity", "measured_sparsity", "wall_s", "samples_per_hour", "engine_start_s")
CUDA_GRAPHS = ("piecewise", "none")
HANDLER = ("on", "off")
TYPICAL_OUTPUT_TOKENS = 256


# ------------------------------------------------------------------------------------ the table
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
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; a throughput table has: {', '.join(COLUMNS)}")
        rows = [parse_row(raw, f"{path} line {i + 2}") for i, raw in enumerate(reader)]
    for i, row in enumerate(rows):
        where = f"{path} line {i + 2}"
        if models is not None and row["model"] not in models:
            raise ValueError(f"{where}: unknown model {row['model']!r}; the config defines: {', '.join(sorted(models))}")
        if models is not None and "architecture" not in models[row["model"]]:
            raise ValueError(f"{where}: model {row['model']!r} has no architecture in the config (needed to extrapolate)")
        try:
            get_method_class(row["method"])
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    return rows


def key_of(row: Mapping[str, Any]) -> tuple:
    """The identity of a measurement, typed (so a row read back equals the row written)."""
    return tuple(float(row[k]) if k == "sparsity" else int(row[k]) if k in _INT else str(row[k]) for k in KEY)


def append_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows (header first if the file is new); each line is flushed, so a killed run loses none."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
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


# ------------------------------------------------------------------------------------ the estimate
@dataclass(frozen=True)
class Setting:
    """What a run's speed depends on (the estimate's unit)."""

    model: str
    tensor_parallel_size: int
    cuda_graphs: str
    length: int
    method: str
    sparsity: float
    output_tokens: int
    concurrency: int


def run_sparsity(method_params: Mapping[str, Any]) -> float:
    """The run's target sparsity (a combination: the mean of its phases' targets)."""
    if "sparsity" in method_params:
        return float(method_params["sparsity"])
    values = [float(v) for k, v in method_params.items() if k.endswith("_sparsity")]
    return sum(values) / len(values) if values else 0.0


def _log_gap(a: float, b: float) -> float:
    return abs(math.log2(a / b))


def nearest(setting: Setting, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The measured row closest to ``setting`` and whether it *is* that setting (see the module doc)."""
    if not rows:
        raise ValueError("the throughput table has no rows: nothing to extrapolate from")

    def distance(indexed):
        i, r = indexed
        method_rank = 0 if r["method"] == setting.method else 1 if r["method"] == "dense" else 2
        return (
            r["model"] != setting.model,
            r["tensor_parallel_size"] != setting.tensor_parallel_size,
            r["cuda_graphs"] != setting.cuda_graphs,
            method_rank,
            abs(r["sparsity"] - setting.sparsity),
            _log_gap(r["concurrency"], setting.concurrency),
            _log_gap(r["length"], setting.length),
            _log_gap(r["output_tokens"], setting.output_tokens),
            r["handler"] != "on",
            -i,
        )

    row = min(enumerate(rows), key=distance)[1]
    return row, row_setting(row) == setting


def in_flight(model: Mapping[str, Any], engine: Mapping[str, Any], length: int, output_tokens: int,
              tensor_parallel_size: int, card: Card = H100) -> int:  # fmt: skip
    """Sequences a job runs at once: ``engine.batch_size``, fewer where their KV cache does not fit
    (the resource model's memory plan on ``card``; at least one)."""
    plan = memory_plan(model, length + output_tokens, engine, tensor_parallel_size, card.memory)
    return max(1, plan.concurrency)


def _modelled_phases(model: Mapping[str, Any], engine: Mapping[str, Any], setting: Setting,
                     card: Card) -> tuple[float, float]:  # fmt: skip
    """The resource model's steady-state (prefill, decode) seconds per sample at ``setting`` on ``card``."""
    model = dict(model, tensor_parallel_size=setting.tensor_parallel_size)
    samples = 100 * setting.concurrency
    key = {"length": setting.length, "max_tokens": setting.output_tokens, "samples": samples}
    _, prefill, decode = predict_phases(model, key, dict(engine, batch_size=setting.concurrency), card)
    return prefill / samples, decode / samples


def modelled_seconds_per_sample(model: Mapping[str, Any], engine: Mapping[str, Any], setting: Setting,
                                card: Card = H100) -> float:  # fmt: skip
    """The resource model's steady-state time per sample on ``card`` (dense; engine start left out)."""
    return sum(_modelled_phases(model, engine, setting, card))


def prefill_fraction(model: Mapping[str, Any], engine: Mapping[str, Any], setting: Setting,
                     card: Card = H100) -> float:  # fmt: skip
    """The share of a sample's time the resource model gives its prefill (the rest: decode)."""
    prefill, decode = _modelled_phases(model, engine, setting, card)
    return prefill / (prefill + decode)


def row_setting(row: Mapping[str, Any]) -> Setting:
    return Setting(row["model"], row["tensor_parallel_size"], row["cuda_graphs"], row["length"], row["method"],
                   row["sparsity"], row["output_tokens"], row["concurrency"])  # fmt: skip


def describe(row: Mapping[str, Any]) -> str:
    return (f"{row['model']} TP{row['tensor_parallel_size']} {row['cuda_graphs']} {row['method']}@{row['sparsity']:g} "
            f"L{row['length']} out{row['output_tokens']} x{row['concurrency']} handler {row['handler']}")  # fmt: skip


def row_card(row: Mapping[str, Any], default: Card = H100) -> Card:
    """The card a row was measured on, as the resource model knows it (``default`` if it knows none)."""
    return card_named(str(row["card"])) or default


class Estimator:
    """Time per sample and engine start of any setting on ``card``, from a throughput table (rows of
    that card, or of another: converted by the resource model) and the config's models."""

    def __init__(self, rows: list[dict[str, Any]], models: Mapping[str, Any], engine: Mapping[str, Any],
                 card: Card = H100):  # fmt: skip
        self.rows, self.models, self.engine, self.card = rows, models, engine, card
        self._cache: dict[Setting, tuple[float, str, dict]] = {}
        self._prefill: dict[Setting, float] = {}

    def model(self, name: str) -> dict:
        if name not in self.models:
            raise ValueError(f"unknown model {name!r}; the config defines: {', '.join(sorted(self.models))}")
        return dict(self.models[name], name=name)

    def seconds_per_sample(self, setting: Setting) -> tuple[float, str, dict]:
        """(seconds, "measured" or "extrapolated", the row used)."""
        if setting not in self._cache:
            row, exact = nearest(setting, self.rows)
            measured = 3600.0 / row["samples_per_hour"]
            measured_on = row_card(row, self.card)
            if exact and measured_on == self.card:
                self._cache[setting] = (measured, "measured", row)
            else:  # the row's measured / modelled ratio (on its own card) carried to this setting and card
                ref = row_setting(row)
                ratio = measured / modelled_seconds_per_sample(self.model(ref.model), self.engine, ref, measured_on)
                own = modelled_seconds_per_sample(self.model(setting.model), self.engine, setting, self.card)
                self._cache[setting] = (own * ratio, "extrapolated" if measured_on == self.card else "converted", row)
        return self._cache[setting]

    def prefill_fraction(self, setting: Setting) -> float:
        """The resource model's prefill share of a sample's time at ``setting`` (see :func:`prefill_fraction`)."""
        if setting not in self._prefill:
            self._prefill[setting] = prefill_fraction(self.model(setting.model), self.engine, setting, self.card)
        return self._prefill[setting]

    def start_seconds(self, model: str, tensor_parallel_size: int, cuda_graphs: str) -> tuple[float, str]:
        starts = sorted(
            r["engine_start_s"] for r in self.rows
            if r["engine_start_s"] and (r["model"], r["tensor_parallel_size"], r["cuda_graphs"]) == (model, tensor_parallel_size, cuda_graphs)
        )  # fmt: skip
        if starts:
            return starts[len(starts) // 2], "measured"
        return engine_start_seconds(self.model(model), self.engine), "modelled"


NUMBERS = ["runs", "samples", "engine_starts", "gpu_hours_budget", "gpu_hours_typical"]


def prediction_jobs(runs: list, methods_per_job: int = 1) -> dict:
    """Per run key: (its share of an engine start, how many runs share each of its prompts' prefill).
    One job per run: (1, 1). With ``methods_per_job`` N > 1 (``sparse_frontier.sweeps.plan_sweeps``:
    chunks of k <= N runs that differ only in their method, one prediction job each): 1/k of the
    chunk's start, and k runs sharing each prefill where the chunk's methods share cached prompts
    (vLLM's prefix caching, ``vllm_plugin.engine.share_prompts``), else 1."""
    if methods_per_job <= 1:
        return {r.key: (1.0, 1) for r in runs}
    from sparse_frontier.sweeps import plan_sweeps
    from sparse_frontier.vllm_plugin.engine import share_prompts

    jobs = {}
    for sweep in plan_sweeps(runs, methods_per_job):
        k = len(sweep.runs)
        shared = share_prompts([{"method": r.key.method, "params": dict(r.method_params)} for r in sweep.runs])
        jobs.update({r.key: (1.0 / k, k if shared else 1) for r in sweep.runs})
    return jobs


def engine_starts(runs: list, methods_per_job: int = 1) -> dict:
    """Engine starts per run key (see :func:`prediction_jobs`)."""
    return {key: start for key, (start, _) in prediction_jobs(runs, methods_per_job).items()}


def estimate(config: Mapping[str, Any], rows: list[dict[str, Any]], typical_output_tokens: int = TYPICAL_OUTPUT_TOKENS,
             card: Card = H100):  # fmt: skip
    """GPU-hours of every run of ``config``, grouped per (model, TP, length, method): a list of dicts.

    Each group has runs, samples, engine_starts, gpu_hours_budget/typical, basis_budget/typical
    ("measured", "extrapolated" or "mixed" when its runs differ) and the measured rows it used.
    ``config`` must be validated (defaults filled); ``engine.methods_per_job`` defaults to 1.
    """
    from sparse_frontier.config import expand_runs

    engine = dict(config["engine"])
    runs = expand_runs(config)
    jobs = prediction_jobs(runs, int(engine.get("methods_per_job", 1) or 1))
    est = Estimator(rows, config["models"], engine, card)
    groups: dict[tuple, dict] = {}
    for run in runs:
        k, tp = run.key, int(run.model["tensor_parallel_size"])
        g = groups.setdefault((k.model, tp, k.length, k.method), {
            "model": k.model, "tensor_parallel_size": tp, "length": k.length, "method": k.method,
            **{n: 0 for n in NUMBERS}, "measured_budget": 0, "measured_typical": 0, "basis_budget": set(),
            "basis_typical": set(), "rows_used": set(),
        })  # fmt: skip
        start_s, _ = est.start_seconds(k.model, tp, engine["cuda_graphs"])
        starts, sharing = jobs[k]
        g["runs"] += 1
        g["samples"] += k.samples
        g["engine_starts"] += starts
        for variant, out in (("budget", k.max_tokens), ("typical", min(k.max_tokens, typical_output_tokens))):
            conc = in_flight(est.model(k.model), engine, k.length, out, tp, card)
            setting = Setting(k.model, tp, engine["cuda_graphs"], k.length, k.method,
                              run_sparsity(run.method_params), out, conc)  # fmt: skip
            seconds, basis, row = est.seconds_per_sample(setting)
            if sharing > 1:  # the prefill is paid once for the chunk's runs (prefix caching): modelled
                seconds *= 1 - est.prefill_fraction(setting) * (1 - 1 / sharing)
                basis = "modelled sharing"
            g[f"gpu_hours_{variant}"] += (k.samples * seconds + starts * start_s) * tp / 3600
            g[f"basis_{variant}"].add(basis)
            g[f"measured_{variant}"] += basis == "measured"
            g["rows_used"].add(describe(row))
    out = []
    for g in groups.values():
        for variant in ("budget", "typical"):
            basis = g[f"basis_{variant}"]
            g[f"basis_{variant}"] = basis.pop() if len(basis) == 1 else "mixed"
        g["rows_used"] = "; ".join(sorted(g["rows_used"]))
        out.append(g)
    return out


def per_model(groups: list[dict]) -> list[dict]:
    """Sum the groups per model, then one ``total`` row; ``measured_*`` = runs from their own setting."""
    models: dict[str, dict] = {}
    for g in groups:
        m = models.setdefault(g["model"], {"model": g["model"], "tensor_parallel_size": g["tensor_parallel_size"],
                                           **{n: 0 for n in NUMBERS}, "measured_budget": 0, "measured_typical": 0})  # fmt: skip
        for n in NUMBERS:
            m[n] += g[n]
        for variant in ("budget", "typical"):
            m[f"measured_{variant}"] += g[f"measured_{variant}"]
    rows = list(models.values())
    total = {"model": "total", "tensor_parallel_size": None}
    for n in NUMBERS + ["measured_budget", "measured_typical"]:
        total[n] = sum(r[n] for r in rows)
    return rows + [total]


def calibration(rows: list[dict], models: Mapping[str, Any], engine: Mapping[str, Any],
                default: Card = H100) -> list[dict]:  # fmt: skip
    """Every measured row against the resource model at its own setting and card (measured / modelled;
    ``default``: the card of rows naming none the model knows, as the :class:`Estimator` takes them)."""
    out = []
    for r in rows:
        setting = row_setting(r)
        model = dict(models[r["model"]], name=r["model"])
        modelled = 3600.0 / modelled_seconds_per_sample(model, engine, setting, row_card(r, default))
        out.append(dict(r, modelled_samples_per_hour=modelled, measured_over_modelled=r["samples_per_hour"] / modelled))
    return out


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


#: What benchmarks/throughput.py adds to ``source`` when a Vertical-Slash / FlexPrefill row read a
#: calibration table fitted on the model's own attention, as every grid run does.
CALIBRATED_SOURCE = "calibration table captured on its own attention"


def representative(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows an estimate may use, rows left out). Left out: rows of a calibrated method (Vertical-Slash,
    FlexPrefill, or a combination with one) measured without a calibration table: those calibrate on
    every call (a binary search per layer and prompt), which no grid run does (rule
    calibrate_attention writes the table first), so their speed says nothing about the grid's."""
    from sparse_frontier.calibrate import needs_calibration

    left_out = [r for r in rows if needs_calibration(r["method"]) and CALIBRATED_SOURCE not in str(r["source"])]
    return [r for r in rows if r not in left_out], left_out


def rows_of_card(rows: list[dict[str, Any]], card: str | None) -> list[dict[str, Any]]:
    """The rows measured on ``card`` (a case-insensitive part of the ``card`` column, e.g. ``H100``);
    all rows for None. An estimate in one card's hours must not mix in another card's speed."""
    if card is None:
        return rows
    kept = [r for r in rows if card.lower() in str(r["card"]).lower()]
    if not kept:
        cards = sorted({str(r["card"]) for r in rows})
        raise ValueError(f"gpu_hours.card {card!r} matches no row of the throughput table; its cards: {cards}")
    return kept


def estimated_card(card: str | None) -> tuple[Card, str]:
    """The card an estimate in ``card``'s hours is modelled on, and a note saying which: the entry of
    ``resources.CARDS`` matched as part of the name, else the H100 the resource model was calibrated on."""
    known = card_named(card)
    if known is not None:
        return known, f"{known.name}: {known.memory / 1024**3:.0f} GiB"
    return H100, f"{H100.memory / 1024**3:.0f} GiB, the resource model's card"


def write_outputs(config: Mapping[str, Any], table_path: str | os.PathLike, csv_path, md_path, runs_csv_path=None,
                  typical_output_tokens: int = TYPICAL_OUTPUT_TOKENS, card: str | None = None,
                  rows_card: str | None = None) -> list[dict]:  # fmt: skip
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
    rows, left_out = representative(rows_of_card(table, rows_card or card))
    target, memory_note = estimated_card(card)
    groups = estimate(config, rows, typical_output_tokens, target)
    models = per_model(groups)
    converted = bool(rows_card) and card_named(rows_card) != target
    checks = cross_card_check(table, rows, config, target) if converted else []

    def to_csv(records, fields):
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rec.items()})
        return buf.getvalue()

    model_fields = ["model", "tensor_parallel_size", *NUMBERS, "measured_budget", "measured_typical"]
    write_text_atomic(csv_path, to_csv(models, model_fields))
    if runs_csv_path:
        fields = ["model", "tensor_parallel_size", "length", "method", *NUMBERS, "measured_budget", "measured_typical",
                  "basis_budget", "basis_typical", "rows_used"]  # fmt: skip
        write_text_atomic(runs_csv_path, to_csv(groups, fields))
    engine = config["engine"]
    per_job = int(engine.get("methods_per_job", 1) or 1)
    lines = [
        "# GPU-hours of the grid",
        "",
        f"Config `{config.get('name', '?')}`; measured throughput from `{table_path}` ({len(rows)} rows; "
        f"cards: {', '.join(sorted({r['card'] for r in rows}))}). Method: `sparse_frontier/throughput.py`. "
        f"Engine setting of the grid: CUDA graphs `{engine['cuda_graphs']}`, up to {engine['batch_size']} sequences at "
        f"once (fewer where their KV cache does not fit on a GPU of {memory_note}), "
        + ("one engine start per job." if per_job <= 1 else
           f"one engine start per chunk of {per_job} method settings; in chunks of dense-prefill methods (dense, "
           "Quest) each prompt's prefill is paid once (prefix caching; modelled from the resource model's prefill "
           "share, basis 'modelled sharing').")
        + f" 'budget' = every answer uses the run's full output budget (upper bound); 'typical' = "
        f"{typical_output_tokens} output tokens per answer. 'measured' counts the runs whose own setting was "
        "measured; the others are extrapolated from the nearest measured row by the resource model "
        "(a method without rows of its own at the speed of dense). Per model, length and method: the "
        "`_runs` CSV beside this file."
        + (f" **{target.name}-hours from rows measured on {rows_card}**: each row's measured / modelled ratio "
           f"on its own card is carried to the {target.name} (basis 'converted'; the resource model's cards: "
           "`resources.CARDS`, bandwidth, FLOP rate and memory per card); the check against the settings "
           "measured on both cards is at the end." if converted else ""),
        "",
        "| model | TP | runs | samples | engine starts | GPU-h (budget) | GPU-h (typical) | runs measured (budget / typical) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        bold = "**" if m["model"] == "total" else ""
        lines.append(f"| {bold}{m['model']}{bold} | {_fmt(m['tensor_parallel_size'])} | {m['runs']} | {m['samples']} | "
                     f"{m['engine_starts']:,.0f} | {bold}{m['gpu_hours_budget']:,.0f}{bold} | "
                     f"{bold}{m['gpu_hours_typical']:,.0f}{bold} | {m['measured_budget']} / {m['measured_typical']} |")  # fmt: skip
    lines += ["", "## Measured rows against the resource model", "",
              "| model | TP | CUDA graphs | handler | length | method | sparsity | out | at once | samples/h | "
              "modelled samples/h | measured / modelled | card | source |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in calibration(rows, config["models"], engine, target):
        lines.append(f"| {r['model']} | {r['tensor_parallel_size']} | {r['cuda_graphs']} | {r['handler']} | {r['length']} | "
                     f"{r['method']} | {r['sparsity']:g} | {r['output_tokens']} | {r['concurrency']} | "
                     f"{r['samples_per_hour']:,.0f} | {r['modelled_samples_per_hour']:,.0f} | "
                     f"{r['measured_over_modelled']:.2f} | {r['card']} | {r['source']} |")  # fmt: skip
    if left_out:
        lines += ["", "## Rows left out", "",
                  "Calibrated methods measured without a calibration table (they calibrate on every call, which "
                  "no grid run does: `representative` in `sparse_frontier/throughput.py`):", ""]  # fmt: skip
        lines += [f"* {describe(r)}: {r['samples_per_hour']:,.0f} samples/h, {r['card']}, {r['source']}" for r in left_out]
    if converted:
        lines += ["", f"## Cross-card check: {target.name} rows against their conversion from {rows_card}", ""]
        if checks:
            lines += [f"Settings measured on both cards: the {target.name} row against what the estimate makes of "
                      f"the {rows_card} row (converted / measured > 1: the conversion is optimistic for the "
                      f"{target.name}). Rows of different dates may differ in more than the card (the handler "
                      "changed over time: `docs/hpc.md`).", "",
                      f"| setting | {rows_card} samples/h (date) | {target.name} measured (date) | "
                      f"{target.name} converted | converted / measured |", "|---|---|---|---|---|"]  # fmt: skip
            lines += [f"| {c['setting']} | {c['source_samples_per_hour']:,.0f} ({c['source_date'] or '?'}) | "
                      f"{c['measured_samples_per_hour']:,.0f} ({c['measured_date'] or '?'}) | "
                      f"{c['converted_samples_per_hour']:,.0f} | {c['converted_over_measured']:.2f} |" for c in checks]  # fmt: skip
        else:
            lines.append("No setting was measured on both cards: the conversion is unchecked.")
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return models


def cross_card_check(table: list[dict], rows: list[dict], config: Mapping[str, Any], target: Card) -> list[dict]:
    """Every row of ``target`` (in ``table``) whose setting ``rows`` (another card's) also measured:
    its measured samples/hour against the conversion of the other card's row to ``target``."""
    est = Estimator(rows, config["models"], dict(config["engine"]), target)
    own = [r for r in representative(table)[0] if card_named(str(r["card"])) == target]
    checks = []
    for r in own:
        setting = row_setting(r)
        source = [o for o in rows if row_setting(o) == setting]
        if not source:
            continue
        seconds, _, used = est.seconds_per_sample(setting)
        converted = 3600.0 / seconds
        checks.append({"setting": describe(r), "source_samples_per_hour": used["samples_per_hour"],
                       "source_date": used["date"], "measured_samples_per_hour": r["samples_per_hour"],
                       "measured_date": r["date"], "converted_samples_per_hour": converted,
                       "converted_over_measured": converted / r["samples_per_hour"]})  # fmt: skip
    return checks
