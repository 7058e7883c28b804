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
    output_tokens: int
    finish_reason: str | None


def engine_environment(engine: Mapping[str, Any], method: Mapping[str, Any]) -> dict[str, str]:
    """Environment the engine's processes need; set before vLLM is imported so children inherit it."""
    env = {ENV_METHOD: json.dumps({"method": method["method"], "params": dict(method["params"])})}
    if engine["device"] == "cpu":
        env.update(
            VLLM_CPU_KVCACHE_SPACE=str(engine["cpu_kvcache_space_gib"]),
            OMP_NUM_THREADS=str(engine["cpu_threads"]),
            # One process instead of three: fastest on small CPUs, and the handler's statistics
            # are then read in-process.
            VLLM_ENABLE_V1_MULTIPROCESSING="0",
        )
    else:
        # Workers are separate processes; collective_rpc ships our stats function to them.
        env.update(VLLM_ALLOW_INSECURE_SERIALIZATION="1")
    return env


def engine_arguments(
    model_location: str, max_model_len: int, engine: Mapping[str, Any], tensor_parallel_size: int, seed: int
) -> dict[str, Any]:
    """Arguments of ``vllm.LLM`` for an evaluation run (upstream's settings, see docs)."""
    args: dict[str, Any] = dict(
        model=model_location,
        dtype=engine["dtype"],
        max_model_len=max_model_len,
        # The whole prompt in one forward pass: the method sees the complete prefill.
        max_num_batched_tokens=max(max_model_len, 2048),
        enable_chunked_prefill=False,
        enable_prefix_caching=False,
        enforce_eager=engine["enforce_eager"],
        tensor_parallel_size=tensor_parallel_size,
        seed=seed,
    )
    if engine["device"] == "cuda":
        args["gpu_memory_utilization"] = engine["gpu_memory_utilization"]
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
    ):
        os.environ.update(engine_environment(engine, method))
        from vllm import LLM

        args = engine_arguments(model_location, max_model_len, engine, tensor_parallel_size, seed)
        log.info("starting vLLM: %s", args)
        self.llm = LLM(**args)
        self._check_handler_active()

    def _check_handler_active(self) -> None:
        """Fail early if the plugin did not install the handler in the worker(s)."""
        from sparse_frontier.vllm_plugin.handler import take_stats_rpc

        self.llm.collective_rpc(take_stats_rpc)  # discard profiling-run stats
        probe = self.generate([[1, 2, 3]], max_tokens=1, seed=0)
        del probe
        stats = self.take_stats()
        if not stats or not stats.get("calls"):
            raise RuntimeError(
                "the sparse_frontier attention handler saw no attention call: is the package "
                "installed (entry point vllm.general_plugins) and VLLM_PLUGINS not excluding it?"
            )

    def take_stats(self) -> dict[str, Any]:
        """Handler statistics since the last call, from rank 0 (dense: identical on every rank)."""
        from sparse_frontier.vllm_plugin.handler import take_stats_rpc

        return self.llm.collective_rpc(take_stats_rpc)[0]

    def generate(self, prompts: list[list[int]], max_tokens: int, seed: int) -> list[Generation]:
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=seed)
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        return [
            Generation(o.outputs[0].text, len(o.outputs[0].token_ids), o.outputs[0].finish_reason)
            for o in outputs
        ]
