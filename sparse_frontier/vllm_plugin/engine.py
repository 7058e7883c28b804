"""Build a vLLM engine with the plugin active and generate from token-id prompts."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping

from sparse_frontier.vllm_plugin import ENV_METHOD

log = logging.getLogger(__name__)


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str | None
    #: the handler's measurements for this request (sparsity per phase, global layers the method
    #: applies to and sliding-window layers it leaves alone, decode steps)
    attention: dict[str, Any]

    @property
    def output_tokens(self) -> int:
        return len(self.token_ids)


def merge_ranks(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Average a request's statistics over tensor-parallel ranks (each holds an equal share of heads)."""
    merged: dict[str, Any] = {}
    for name in per_rank[0]:
        values = [r.get(name) for r in per_rank if r.get(name) is not None]
        if not values:
            merged[name] = None
        elif name in ("layers", "sliding_layers", "prompt_tokens", "decode_steps"):
            merged[name] = max(values)
        else:
            merged[name] = sum(values) / len(values)
    merged["tp_ranks"] = len(per_rank)
    return merged


def _matches(internal_id: str, external_id: str) -> bool:
    """vLLM may suffix the id it was given with '-<8 hex>' inside the engine."""
    return internal_id == external_id or internal_id.rsplit("-", 1)[0] == external_id


def engine_environment(engine: Mapping[str, Any], method: Mapping[str, Any]) -> dict[str, str]:
    """Environment the engine's processes need; set before vLLM is imported so children inherit it."""
    env = {ENV_METHOD: json.dumps(dict(method))}
    if engine["device"] == "cpu":
        env.update(
            VLLM_CPU_KVCACHE_SPACE=str(engine["cpu_kvcache_space_gib"]),
            OMP_NUM_THREADS=str(engine["cpu_threads"]),
            # One process instead of three: fastest on small CPUs, and the handler's statistics
            # are then read in-process.
            VLLM_ENABLE_V1_MULTIPROCESSING="0",
        )
    else:
        # Workers are separate processes; collective_rpc ships our stats function to them. Spawned,
        # not forked: a caller that touched CUDA first (a benchmark reading the card) would leave a
        # forked engine core unable to initialise CUDA.
        env.update(VLLM_ALLOW_INSECURE_SERIALIZATION="1")
        env.setdefault("VLLM_WORKER_MULTIPROC_METHOD", os.environ.get("VLLM_WORKER_MULTIPROC_METHOD", "spawn"))
    return env


def yarn_overrides(hf_config: Any, max_model_len: int, original: int | None) -> dict[str, Any] | None:
    """``hf_overrides`` giving a model YaRN rope scaling with factor ``max_model_len / original``.

    Upstream's rule for Qwen 2.5 beyond its native 32k. transformers 5 keeps rope settings in
    ``rope_parameters`` (with rope_theta inside), older releases in ``rope_scaling``.
    """
    if not original or max_model_len <= original:
        return None
    yarn = {"rope_type": "yarn", "factor": max_model_len / original, "original_max_position_embeddings": original}
    if hasattr(hf_config, "rope_parameters"):
        base = dict(getattr(hf_config, "rope_parameters", None) or {})
        base.setdefault("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
        return {"rope_parameters": {**base, **yarn}, "max_position_embeddings": max_model_len}
    return {"rope_scaling": yarn, "max_position_embeddings": max_model_len}


def engine_arguments(
    model_location: str,
    max_model_len: int,
    engine: Mapping[str, Any],
    tensor_parallel_size: int,
    seed: int,
    yarn_original: int | None = None,
) -> dict[str, Any]:
    """Arguments of ``vllm.LLM`` for an evaluation run (see docs/plugin.md for why each is set)."""
    args: dict[str, Any] = dict(
        model=model_location,
        dtype=engine["dtype"],
        max_model_len=max_model_len,
        # The whole prompt in one forward pass: the method sees the complete prefill.
        max_num_batched_tokens=max(max_model_len, 2048),
        enable_chunked_prefill=False,
        enable_prefix_caching=False,
        tensor_parallel_size=tensor_parallel_size,
        seed=seed,
    )
    if engine["device"] == "cuda":
        args["gpu_memory_utilization"] = engine["gpu_memory_utilization"]
    if engine.get("load_format", "auto") == "dummy":  # engine dicts made by hand (tests) may leave it out
        args.update(load_format="dummy", skip_tokenizer_init=True)
    if engine["device"] == "cuda" and engine["cuda_graphs"] == "piecewise":
        # Attention stays outside the captured graphs, so the Python handler runs every call.
        args["compilation_config"] = {"cudagraph_mode": "PIECEWISE"}
    else:
        args["enforce_eager"] = True
    if yarn_original and max_model_len > yarn_original:
        from transformers import AutoConfig

        args["hf_overrides"] = yarn_overrides(AutoConfig.from_pretrained(model_location), max_model_len, yarn_original)
    return args


class Engine:
    """A vLLM ``LLM`` whose attention runs through the sparse_frontier handler."""

    def __init__(
        self,
        model_location: str,
        max_model_len: int,
        engine: Mapping[str, Any],
        method: Mapping[str, Any],
        tensor_parallel_size: int = 1,
        seed: int = 0,
        yarn_original: int | None = None,
    ):
        os.environ.update(engine_environment(engine, method))
        from vllm import LLM

        args = engine_arguments(model_location, max_model_len, engine, tensor_parallel_size, seed, yarn_original)
        log.info("starting vLLM: %s", args)
        self.llm = LLM(**args)
        self._check_handler_active()

    def _check_handler_active(self) -> None:
        """Attach the handler to each worker's model runner; fail early if it is not installed."""
        from sparse_frontier.vllm_plugin.handler import attach_runner_rpc

        self.ranks = self.llm.collective_rpc(attach_runner_rpc)
        probe = self.generate([[1, 2, 3]], max_tokens=2, seed=0)[0]
        if not (probe.attention.get("layers") or probe.attention.get("sliding_layers")):
            raise RuntimeError(
                "the sparse_frontier attention handler saw no attention call: is the package "
                "installed (entry point vllm.general_plugins) and VLLM_PLUGINS not excluding it?"
            )

    def generate(
        self,
        prompts: list[list[int]],
        max_tokens: int,
        seed: int,
        method: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
    ) -> list[Generation]:
        """Greedy generation from token ids; ``method`` overrides the engine's default for these
        prompts: one setting for all, or a list with one per prompt (a batch may mix methods)."""
        from vllm import SamplingParams, TokensPrompt

        from sparse_frontier.vllm_plugin.handler import EXTRA_ARGS_KEY, take_stats_rpc

        def sampling(spec: Mapping[str, Any] | None) -> SamplingParams:
            extra = {EXTRA_ARGS_KEY: dict(spec)} if spec else None
            return SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=seed, extra_args=extra)

        if isinstance(method, list):
            if len(method) != len(prompts):
                raise ValueError(f"{len(method)} methods for {len(prompts)} prompts: give one per prompt")
            params = [sampling(spec) for spec in method]
        else:
            params = sampling(method)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        per_rank = self.llm.collective_rpc(take_stats_rpc)
        generations = []
        for o in outputs:
            stats = [
                next((s for rid, s in rank.items() if _matches(rid, o.request_id)), None) for rank in per_rank
            ]
            if any(s is None for s in stats):
                raise RuntimeError(f"the attention handler has no statistics for request {o.request_id}")
            completion = o.outputs[0]
            generations.append(
                Generation(completion.text, list(completion.token_ids), completion.finish_reason, merge_ranks(stats))
            )
        return generations
