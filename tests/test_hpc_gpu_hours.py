"""GPU-hours of a grid from a measured throughput table (sparse_frontier/planning/, rule estimate_gpu_hours)."""

from __future__ import annotations

import csv
import functools
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import throughput_row

from sparse_frontier.planning.cards import H100, H200
from sparse_frontier.planning.estimate import (
    Estimator,
    Setting,
    decodes_through_handler,
    estimate,
    estimated_card,
    grid_rows,
    in_flight,
    modelled_seconds_per_sample,
    nearest,
    per_model,
    prefill_fraction,
    representative,
    row_setting,
    rows_of_card,
)
from sparse_frontier.planning.jobs import engine_starts
from sparse_frontier.planning.report import measured_vs_modelled, write_outputs
from sparse_frontier.planning.throughput_table import (
    CALIBRATED_SOURCE,
    COLUMNS,
    append_rows,
    key_of,
    read_table,
    upgrade_table,
)

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QWEN7B = {
    "layers": 28,
    "hidden": 3584,
    "heads": 28,
    "kv_heads": 4,
    "head_dim": 128,
    "mlp": 18944,
    "vocabulary": 152064,
    "params": 7.61e9,
}
ENGINE = {
    "device": "cuda",
    "dtype": "bfloat16",
    "batch_size": 8,
    "cuda_graphs": "piecewise",
    "gpu_memory_utilization": 0.9,
    "cpu_kvcache_space_gib": 1,
    "cpu_threads": 1,
}


def small_config(methods=("dense", "quest_90"), lengths=(16384,), methods_per_job=None):
    """2 tasks x the methods x the lengths, 10 samples each, 256 output tokens (no schema needed)."""
    engine = dict(ENGINE, **({"methods_per_job": methods_per_job} if methods_per_job else {}))
    return {
        "name": "small",
        "engine": engine,
        "models": {"qwen2.5-7b": {"source": "x", "tensor_parallel_size": 1, "architecture": QWEN7B}},
        "tasks": {"niah": {"task": "ruler_niah"}, "vt": {"task": "ruler_vt"}},
        "methods": {
            "dense": {"method": "dense"},
            "quest_90": {"method": "quest", "params": {"sparsity": 0.9}},
            "snapkv_90": {"method": "snapkv", "params": {"sparsity": 0.9}},
        },
        "experiments": {
            "e": {
                "models": ["qwen2.5-7b"],
                "tasks": ["niah", "vt"],
                "methods": list(methods),
                "lengths": list(lengths),
                "samples": 10,
                "seeds": [43],
                "max_output_tokens": 256,
            }
        },
    }


def row(**kw):
    """A 7B row of the estimate's tests: the shared throughput row with this file's measurements."""
    base = dict(
        length=16384,
        concurrency=8,
        samples_per_hour=3600,
        engine_start_s=100,
        card="TestCard",
        source="synthetic test row",
    )
    return throughput_row(**{**base, **kw})


@pytest.fixture
def table(tmp_path):
    """Dense: 1 s per sample; Quest at 0.9: 0.5 s; engine start 100 s."""
    path = tmp_path / "throughput.csv"
    append_rows(path, [row(), row(method="quest", sparsity=0.9, samples_per_hour=7200)])
    return path


def totals(config, path):
    groups = estimate(config, read_table(path, config["models"]))
    return {(g["method"], g["length"]): g for g in groups}, per_model(groups)[-1]


def test_known_grid_gives_hand_computed_gpu_hours(table):
    groups, total = totals(small_config(), table)
    # dense: 2 runs x (10 samples x 1 s + 1 start x 100 s) = 220 s; quest: 2 x (10 x 0.5 + 100) = 210 s
    assert groups[("dense", 16384)]["gpu_hours_budget"] == pytest.approx(220 / 3600)
    assert groups[("quest", 16384)]["gpu_hours_budget"] == pytest.approx(210 / 3600)
    assert total["gpu_hours_budget"] == pytest.approx(430 / 3600) == total["gpu_hours_typical"]
    assert total["runs"] == 4 and total["samples"] == 40 and total["engine_starts"] == 4
    assert total["measured_budget"] == total["measured_typical"] == 4
    assert {g["basis_budget"] for g in groups.values()} == {"measured"}


def test_model_grouped_sweeps_start_one_engine_per_chunk(table):
    # methods_per_job 2, SnapKV + Ada-SnapKV (at dense's speed; no shared prompts): each task's two
    # runs share one start -> 2 x (10 + 50) each
    config = small_config(methods=("snapkv_90", "ada_90"), methods_per_job=2)
    config["methods"]["ada_90"] = {"method": "ada_snapkv", "params": {"sparsity": 0.9}}
    _, total = totals(config, table)
    assert total["engine_starts"] == 2 and total["gpu_hours_budget"] == pytest.approx(240 / 3600)


def test_grouped_dense_prefill_runs_pay_each_prompts_prefill_once(table):
    """Dense + Quest in one chunk share each prompt's prefill (prefix caching): each of the two runs
    saves half of the prefill share f the resource model gives its setting (modelled, marked so)."""
    config = small_config(methods_per_job=2)
    groups, total = totals(config, table)
    model = dict(config["models"]["qwen2.5-7b"], name="qwen2.5-7b")
    f = prefill_fraction(model, config["engine"], Setting("qwen2.5-7b", 1, "piecewise", 16384, "dense", 0.0, 256, 8))
    assert 0.05 < f < 0.95
    assert groups[("dense", 16384)]["gpu_hours_budget"] == pytest.approx(2 * (10 * 1.0 * (1 - f / 2) + 50) / 3600)
    assert groups[("quest", 16384)]["gpu_hours_budget"] == pytest.approx(2 * (10 * 0.5 * (1 - f / 2) + 50) / 3600)
    assert {g["basis_budget"] for g in groups.values()} == {"modelled sharing"} and total["engine_starts"] == 2


def test_missing_settings_are_extrapolated_and_marked(table):
    config = small_config(methods=("dense", "snapkv_90"), lengths=(16384, 32768))
    groups, total = totals(config, table)
    assert groups[("dense", 16384)]["basis_budget"] == "measured"
    # 32k was not measured: the resource model's 32k / 16k ratio times the measured 16k time
    own = modelled_seconds_per_sample(
        config["models"]["qwen2.5-7b"], ENGINE, Setting("qwen2.5-7b", 1, "piecewise", 32768, "dense", 0.0, 256, 8)
    )
    ref = modelled_seconds_per_sample(
        config["models"]["qwen2.5-7b"], ENGINE, Setting("qwen2.5-7b", 1, "piecewise", 16384, "dense", 0.0, 256, 8)
    )
    assert groups[("dense", 32768)]["basis_budget"] == "extrapolated"
    assert groups[("dense", 32768)]["gpu_hours_budget"] == pytest.approx(2 * (10 * own / ref + 100) / 3600)
    # SnapKV has no row of its own: dense speed, marked extrapolated
    snap = groups[("snapkv", 16384)]
    assert snap["basis_budget"] == "extrapolated" and snap["gpu_hours_budget"] == pytest.approx(220 / 3600)
    assert "dense@0 L16384" in snap["rows_used"]
    assert total["measured_budget"] == 2  # the two dense 16k runs


def test_sparse_methods_use_their_own_rows_at_other_lengths(table):
    groups, _ = totals(small_config(lengths=(32768,)), table)
    dense, quest = groups[("dense", 32768)], groups[("quest", 32768)]
    # both extrapolated by the same model ratio; Quest keeps its measured 2x over dense
    assert quest["basis_budget"] == dense["basis_budget"] == "extrapolated"
    assert (quest["gpu_hours_budget"] * 3600 / 2 - 100) == pytest.approx(
        (dense["gpu_hours_budget"] * 3600 / 2 - 100) / 2
    )


def test_without_a_measured_start_the_resource_model_start_is_used(tmp_path):
    path = tmp_path / "t.csv"
    append_rows(path, [row(engine_start_s=None)])
    groups, _ = totals(small_config(methods=("dense",)), path)
    start = 120 + 7.61e9 * 2 / 1e9
    assert groups[("dense", 16384)]["gpu_hours_budget"] == pytest.approx(2 * (10 + start) / 3600)


def test_bad_tables_name_the_bad_value(tmp_path):
    config = small_config()
    path = tmp_path / "no_column.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[c for c in COLUMNS if c != "concurrency"])
        writer.writeheader()
        writer.writerow({k: v for k, v in row().items() if k != "concurrency"})
    with pytest.raises(ValueError, match="missing column.*concurrency"):
        read_table(path, config["models"])
    for bad, message in (
        (row(model="qwen9-1t"), r"unknown model 'qwen9-1t'; the config defines: qwen2.5-7b"),
        (row(method="questt"), r"line 2: .*'questt'"),
        (row(cuda_graphs="eager"), r"line 2: cuda_graphs 'eager' is not one of piecewise, none, full"),
        (row(cuda_graphs="full"), r"line 2: cuda_graphs 'full' is for stock vLLM rows only \(handler off\)"),
        (row(samples_per_hour="fast"), r"line 2: column 'samples_per_hour' is 'fast', not a number"),
        (row(card=""), r"line 2: column 'card' is empty"),
    ):
        path = tmp_path / "bad.csv"
        path.unlink(missing_ok=True)
        append_rows(path, [bad])
        with pytest.raises(ValueError, match=message):
            read_table(path, config["models"])


def test_an_estimate_uses_the_rows_of_its_card_only(tmp_path):
    """A faster card's rows never stand in for the estimated card's (H100-hours from H100 rows)."""
    path = tmp_path / "throughput.csv"
    append_rows(path, [row(card="NVIDIA H100 80GB HBM3"), row(card="NVIDIA H200", samples_per_hour=7200)])
    rows = read_table(path)
    config = small_config(methods=("dense",))
    h100 = per_model(estimate(config, rows_of_card(rows, "h100")))[-1]
    h200 = per_model(estimate(config, rows_of_card(rows, "H200")))[-1]
    assert h100["gpu_hours_budget"] == pytest.approx(2 * (10 * 1.0 + 100) / 3600)
    assert h200["gpu_hours_budget"] == pytest.approx(2 * (10 * 0.5 + 100) / 3600)
    with pytest.raises(ValueError, match=r"gpu_hours.card 'A100' matches no row.*NVIDIA H200"):
        rows_of_card(rows, "A100")


def test_another_cards_rows_are_converted_by_the_resource_model(tmp_path):
    """H100-hours from H200 rows: each row's measured / modelled ratio on the H200 is carried to the
    H100 (same FLOP rate, less bandwidth and memory), never taken as the H100's own speed; the report
    checks the conversion on every setting measured on both cards."""
    config = small_config(methods=("dense",))
    model = dict(config["models"]["qwen2.5-7b"], name="qwen2.5-7b")
    h200_row = row(card="NVIDIA H200", samples_per_hour=7200, concurrency=32, date="2026-12-01")
    setting = row_setting(h200_row)
    est = Estimator([h200_row], config["models"], config["engine"], H100)
    seconds, basis, used = est.seconds_per_sample(setting)
    ratio = 0.5 / modelled_seconds_per_sample(model, config["engine"], setting, H200)
    assert basis == "converted" and used is h200_row
    assert seconds == pytest.approx(ratio * modelled_seconds_per_sample(model, config["engine"], setting, H100))
    assert seconds > 0.5  # 32 at once: the decode reads more bytes per step than the H100's bandwidth moves as fast
    assert Estimator([h200_row], config["models"], config["engine"], H200).seconds_per_sample(setting)[:2] == (
        0.5,
        "measured",
    )

    path = tmp_path / "throughput.csv"
    append_rows(
        path, [h200_row, row(card="NVIDIA H100 80GB HBM3", samples_per_hour=6000, concurrency=32, date="2026-11-30")]
    )
    models = write_outputs(config, path, tmp_path / "h.csv", tmp_path / "h.md", card="H100", rows_card="H200")
    total = models[-1]
    assert total["measured_budget"] == 0  # no H100 row stood in
    report = (tmp_path / "h.md").read_text()
    check = report.split("## Cross-card check: H100 rows against their conversion from H200")[1]
    converted = 3600 / seconds
    assert f"| 7,200 (2026-12-01) | 6,000 (2026-11-30) | {converted:,.0f} | {converted / 6000:.2f} |" in check
    with pytest.raises(ValueError, match="rows_card 'H200' needs gpu_hours.card"):
        write_outputs(config, path, tmp_path / "h.csv", tmp_path / "h.md", rows_card="H200")


def test_runs_are_estimated_at_the_sequences_that_fit_at_once(tmp_path):
    """A grid asking for 32 at once runs what fits: the 7B shape holds 13-14 sequences of 64k on an
    80 GiB card, more on an H200; a row measured at that number is the run's own setting."""
    model = {"name": "qwen2.5-7b", "tensor_parallel_size": 1, "architecture": QWEN7B}
    engine = dict(ENGINE, batch_size=32)
    assert in_flight(model, engine, 16384, 256, 1) == 32
    h100 = in_flight(model, engine, 65536, 256, 1)
    h200 = in_flight(model, engine, 65536, 256, 1, estimated_card("NVIDIA H200")[0])
    assert 8 <= h100 < h200 <= 32
    assert in_flight(model, engine, 10**7, 256, 1) == 1  # none fits: vLLM's start fails, not 0/h
    path = tmp_path / "throughput.csv"
    append_rows(path, [row(length=65536, concurrency=h100, samples_per_hour=1000)])
    config = small_config(methods=("dense",), lengths=(65536,))
    config["engine"]["batch_size"] = 32
    (group,) = estimate(config, read_table(path))
    assert group["basis_typical"] == "measured"


def test_calibrated_methods_measured_without_a_table_are_left_out(tmp_path):
    """Vertical-Slash rows that calibrated on every call (no table, which no grid run lacks) do not
    set the estimate's speed; the report lists them."""
    rows = [
        row(),
        row(method="vertical_slash", sparsity=0.9, samples_per_hour=100),
        row(method="vertical_slash", sparsity=0.9, length=32768, source=f"bench, {CALIBRATED_SOURCE}"),
    ]
    kept, left_out = representative(rows)
    assert left_out == [rows[1]] and kept == [rows[0], rows[2]]
    path = tmp_path / "throughput.csv"
    append_rows(path, rows)
    write_outputs(small_config(methods=("dense",)), path, tmp_path / "h.csv", tmp_path / "h.md")
    report = (tmp_path / "h.md").read_text()
    assert "## Rows left out" in report and "vertical_slash@0.9 L16384 out256 x8" in report.split("## Rows left out")[1]


def test_the_estimate_ignores_stock_vllm_with_full_graphs(tmp_path):
    """Stock vLLM with vLLM's full graphs (cuda_graphs full, its default: a benchmark-only baseline
    for the throughput report) is never run by the grid: the estimate and its report are what they
    are without that row."""
    handler = throughput_row(engine_start_s=100)
    full = throughput_row(cuda_graphs="full", handler="off", handler_graphs=None, samples_per_hour=5000)
    assert grid_rows([handler, full]) == [handler]
    config = small_config(methods=("dense",), lengths=(65536,))
    path = tmp_path / "throughput.csv"
    append_rows(path, [handler])
    alone = write_outputs(config, path, tmp_path / "a.csv", tmp_path / "a.md", tmp_path / "a_runs.csv")
    append_rows(path, [full])
    assert read_table(path)[1]["cuda_graphs"] == "full"  # a valid stock row
    both = write_outputs(config, path, tmp_path / "b.csv", tmp_path / "b.md", tmp_path / "b_runs.csv")
    assert both == alone
    for suffix in (".csv", ".md", "_runs.csv"):
        assert (tmp_path / f"b{suffix}").read_text() == (tmp_path / f"a{suffix}").read_text()


@functools.lru_cache(maxsize=1)
def paper_grid() -> dict[tuple[str, int, str], tuple[int, int]]:
    """config/config.yaml's runs and samples per (model, length, method), as the estimates group them."""
    from sparse_frontier.config import expand_runs, load_config

    groups: dict[tuple[str, int, str], tuple[int, int]] = {}
    for run in expand_runs(load_config(REPO / "config/config.yaml")):
        k = run.key
        runs, samples = groups.get((k.model, k.length, k.method), (0, 0))
        groups[k.model, k.length, k.method] = (runs + 1, samples + k.samples)
    return groups


def paper_grid_runs() -> int:
    """The number of runs of config/config.yaml's grid (15,399 when written)."""
    return sum(runs for runs, _ in paper_grid().values())


def test_shipped_table_and_grid(tmp_path):
    """The committed table holds only earlier measurements (each with its source); the grid's estimate."""
    from sparse_frontier.config import load_config

    rows = read_table(REPO / "benchmarks/results/throughput.csv")
    assert rows and all(r["source"] and r["card"] for r in rows)
    config = load_config(REPO / "config/config.yaml")
    n_runs = paper_grid_runs()
    models = write_outputs(
        config,
        REPO / "benchmarks/results/throughput.csv",
        tmp_path / "g.csv",
        tmp_path / "g.md",
        tmp_path / "g_runs.csv",
        card=config["gpu_hours"]["card"],
    )
    total = models[-1]
    assert total["model"] == "total" and total["runs"] == n_runs and len(models) == 10
    assert 0 < total["gpu_hours_typical"] < total["gpu_hours_budget"]
    by = {m["model"]: m["gpu_hours_budget"] for m in models}
    assert by["qwen2.5-72b"] > by["qwen2.5-32b"] > by["qwen2.5-14b"] > by["qwen2.5-7b"]
    assert models[0]["measured_typical"] > 0  # Qwen2.5-7B 16k dense at 256 out, 8 at once, piecewise
    assert "| piecewise | off | 16384 | dense | 0 | 256 | 8 | 4,999 |" in (tmp_path / "g.md").read_text()
    detail = list(csv.DictReader(open(tmp_path / "g_runs.csv")))
    assert sum(int(r["runs"]) for r in detail) == n_runs
    assert {r["basis_budget"] for r in detail} <= {"measured", "extrapolated", "mixed"}


def test_uncalibrated_model_is_within_2x_of_every_measurement_at_8_or_more_at_once():
    from sparse_frontier.config import load_config

    config = load_config(REPO / "config/config.yaml")
    rows = read_table(REPO / "benchmarks/results/throughput.csv", config["models"])
    checked = 0
    for r in measured_vs_modelled(rows, config["models"], config["engine"]):
        if r["concurrency"] >= 8 and r["method"] == "dense":  # the resource model is dense attention
            assert 0.5 < r["measured_over_modelled"] < 2, r
            checked += 1
    assert checked >= 6


def test_rule_writes_the_tables(tmp_path):
    cmd = [
        str(BIN / "snakemake"),
        "--cores",
        "1",
        "estimate_gpu_hours",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "config/config.yaml"),
        "--config",
        f"gpu_hours={{'throughput': '{REPO / 'benchmarks/results/throughput.csv'}'}}",
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    rows = list(csv.DictReader(open(tmp_path / "results/tables/gpu_hours.csv")))
    assert rows[-1]["model"] == "total" and int(rows[-1]["runs"]) == paper_grid_runs()
    assert (tmp_path / "results/tables/gpu_hours.md").read_text().startswith("# GPU-hours of the grid")
    assert (tmp_path / "logs/tables/gpu_hours.log").exists()


def test_engine_starts_of_the_paper_grid_match_the_planned_sweep_jobs():
    from sparse_frontier.config import expand_runs, load_config
    from sparse_frontier.sweeps import plan_sweeps

    runs = expand_runs(load_config(REPO / "config/config.yaml"))
    assert sum(engine_starts(runs, 1).values()) == len(runs)
    for per_job in (8, 55):
        assert sum(engine_starts(runs, per_job).values()) == pytest.approx(len(plan_sweeps(runs, per_job)))


@pytest.mark.parametrize(
    "name",
    [
        "gpu_hours",
        "gpu_hours_grouped8",
        "gpu_hours_h200",
        "gpu_hours_h200_grouped8",
        "gpu_hours_h100_from_h200",
        "gpu_hours_h100_from_h200_grouped8",
    ],
)
def test_committed_estimates_cover_the_paper_grid(name):
    """benchmarks/results/gpu_hours* describe config/config.yaml's grid as it is: a grid change that
    leaves them stale (python benchmarks/gpu_hours.py regenerates them; docs/hpc.md) fails here."""
    n_runs = paper_grid_runs()
    models = list(csv.DictReader(open(REPO / f"benchmarks/results/{name}.csv")))
    assert models[-1]["model"] == "total" and int(models[-1]["runs"]) == n_runs
    assert sum(int(m["runs"]) for m in models[:-1]) == n_runs
    detail = list(csv.DictReader(open(REPO / f"benchmarks/results/{name}_runs.csv")))
    assert {
        (r["model"], int(r["length"]), r["method"]): (int(r["runs"]), int(r["samples"])) for r in detail
    } == paper_grid()
    assert f"| **total** |  | {n_runs} |" in (REPO / f"benchmarks/results/{name}.md").read_text()


# -- the handler's decode graphs (handler_graphs) ----------------------------------------------------


def test_graphs_are_part_of_the_key_and_checked(tmp_path):
    path = tmp_path / "t.csv"
    append_rows(
        path,
        [
            throughput_row(),
            throughput_row(handler_graphs="off"),
            throughput_row(handler_graphs=None),
            throughput_row(handler="off", handler_graphs=None),
        ],
    )
    rows = read_table(path)
    assert len({key_of(r) for r in rows}) == 4
    assert key_of(rows[0]) == key_of(throughput_row()) and key_of(rows[2]) == key_of(
        throughput_row(handler_graphs=None)
    )
    for bad, message in (
        (throughput_row(handler_graphs="yes"), "handler_graphs 'yes' is not one of on, off"),
        (throughput_row(handler="off"), "handler_graphs must be blank where handler is off"),
    ):
        other = tmp_path / "bad.csv"
        other.unlink(missing_ok=True)
        append_rows(other, [bad])
        with pytest.raises(ValueError, match=message):
            read_table(other)


def test_an_older_table_is_upgraded_before_rows_are_appended(tmp_path):
    path = tmp_path / "old.csv"
    old = [c for c in COLUMNS if c != "handler_graphs"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old)
        writer.writeheader()
        writer.writerow({k: v for k, v in throughput_row(handler_graphs=None).items() if k in old})
    with pytest.raises(ValueError, match="upgrade_table"):
        append_rows(path, [throughput_row()])
    upgrade_table(path)
    append_rows(path, [throughput_row()])
    first, second = read_table(path)
    assert first["handler_graphs"] is None and second["handler_graphs"] == "on"


def test_the_estimate_prefers_rows_with_the_grids_handler_graphs():
    """Graphs on (the default): a Quest row with graphs, even at another length, over one without at
    the run's own length; graphs off: the graph-off/blank row; no Quest row with graphs: the fallback."""
    eager = throughput_row(method="quest", sparsity=0.9, handler_graphs=None, samples_per_hour=900)
    graphs = throughput_row(method="quest", sparsity=0.9, length=128000, concurrency=7, samples_per_hour=600)
    setting = Setting("qwen2.5-7b", 1, "piecewise", 65536, "quest", 0.9, 256, 14)
    assert nearest(setting, [eager, graphs])[0] is graphs
    assert nearest(setting, [eager, graphs], handler_graphs=False) == (eager, True)
    assert nearest(setting, [eager, throughput_row(handler_graphs="on")]) == (
        eager,
        True,
    )  # measured: graphs may differ


def test_dense_and_prefill_rows_are_not_told_apart_by_the_decode_graphs():
    """Dense and the prefill methods decode with vLLM's own attention: their run's own row (graphs off)
    stays the measured one though a graph-on row of theirs exists at another length; Quest's doesn't."""
    for method, sparsity in (("dense", 0.0), ("vertical_slash", 0.9), ("block_sparse", 0.9)):
        own = throughput_row(method=method, sparsity=sparsity, handler_graphs="off", samples_per_hour=900)
        other = throughput_row(method=method, sparsity=sparsity, length=128000, concurrency=7, samples_per_hour=600)
        setting = Setting("qwen2.5-7b", 1, "piecewise", 65536, method, sparsity, 256, 14)
        assert nearest(setting, [other, own]) == (own, True), method
    assert decodes_through_handler("quest") and decodes_through_handler("snapkv")
    assert decodes_through_handler("ada_snapkv") and decodes_through_handler("vertical_slash+quest")
    assert not decodes_through_handler("dense") and not decodes_through_handler("flexprefill")


def test_committed_estimates_are_what_the_committed_table_gives(tmp_path):
    """benchmarks/results/gpu_hours* regenerate byte for byte from the committed throughput table and
    config: new rows, or a change of the estimate's code, that leave a committed estimate stale fail here."""
    cmd = [sys.executable, str(REPO / "benchmarks/gpu_hours.py"), "--committed", str(tmp_path)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 18  # six estimates, three files each
    stale = [n for n in written if (tmp_path / n).read_bytes() != (REPO / "benchmarks/results" / n).read_bytes()]
    assert not stale, f"stale in benchmarks/results: {stale}; run python benchmarks/gpu_hours.py --committed"
    refused = subprocess.run([*cmd, "--card", "H200"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "with their own settings; drop --card" in refused.stderr
