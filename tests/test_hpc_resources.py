"""GPU, memory and runtime of predict jobs: the tensor-parallel rule of docs/hpc.md holds for the paper grid."""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path

import pytest

from sparse_frontier.config import expand_runs, load_config
from sparse_frontier.planning.resources import (
    global_layers,
    kv_bytes,
    memory_plan,
    min_tensor_parallel_size,
    predict_resources,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def paper():
    config = load_config(REPO / "config/config.yaml")
    return config, expand_runs(config)


def test_config_tensor_parallel_sizes_are_the_minimum_that_fits(paper):
    config, runs = paper
    needed = defaultdict(int)
    for run in runs:
        tokens = run.key.length + run.key.max_tokens
        needed[run.key.model] = max(
            needed[run.key.model], min_tensor_parallel_size(run.model, tokens, config["engine"])
        )
    assert set(needed) == set(config["models"])
    for name, model in config["models"].items():
        assert model["tensor_parallel_size"] == needed[name], name
    # upstream's sizes (paper.md): 7B 1, 14B 1, 32B 2, 72B 4
    assert [needed[f"qwen2.5-{s}"] for s in ("7b", "14b", "32b", "72b")] == [1, 1, 2, 4]


def test_one_gpu_fewer_does_not_fit(paper):
    config, runs = paper
    longest = {}
    for run in runs:
        longest[run.key.model] = max(longest.get(run.key.model, 0), run.key.length + run.key.max_tokens)
    for name, model in config["models"].items():
        model = dict(model, name=name)
        tp = model["tensor_parallel_size"]
        assert memory_plan(model, longest[name], config["engine"], tp).fits
        if tp > 1:
            assert not memory_plan(model, longest[name], config["engine"], tp // 2).fits, name


def test_gemma_sliding_window_layers_keep_only_their_window(paper):
    config, _ = paper
    gemma = config["models"]["gemma3-12b"]["architecture"]
    assert global_layers(gemma) == 8  # layers 6, 12, ..., 48 of 48
    dense = {k: v for k, v in gemma.items() if k not in ("sliding_window", "global_every")}
    assert global_layers(dense) == 48
    assert kv_bytes(gemma, 65536, 2) < kv_bytes(dense, 65536, 2) / 5
    assert kv_bytes(gemma, 512, 2) == kv_bytes(dense, 512, 2)  # shorter than the window: no saving


def test_resources_grow_with_attempt_length_and_model(paper):
    config, runs = paper
    by = {(r.key.model, r.key.length, r.key.method): r.as_dict() for r in runs if r.key.task == "ruler_niah"}
    run = by[("qwen2.5-32b", 65536, "dense")]
    first, third = predict_resources(run, 1), predict_resources(run, 3)
    assert third == {"mem_mb": 3 * first["mem_mb"], "runtime": 3 * first["runtime"], "threads": first["threads"]}
    assert (
        predict_resources(by[("qwen2.5-7b", 128000, "dense")], 1)["runtime"]
        > predict_resources(by[("qwen2.5-7b", 16384, "dense")], 1)["runtime"]
    )
    assert (
        predict_resources(by[("qwen2.5-72b", 16384, "dense")], 1)["mem_mb"]
        > predict_resources(by[("qwen2.5-7b", 16384, "dense")], 1)["mem_mb"]
    )
    with pytest.raises(ValueError, match="attempt must be 1 or more, got 0"):
        predict_resources(run, 0)


def test_cpu_jobs_count_a_set_of_cores_and_kv_space_per_tensor_parallel_rank():
    """On CPU each rank is a process with its own cores and KV-cache space (vllm_plugin/engine.py binds
    them): the scheduler must count them all. On a GPU the rank's work is on its card."""
    config = load_config(REPO / "config/demo.yaml")
    run = next(r for r in expand_runs(config)).as_dict()
    one = predict_resources(run, 1)
    two = predict_resources(dict(run, model=dict(run["model"], tensor_parallel_size=2)), 1)
    assert one["threads"] == config["engine"]["cpu_threads"] and two["threads"] == 2 * one["threads"]
    assert two["mem_mb"] == 2 * one["mem_mb"] and two["runtime"] == one["runtime"]
    gpu = predict_resources(
        dict(run, engine=dict(run["engine"], device="cuda"), model=dict(run["model"], tensor_parallel_size=2)), 1
    )
    assert gpu["threads"] == config["engine"]["cpu_threads"]


def test_runtime_matches_the_measured_7b_throughput():
    """The estimate is calibrated on the H100 numbers of ../shared/spec/vllm.md (7B, 16k in, 256 out, 8 at once)."""
    from sparse_frontier.planning.resources import SAFETY, predict_seconds

    config = load_config(REPO / "config/config.yaml")
    model = dict(config["models"]["qwen2.5-7b"], name="qwen2.5-7b")
    key = {"length": 16384, "max_tokens": 256, "samples": 3476}  # one hour at the measured 3,476 samples/h
    hours = predict_seconds(model, key, dict(config["engine"], batch_size=8)) / 3600
    assert 0.7 < hours < 1.5 and SAFETY >= 1


def test_missing_architecture_and_oversized_models_are_named(paper):
    config, _ = paper
    model = {k: v for k, v in config["models"]["qwen2.5-7b"].items() if k != "architecture"}
    with pytest.raises(ValueError, match="'qwen' has no 'architecture' block"):
        min_tensor_parallel_size(dict(model, name="qwen"), 16384, config["engine"])
    huge = copy.deepcopy(config["models"]["qwen2.5-72b"])
    huge["architecture"]["params"] = 2e12
    with pytest.raises(ValueError, match=r"'huge' does not fit 17408 tokens on 8 GPUs.*\(1, 2, 4, 8\)"):
        min_tensor_parallel_size(dict(huge, name="huge"), 17408, config["engine"])
