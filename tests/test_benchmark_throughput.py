"""benchmarks/throughput.py on CPU with the tiny random-weight model: rows, resume, time budget, one engine per model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import throughput_row

from sparse_frontier.planning.resources import memory_plan
from sparse_frontier.planning.throughput_report import write_report
from sparse_frontier.planning.throughput_table import MAX_CONCURRENCY_SOURCE, append_rows, read_answers, read_table

REPO = Path(__file__).resolve().parent.parent
TINY_ARCH = {
    "layers": 2,
    "hidden": 128,
    "heads": 2,
    "kv_heads": 1,
    "head_dim": 64,
    "mlp": 256,
    "vocabulary": 512,
    "params": 2.0e5,
}


def bench(*args, timeout=600, env=None):
    cmd = [sys.executable, str(REPO / "benchmarks/throughput.py"), *map(str, args)]
    env = {**os.environ, **env} if env else None
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return result.stdout + result.stderr


@pytest.mark.slow  # several tiny-model engines, ~30 s
def test_cpu_throughput_rows_resume_and_time_budget(tmp_path, tiny_model):
    out = tmp_path / "throughput.csv"
    common = ["--lengths", 256, 512, "--output-tokens", 4, "--concurrency", 2, "--out", out, "--workdir", tmp_path]
    log = bench("--model", f"tiny={tiny_model}", "--methods", "dense", "quest=0.9", *common)
    assert "engine started" in log
    rows = read_table(out, {"tiny": {"architecture": TINY_ARCH}})
    assert [(r["length"], r["method"], r["sparsity"]) for r in rows] == [
        (256, "dense", 0.0),
        (256, "quest", 0.9),
        (512, "dense", 0.0),
        (512, "quest", 0.9),
    ]
    for r in rows:
        assert r["model"] == "tiny" and r["handler"] == "on" and r["cuda_graphs"] == "none"
        assert (
            r["output_tokens"] == 4
            and r["concurrency"] == 2
            and r["samples"] == 2
            and r["prompt_tokens"] == r["length"]
        )
        assert r["samples_per_hour"] == pytest.approx(2 / r["wall_s"] * 3600, rel=0.01)
        assert r["card"].startswith("cpu") and r["torch"] and r["vllm"] and r["engine_start_s"] > 0
        assert r["source"] == "benchmarks/throughput.py"  # real (random) weights: not the dummy loader
    quest = [r for r in rows if r["method"] == "quest"]
    assert all(0.5 < r["measured_sparsity"] < 1 for r in quest)
    assert all(r["measured_sparsity"] == 0 for r in rows if r["method"] == "dense")

    # time budget spent: nothing new is measured, no engine starts, exit 0
    log = bench(
        "--model", f"tiny={tiny_model}", "--methods", "dense", "quest=0.9", "snapkv=0.9", "--time-budget", 0, *common
    )
    assert "engine started" not in log and len(read_table(out)) == 4

    # two models: each in its own process; the one with nothing left starts no engine
    log = bench(
        "--model",
        f"tiny={tiny_model}",
        f"tiny2={tiny_model}",
        "--methods",
        "dense",
        "--time-budget",
        500,
        *common[:1],
        256,
        *common[3:],
    )
    assert (
        "tiny (handler, graphs off): 0 of 1 settings" in log and "tiny2 (handler, graphs off): 1 of 1 settings" in log
    )
    assert log.count("engine started") == 1
    rows = read_table(out)
    assert len(rows) == 5 and rows[-1]["model"] == "tiny2" and rows[-1]["length"] == 256


@pytest.mark.slow  # engines capturing and measuring, ~35 s
def test_vertical_slash_is_measured_with_a_captured_calibration_table(tmp_path, tiny_model):
    """As a grid run: the table is fitted on the model's own captured attention first (one capture
    engine per length), the benchmark's engine reads it, so no call calibrates itself; a rerun for a
    new setting reuses the table."""
    out = tmp_path / "throughput.csv"
    common = [
        "--lengths",
        256,
        "--output-tokens",
        2,
        "--concurrency",
        2,
        "--out",
        out,
        "--workdir",
        tmp_path,
        "--no-warmup",
    ]
    log = bench("--model", f"tiny={tiny_model}", "--methods", "vertical_slash=0.5", *common)
    assert "calibrating ['vertical_slash'] at [256]" in log and "calibrating on each call" not in log
    table = json.loads((tmp_path / "tiny-calibration.json").read_text())
    assert {(e["model"], e["method"], e["length"]) for e in table["entries"]} == {("tiny", "vertical_slash", 256)}
    (row,) = read_table(out)
    assert "calibration table captured on its own attention" in row["source"] and row["measured_sparsity"] > 0
    log = bench("--model", f"tiny={tiny_model}", "--methods", "vertical_slash=0.6", *common)
    assert "calibrating" not in log and len(read_table(out)) == 2


def test_bad_arguments_name_the_value(tmp_path):
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/throughput.py"),
        "--model",
        "qwen2.5-7b",
        "--lengths",
        "256",
        "--methods",
        "questt=0.9",
        "--out",
        str(tmp_path / "t.csv"),
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "questt" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(autouse=True, scope="module")
def _importable():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmarks_throughput", REPO / "benchmarks/throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks_throughput"] = module  # before running it: its dataclasses look it up
    spec.loader.exec_module(module)
    yield


def test_dummy_shapes_follow_the_config_architecture():
    from benchmarks_throughput import QWEN25_7B, dummy_hf_config

    from sparse_frontier.config import load_config

    config = load_config(REPO / "config/config.yaml")
    qwen = dummy_hf_config("qwen2.5-7b", config["models"]["qwen2.5-7b"])
    assert {k: qwen[k] for k in QWEN25_7B} == QWEN25_7B  # the shape plugin_gpu.py measured
    llama = dummy_hf_config("llama3.1-70b", config["models"]["llama3.1-70b"])
    assert (llama["num_hidden_layers"], llama["num_attention_heads"], llama["num_key_value_heads"]) == (80, 64, 8)
    assert llama["model_type"] == "llama" and llama["rope_scaling"]["rope_type"] == "llama3"
    with pytest.raises(ValueError, match="gemma3-4b=FOLDER"):
        dummy_hf_config("gemma3-4b", config["models"]["gemma3-4b"])


# -- stock vLLM, the handler's graphs, as many as fit -------------------------------------------------


@pytest.mark.slow  # two tiny-model engines (handler, then stock vLLM), ~40 s on 2 cores
def test_stock_rows_handler_graphs_and_as_many_as_fit(tmp_path, tiny_model):
    """One run, two engines (each in its own process): the handler's rows (graphs off: CPU) and stock
    vLLM's dense rows (handler off, plugin inactive: no statistics), each at as many sequences as
    fit, capped; a rerun finds every setting done and starts nothing."""
    out = tmp_path / "throughput.csv"
    args = [
        "--model",
        f"tiny={tiny_model}",
        "--lengths",
        256,
        "--output-tokens",
        4,
        "--concurrency",
        "max",
        "--max-concurrency",
        3,
        "--methods",
        "dense",
        "quest=0.9",
        "--stock",
        "--handler-graphs",
        "on",
        "off",
        "--out",
        out,
        "--workdir",
        tmp_path,
        "--no-warmup",
    ]
    log = bench(*args)
    assert log.count("engine started") == 2 and "(stock vLLM): engine started" in log
    kv_tokens = int(log.split("(handler, graphs off): engine started")[1].split("KV cache ")[1].split(" tokens")[0])
    assert kv_tokens // 272 > 3  # the cap binds: 256 + 4 tokens take 17 blocks of 16
    rows = read_table(out)
    handler = [r for r in rows if r["handler"] == "on"]
    stock = [r for r in rows if r["handler"] == "off"]
    assert [(r["method"], r["handler_graphs"]) for r in handler] == [("dense", "off"), ("quest", "off")]
    assert [(r["method"], r["handler_graphs"], r["measured_sparsity"]) for r in stock] == [("dense", None, None)]
    for r in rows:
        assert r["concurrency"] == 3 == r["samples"] and r["output_tokens"] == 4 and r["engine_start_s"] > 0
        assert f"as many as fit in the KV cache ({kv_tokens} tokens)" in r["source"]
    assert handler[1]["measured_sparsity"] > 0.5  # the handler saw Quest's requests; stock saw none
    # the same prompts at the same concurrency: dense through the handler answers stock vLLM's tokens
    answers = read_answers(out)
    digest = {(a["handler"], a["method"]): a["answers_sha256"] for a in answers}
    assert len(answers) == 3 and digest[("on", "dense")] == digest[("off", "dense")]
    assert all(len(a["first_answer_head"]) == 4 and a["samples"] == 3 for a in answers)
    report = write_report(out, tmp_path / "report").read_text()
    assert "Token identity, dense through the handler against stock vLLM" in report
    assert "x3: identical (3 answers)" in report

    log = bench(*args)
    assert "engine started" not in log
    assert "(handler, graphs off): 0 of 2 settings" in log and "(stock vLLM): 0 of 1 settings" in log


ALL_METHODS = (
    "dense",
    "quest=0.9",
    "snapkv=0.9",
    "ada_snapkv=0.9",
    "vertical_slash=0.9",
    "flexprefill=0.9",
    "block_sparse=0.9",
)


@pytest.mark.slow  # TP=4 engines (stock, calibration, handler), TP=2 and TP=1 handler engines: ~3 min on 2 cores
def test_tensor_parallel_on_cpu(tmp_path):
    """TP=2 and TP=4 on CPU (a GQA 8:4 model: 2 or 1 kv heads per rank), every method. At TP=4 dense
    through the handler answers stock vLLM's tokens, and Vertical-Slash / FlexPrefill calibrate on the
    attention captured from 4 ranks (the table TP=2 and TP=1 then use). Each method answers TP=1's
    tokens (so every rank applies it to its heads; Ada-SnapKV only its sparsity, as its budget is
    shared per rank, docs/plugin.md); the statistics merged over the worker processes equal TP=1's; the
    KV cache vLLM sizes per rank follows the resource model. TP=4 on fewer cores shares them through a
    binding set by hand, the way out the engine's error names."""
    from helpers import build_tiny_llama

    from sparse_frontier.vllm_plugin.engine import CPU_BIND

    model = build_tiny_llama(tmp_path / "tiny-gqa", heads=8, kv_heads=4)
    arch = {"tiny": {"architecture": dict(TINY_ARCH, heads=8, kv_heads=4)}}
    common = ["--model", f"tiny={model}", "--lengths", 256, "--output-tokens", 4, "--concurrency", 2, "--no-warmup"]
    common += ["--methods", *ALL_METHODS]
    cores = sorted(os.sched_getaffinity(0))
    shared = {CPU_BIND: "|".join(str(cores[i % len(cores)]) for i in range(4))}
    out, log = {tp: tmp_path / f"tp{tp}.csv" for tp in (1, 2, 4)}, {}
    for tp in (4, 2, 1):
        stock = ["--stock"] if tp == 4 else []
        env = shared if tp == 4 and len(cores) < 4 else {}
        log[tp] = bench(*common, "--tp", tp, *stock, "--out", out[tp], "--workdir", tmp_path / "w", env=env)
        assert log[tp].count("engine started") == 1 + len(stock) and f"TP {tp}," in log[tp]
        assert ("calibrating" in log[tp]) == (tp == 4), tp
    # The resource model's KV rule at TP > 1 (each rank holds kv_heads / TP heads, in a cache space of
    # its own) against the KV cache vLLM sized: 2 / 4 ranks hold twice / four times TP=1's tokens.
    plan_engine = {"dtype": "bfloat16", "gpu_memory_utilization": 0.9, "batch_size": 1}
    kv_per_rank = {
        tp: memory_plan({"name": "tiny", **arch["tiny"]}, 260, plan_engine, tp).kv_per_sequence for tp in out
    }
    for tp in (2, 4):
        tokens = {t: {int(n) for n in re.findall(rf"TP {t}, KV cache (\d+) tokens", log[t])} for t in (1, tp)}
        assert len(tokens[tp]) == len(tokens[1]) == 1, tokens
        assert kv_per_rank[1] / kv_per_rank[tp] == tp
        assert tokens[tp].pop() / tokens[1].pop() == pytest.approx(kv_per_rank[1] / kv_per_rank[tp], rel=0.01)
    rows = {tp: read_table(out[tp], arch) for tp in out}
    sparsity = {tp: {r["method"]: r["measured_sparsity"] for r in rows[tp] if r["handler"] == "on"} for tp in out}
    digest = {tp: {(a["handler"], a["method"]): a["answers_sha256"] for a in read_answers(out[tp])} for tp in out}
    assert len(sparsity[1]) == len(ALL_METHODS)
    for method, value in sparsity[1].items():
        assert (value > 0.3) == (method != "dense"), method
    assert digest[4][("on", "dense")] == digest[4][("off", "dense")]
    for tp in (2, 4):
        stock = [("off", tp)] if tp == 4 else []
        assert [(r["handler"], r["tensor_parallel_size"]) for r in rows[tp]] == stock + [("on", tp)] * len(ALL_METHODS)
        assert sparsity[tp].keys() == sparsity[1].keys()
        for method, value in sparsity[1].items():
            assert sparsity[tp][method] == pytest.approx(value, abs=0.005), (tp, method)
        assert digest[tp][("on", "dense")] != digest[tp][("on", "quest")], tp
        for method in sparsity[1].keys() - {"ada_snapkv"}:
            assert digest[tp][("on", method)] == digest[1][("on", method)], (tp, method)


def _seed(path, **kw):
    """A row of the tiny CPU model's table, as the benchmark writes it."""
    from benchmarks_throughput import card_name

    tiny = dict(model="tiny", cuda_graphs="none", handler_graphs="off", length=256, output_tokens=4, concurrency=7)
    row = throughput_row(**tiny, card=card_name("cpu"), source="benchmarks/throughput.py")
    append_rows(path, [{**row, **kw}])


@pytest.mark.parametrize(
    ("seeded", "concurrency", "left"),
    [
        ({}, "7", 0),
        ({"handler_graphs": "on"}, "7", 1),  # graphs on (a GPU row) is another setting than the CPU's off
        ({"handler_graphs": None}, "7", 1),  # blank (before the graphs) too
        ({}, "max", 1),  # 7 at once, not marked as many as fit
        ({"source": "benchmarks/throughput.py, as many as fit in the KV cache (999 tokens)"}, "max", 0),
    ],
)
def test_resume_key_has_the_graphs_and_max_resumes_marked_rows(tmp_path, seeded, concurrency, left):
    out = tmp_path / "t.csv"
    _seed(out, **seeded)
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/throughput.py"),
        "--model",
        "tiny=/nonexistent",
        "--lengths",
        "256",
        "--output-tokens",
        "4",
        "--concurrency",
        concurrency,
        "--methods",
        "dense",
        "--device",
        "cpu",
        "--time-budget",
        "0",
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"tiny (handler, graphs off): {left} of 1 settings" in result.stderr
    assert "engine started" not in result.stderr


def test_stock_graphs_on_cpu_are_one_eager_stock_engine(tmp_path):
    """``--stock-graphs piecewise full`` (implies --stock) on CPU: every engine is eager, so one stock
    engine, whose rows are ``cuda_graphs`` none: seeded, nothing is left and nothing starts."""
    out = tmp_path / "t.csv"
    _seed(out)
    _seed(out, handler="off", handler_graphs=None)
    cmd = [sys.executable, str(REPO / "benchmarks/throughput.py"), "--model", "tiny=/nonexistent", "--lengths", "256"]
    cmd += ["--output-tokens", "4", "--concurrency", "7", "--methods", "dense", "--device", "cpu", "--out", str(out)]
    result = subprocess.run([*cmd, "--stock-graphs", "piecewise", "full"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tiny (handler, graphs off): 0 of 1 settings" in result.stderr
    assert result.stderr.count("tiny (stock vLLM): 0 of 1 settings") == 1 and "engine started" not in result.stderr


def test_concurrency_argument_names_the_bad_value(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks/throughput.py"), "--model", "tiny=/x", "--lengths", "256"]
    result = subprocess.run([*cmd, "--concurrency", "most"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "'most' is neither a positive integer nor 'max'" in result.stderr


def test_sequences_that_fit_take_whole_blocks():
    from types import SimpleNamespace

    from sparse_frontier.vllm_plugin.engine import Engine

    eng = object.__new__(Engine)
    cache = SimpleNamespace(num_gpu_blocks=1000, block_size=16)
    eng.llm = SimpleNamespace(llm_engine=SimpleNamespace(vllm_config=SimpleNamespace(cache_config=cache)))
    assert eng.kv_cache_tokens() == 16000
    assert eng.sequences_that_fit(160) == 100 and eng.sequences_that_fit(161) == 90  # 11 blocks each
    assert eng.sequences_that_fit(16001) == 0


def test_variants_one_engine_each_graphs_only_on_cuda():
    from argparse import Namespace

    from benchmarks_throughput import Variant, variants

    args = Namespace(handler_graphs=["on", "off"], stock=True, stock_graphs=None)
    on, off = Variant(True, "on", "piecewise"), Variant(True, "off", "piecewise")
    assert variants(args, "cuda", "piecewise") == [Variant(False, None, "piecewise"), on, off]  # baseline first
    assert variants(args, "cpu", "piecewise") == [Variant(False, None, "none"), Variant(True, "off", "none")]
    assert variants(Namespace(handler_graphs=["on"], stock=False, stock_graphs=None), "cuda", "piecewise") == [on]
    # --stock-graphs: one stock engine per vLLM graph mode (full: vLLM's default, stock only); all eager on CPU
    args = Namespace(handler_graphs=["on"], stock=True, stock_graphs=["piecewise", "full"])
    stock = [Variant(False, None, "piecewise"), Variant(False, None, "full")]
    assert variants(args, "cuda", "piecewise") == [*stock, on]
    assert [v.label for v in stock] == ["stock vLLM, vLLM graphs piecewise", "stock vLLM, vLLM graphs full"]
    assert variants(args, "cpu", "piecewise") == [Variant(False, None, "none"), Variant(True, "off", "none")]


# -- the report: issue #18's table, targets and plot -------------------------------------------------


def table_rows():
    """H100, graphs on, as many as fit: 64k at 14 at once, 128k at 7; stock at 64k only, at 14."""
    rows = [
        throughput_row(handler="off", handler_graphs=None, samples_per_hour=1000),
        throughput_row(samples_per_hour=990),
        throughput_row(method="quest", sparsity=0.9, samples_per_hour=1600),
        throughput_row(method="snapkv", sparsity=0.9, samples_per_hour=1400),
        throughput_row(length=128000, concurrency=7, samples_per_hour=400),
        throughput_row(
            length=128000,
            concurrency=7,
            method="vertical_slash",
            sparsity=0.9,
            samples_per_hour=900,
            source=f"bench, calibration table captured on its own attention, {MAX_CONCURRENCY_SOURCE} (1 tokens)",
        ),
        throughput_row(length=128000, concurrency=7, method="quest", sparsity=0.9, samples_per_hour=500),
        throughput_row(handler_graphs="off", samples_per_hour=950),  # another group: graphs off
    ]
    return rows


def report(tmp_path, rows) -> str:
    """The report (tmp_path/out) of a table (tmp_path/throughput.csv) of these rows."""
    path = tmp_path / "throughput.csv"
    append_rows(path, rows)
    return write_report(path, tmp_path / "out").read_text()


def test_report_writes_the_table_the_targets_and_the_plot(tmp_path):
    md = report(tmp_path, table_rows())
    assert (tmp_path / "out/throughput.png").stat().st_size > 10_000
    on = md.split("handler graphs on")[1].split("## ")[0]
    assert "| setting | 64k | 128k |" in on and "| at once | 14 | 7 |" in on
    assert "| stock vLLM (dense) | 1,000 | - |" in on and "| dense (handler) | 990 | 400 |" in on
    assert "| quest 0.9 | 1.62x / 1.60x | 1.25x / - |" in on
    assert "| quest 0.9 >= 1.5x dense (handler) at 64k | 1.62x | pass |" in on
    assert "| quest 0.9 >= 1.5x dense (handler) at 128k | 1.25x | miss |" in on
    assert "| snapkv 0.9 >= 1.5x dense (handler) at 64k | 1.41x | miss |" in on
    assert "| snapkv 0.9 >= 1.5x dense (handler) at 128k | - | not evaluated (no row: snapkv 0.9 at 128k) |" in on
    assert "| vertical_slash 0.9 >= 2x dense (handler) at 128k | 2.25x | pass |" in on
    assert "| dense (handler) >= 0.95x stock vLLM at 64k | 0.99x | pass |" in on
    assert "at 128k | - | not evaluated (no row: stock vLLM (dense) at 128k) |" in on
    off = md.split("handler graphs off")[1]
    assert "| dense (handler) >= 0.95x stock vLLM at 64k | 0.95x | pass |" in off  # stock compared in each group
    assert "quest 0.9 >= 1.5x dense (handler) at 64k | - | not evaluated (no row: quest 0.9 at 64k) |" in off


def test_report_shows_stock_vllm_with_full_graphs_beside_the_piecewise_groups(tmp_path):
    """Stock vLLM with vLLM's full graphs (its default): a line of every piecewise group, a third
    speed-up, the distance of dense through the handler to it (no target), a line of the plot; the 5%
    target stays against stock vLLM at piecewise. Eager groups do not get it."""
    full = dict(cuda_graphs="full", handler="off", handler_graphs=None)
    rows = table_rows() + [
        throughput_row(**full, samples_per_hour=1250),
        throughput_row(**full, length=128000, concurrency=6, samples_per_hour=500),  # fewer fit: not comparable
        throughput_row(cuda_graphs="none", samples_per_hour=700),  # an eager group
    ]
    md = report(tmp_path, rows)
    on = md.split("vLLM graphs piecewise · 256 output tokens · handler graphs on")[1].split("## ")[0]
    assert "| stock vLLM, full graphs (vLLM's default) | 1,250 | 500 (x6) |" in on
    assert "over stock vLLM / over stock vLLM with full graphs (`*`" in on
    assert "| quest 0.9 | 1.62x / 1.60x / 1.28x | 1.25x / - / 1.00x* |" in on
    assert "| dense (handler) >= 0.95x stock vLLM at 64k | 0.99x | pass |" in on  # piecewise against piecewise
    assert "Dense through the handler against stock vLLM with full graphs (vLLM's default; for information" in on
    assert "cannot run inside vLLM's full graphs): 0.79x at 64k, 0.80x* at 128k." in on
    off = md.split("handler graphs off")[1].split("## ")[0]
    assert "| stock vLLM, full graphs (vLLM's default) | 1,250 |" in off
    eager = md.split("vLLM graphs none")[1].split("## ")[0]
    assert "full graphs" not in eager and "| dense (handler) | 700 |" in eager
    plain = tmp_path / "plain.csv"
    append_rows(plain, table_rows())
    without = write_report(plain, tmp_path / "plain").read_text()
    assert "full graphs" not in without and "| quest 0.9 | 1.62x / 1.60x | 1.25x / - |" in without


def test_report_of_a_table_without_handler_rows(tmp_path):
    path = tmp_path / "throughput.csv"
    append_rows(path, [throughput_row(handler="off", handler_graphs=None)])
    md = write_report(path, tmp_path).read_text()
    assert "No handler rows" in md and (tmp_path / "throughput.png").exists()


def test_report_shows_decode_alone_where_one_token_twins_exist(tmp_path):
    """With the same settings at 1 output token, a 256-token group shows each wave's decode seconds
    (the difference, at equal concurrency) and the speed-up over dense's decode; the 1-token group
    gets no targets (they are stated for 256 tokens)."""
    waves = {  # (method, output tokens): wall seconds of one wave of 10
        ("dense", 256): 32.4,
        ("dense", 1): 28.4,
        ("quest", 256): 30.4,
        ("quest", 1): 28.4,
        ("snapkv", 256): 31.0,  # no 1-token twin: no decode cell
    }
    rows = []
    for (method, out), wall in waves.items():
        sparsity = 0.0 if method == "dense" else 0.9
        rows.append(
            throughput_row(
                method=method,
                sparsity=sparsity,
                output_tokens=out,
                concurrency=10,
                samples=10,
                wall_s=wall,
                samples_per_hour=round(10 / wall * 3600, 1),
            )
        )
    md = report(tmp_path, rows)
    full = md.split("256 output tokens · handler graphs on")[1].split("## ")[0]
    assert "Decode alone: seconds of a wave of 256 output tokens minus" in full
    assert "| dense (handler) | 4.0 s (x10) |" in full
    assert "| quest 0.9 | 2.0 s (x10) (2.00x) |" in full
    assert "snapkv 0.9 |" not in full.split("Decode alone")[1].split("Targets")[0]
    assert "| quest 0.9 >= 1.5x dense (handler) at 64k | 1.07x | miss |" in full
    one = md.split("1 output tokens · handler graphs on")[1].split("## ")[0]
    assert "Targets:" not in one and "targets are for 256 output tokens: not evaluated here" in one
    assert "Decode alone" not in one


def test_committed_report_is_what_the_committed_table_gives(tmp_path):
    """benchmarks/results/throughput.md and .png regenerate byte for byte from the committed table (python
    benchmarks/throughput_report.py): rows added without the report fail here."""
    results = REPO / "benchmarks/results"
    write_report(results / "throughput.csv", tmp_path, None, shown="benchmarks/results/throughput.csv")
    stale = [
        n for n in ("throughput.md", "throughput.png") if (tmp_path / n).read_bytes() != (results / n).read_bytes()
    ]
    assert not stale, f"stale in benchmarks/results: {stale}; run python benchmarks/throughput_report.py"
