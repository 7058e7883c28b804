"""The GPU-hours of a config's grid, estimated from the measured throughput table (``throughput_table``).

Every run of the grid takes the time per sample of the *nearest* measured row (:func:`nearest`).
Nearest = same model, then same tensor-parallel size, same CUDA-graph mode, same method (else dense,
else any), then the handler's decode graphs as the grid runs them (``engine.handler_graphs``: with
graphs on, a row of a method that decodes through the handler - Quest, SnapKV, Ada-SnapKV and their
combinations, :func:`decodes_through_handler` - measured with them is preferred, whatever its length;
rows without them - graphs off, blank as in the rows from before the graphs, or stock vLLM - are the
fallback where a method has no such row; dense and prefill-only rows are never told apart by it),
nearest sparsity, concurrency, length, output tokens, with the handler preferred over stock vLLM and
later rows over earlier ones. If that row is the run's own setting (all of these equal; the
handler may differ, its overhead was measured at 0.98-1.09x, and so may its graphs: a graph-off row of
the run's own setting still counts as measured) the run is **measured**; otherwise it is
**extrapolated**: the resource model's time per sample for the run (``planning.resources.predict_phases``,
dense, engine start left out) times the ratio measured / modelled at that row. So a sparse method
measured at one length carries its measured speed-up to the others, and a method never measured runs
at the speed of dense. A row of another card than the estimate's is **converted** the same way: its
ratio on its own card (``planning.cards``) carried to the estimate's card. Stock vLLM rows with
``cuda_graphs`` ``full`` (vLLM's default, a benchmark-only baseline the grid never runs) are ignored
(:func:`grid_rows`).

Engine starts are added unscaled, one per job (``planning.jobs``: with ``engine.methods_per_job`` N > 1
one per chunk of at most N runs sharing (dataset, output budget), whose prefill is paid once where the
chunk shares prompts, basis "modelled sharing"); each lasts the measured ``engine_start_s`` of that
model and TP when a row has it, else the resource model's ``START_S + weights / LOAD_BYTES_PER_S``.
GPU-hours = (samples x time per sample + starts) x TP. Two variants: **budget** (every answer uses the
run's ``max_tokens``, an upper bound) and **typical** (``min(max_tokens, typical_output_tokens)``, 256
by default).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sparse_frontier.planning.cards import H100, Card, card_named
from sparse_frontier.planning.jobs import prediction_jobs
from sparse_frontier.planning.resources import engine_start_seconds, memory_plan, predict_phases
from sparse_frontier.planning.throughput_table import CALIBRATED_SOURCE, STOCK_ONLY_GRAPHS, graphs_of

TYPICAL_OUTPUT_TOKENS = 256
#: the summed numbers of a group of runs
NUMBERS = ["runs", "samples", "engine_starts", "gpu_hours_budget", "gpu_hours_typical"]


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


@functools.cache
def decodes_through_handler(method: str) -> bool:
    """Whether the handler's decode graphs run for a method setting (``a`` or ``a+b``): only Quest's
    and the KV-compressing methods' decode goes through the handler; dense and the prefill methods
    decode with vLLM's own attention, so a row of theirs says nothing about the graphs."""
    from sparse_frontier.attention import get_method_class

    return any(get_method_class(part).phase in ("decode", "kv") for part in method.split("+"))


def nearest(setting: Setting, rows: list[dict[str, Any]], handler_graphs: bool = True) -> tuple[dict[str, Any], bool]:
    """The measured row closest to ``setting`` and whether it *is* that setting (see the module doc);
    ``handler_graphs``: whether the grid's handler replays its decode graphs (``engine.handler_graphs``)."""
    if not rows:
        raise ValueError("the throughput table has no rows: nothing to extrapolate from")
    graphs = "on" if handler_graphs else "off"

    def distance(indexed):
        i, r = indexed
        method_rank = 0 if r["method"] == setting.method else 1 if r["method"] == "dense" else 2
        return (
            r["model"] != setting.model,
            r["tensor_parallel_size"] != setting.tensor_parallel_size,
            r["cuda_graphs"] != setting.cuda_graphs,
            method_rank,
            decodes_through_handler(r["method"]) and graphs_of(r) != graphs,
            abs(r["sparsity"] - setting.sparsity),
            _log_gap(r["concurrency"], setting.concurrency),
            _log_gap(r["length"], setting.length),
            _log_gap(r["output_tokens"], setting.output_tokens),
            r["handler"] != "on",
            -i,
        )

    row = min(enumerate(rows), key=distance)[1]
    return row, row_setting(row) == setting


def in_flight(
    model: Mapping[str, Any],
    engine: Mapping[str, Any],
    length: int,
    output_tokens: int,
    tensor_parallel_size: int,
    card: Card = H100,
) -> int:
    """Sequences a job runs at once: ``engine.batch_size``, fewer where their KV cache does not fit
    (the resource model's memory plan on ``card``; at least one)."""
    plan = memory_plan(model, length + output_tokens, engine, tensor_parallel_size, card.memory)
    return max(1, plan.concurrency)


def _modelled_phases(
    model: Mapping[str, Any], engine: Mapping[str, Any], setting: Setting, card: Card
) -> tuple[float, float]:
    """The resource model's steady-state (prefill, decode) seconds per sample at ``setting`` on ``card``."""
    model = dict(model, tensor_parallel_size=setting.tensor_parallel_size)
    samples = 100 * setting.concurrency
    key = {"length": setting.length, "max_tokens": setting.output_tokens, "samples": samples}
    _, prefill, decode = predict_phases(model, key, dict(engine, batch_size=setting.concurrency), card)
    return prefill / samples, decode / samples


def modelled_seconds_per_sample(
    model: Mapping[str, Any], engine: Mapping[str, Any], setting: Setting, card: Card = H100
) -> float:
    """The resource model's steady-state time per sample on ``card`` (dense; engine start left out)."""
    return sum(_modelled_phases(model, engine, setting, card))


def prefill_fraction(model: Mapping[str, Any], engine: Mapping[str, Any], setting: Setting, card: Card = H100) -> float:
    """The share of a sample's time the resource model gives its prefill (the rest: decode)."""
    prefill, decode = _modelled_phases(model, engine, setting, card)
    return prefill / (prefill + decode)


def row_setting(row: Mapping[str, Any]) -> Setting:
    return Setting(
        row["model"],
        row["tensor_parallel_size"],
        row["cuda_graphs"],
        row["length"],
        row["method"],
        row["sparsity"],
        row["output_tokens"],
        row["concurrency"],
    )


def describe(row: Mapping[str, Any]) -> str:
    graphs = f" graphs {row['handler_graphs']}" if row.get("handler_graphs") else ""
    return (
        f"{row['model']} TP{row['tensor_parallel_size']} {row['cuda_graphs']} {row['method']}@{row['sparsity']:g} "
        f"L{row['length']} out{row['output_tokens']} x{row['concurrency']} handler {row['handler']}{graphs}"
    )


def row_card(row: Mapping[str, Any], default: Card = H100) -> Card:
    """The card a row was measured on, as the resource model knows it (``default`` if it knows none)."""
    return card_named(str(row["card"])) or default


class Estimator:
    """Time per sample and engine start of any setting on ``card``, from a throughput table (rows of
    that card, or of another: converted by the resource model) and the config's models."""

    def __init__(
        self, rows: list[dict[str, Any]], models: Mapping[str, Any], engine: Mapping[str, Any], card: Card = H100
    ):
        self.rows, self.models, self.engine, self.card = grid_rows(rows), models, engine, card
        self.handler_graphs = bool(engine.get("handler_graphs", True))  # the schema's default
        self._cache: dict[Setting, tuple[float, str, dict]] = {}
        self._prefill: dict[Setting, float] = {}

    def model(self, name: str) -> dict:
        if name not in self.models:
            raise ValueError(f"unknown model {name!r}; the config defines: {', '.join(sorted(self.models))}")
        return dict(self.models[name], name=name)

    def seconds_per_sample(self, setting: Setting) -> tuple[float, str, dict]:
        """(seconds, "measured" or "extrapolated", the row used)."""
        if setting not in self._cache:
            row, exact = nearest(setting, self.rows, self.handler_graphs)
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
            r["engine_start_s"]
            for r in self.rows
            if r["engine_start_s"]
            and (r["model"], r["tensor_parallel_size"], r["cuda_graphs"]) == (model, tensor_parallel_size, cuda_graphs)
        )
        if starts:
            return starts[len(starts) // 2], "measured"
        return engine_start_seconds(self.model(model), self.engine), "modelled"


def estimate(
    config: Mapping[str, Any],
    rows: list[dict[str, Any]],
    typical_output_tokens: int = TYPICAL_OUTPUT_TOKENS,
    card: Card = H100,
):
    """GPU-hours of every run of ``config``, grouped per (model, TP, length, method): a list of dicts.

    Each group has runs, samples, engine_starts, gpu_hours_budget/typical, basis_budget/typical
    ("measured", "extrapolated", "converted", "modelled sharing", or "mixed" when its runs differ) and
    the measured rows it used.
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
        g = groups.setdefault(
            (k.model, tp, k.length, k.method),
            {
                "model": k.model,
                "tensor_parallel_size": tp,
                "length": k.length,
                "method": k.method,
                **{n: 0 for n in NUMBERS},
                "measured_budget": 0,
                "measured_typical": 0,
                "basis_budget": set(),
                "basis_typical": set(),
                "rows_used": set(),
            },
        )
        start_s, _ = est.start_seconds(k.model, tp, engine["cuda_graphs"])
        starts, sharing = jobs[k]
        g["runs"] += 1
        g["samples"] += k.samples
        g["engine_starts"] += starts
        for variant, out in (("budget", k.max_tokens), ("typical", min(k.max_tokens, typical_output_tokens))):
            conc = in_flight(est.model(k.model), engine, k.length, out, tp, card)
            setting = Setting(
                k.model, tp, engine["cuda_graphs"], k.length, k.method, run_sparsity(run.method_params), out, conc
            )
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
        m = models.setdefault(
            g["model"],
            {
                "model": g["model"],
                "tensor_parallel_size": g["tensor_parallel_size"],
                **{n: 0 for n in NUMBERS},
                "measured_budget": 0,
                "measured_typical": 0,
            },
        )
        for n in NUMBERS:
            m[n] += g[n]
        for variant in ("budget", "typical"):
            m[f"measured_{variant}"] += g[f"measured_{variant}"]
    rows = list(models.values())
    total = {"model": "total", "tensor_parallel_size": None}
    for n in NUMBERS + ["measured_budget", "measured_typical"]:
        total[n] = sum(r[n] for r in rows)
    return rows + [total]


def representative(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows an estimate may use, rows left out). Left out: rows of a calibrated method (Vertical-Slash,
    FlexPrefill, or a combination with one) measured without a calibration table: those calibrate on
    every call (a binary search per layer and prompt), which no grid run does (rule
    calibrate_attention writes the table first), so their speed says nothing about the grid's."""
    from sparse_frontier.calibrate import needs_calibration

    left_out = [r for r in rows if needs_calibration(r["method"]) and CALIBRATED_SOURCE not in str(r["source"])]
    return [r for r in rows if r not in left_out], left_out


def grid_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a grid run may be estimated from: all but those of a ``cuda_graphs`` only stock vLLM
    runs (``full``, vLLM's FULL_AND_PIECEWISE: ``benchmarks/throughput.py --stock-graphs full``, a
    baseline the grid, always through the handler, never runs)."""
    return [r for r in rows if r["cuda_graphs"] not in STOCK_ONLY_GRAPHS]


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
    ``cards.CARDS`` matched as part of the name, else the H100 the resource model was calibrated on."""
    known = card_named(card)
    if known is not None:
        return known, f"{known.name}: {known.memory / 1024**3:.0f} GiB"
    return H100, f"{H100.memory / 1024**3:.0f} GiB, the resource model's card"
