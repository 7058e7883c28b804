"""Build a vLLM engine with the plugin active and generate from token-id prompts."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sparse_frontier.vllm_plugin import ENV_HANDLER_GRAPHS, ENV_METHOD, ENV_PREFIX_CACHING

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


#: vLLM's CPU thread binding: per rank core lists separated by "|" ("auto": a NUMA node per rank)
CPU_BIND = "VLLM_CPU_OMP_THREADS_BIND"


def cpu_rank_cores(tensor_parallel_size: int, cpu_threads: int, cores: Iterable[int] | None = None) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for tensor-parallel ranks on CPU: rank i gets its own
    ``min(cpu_threads, cores // ranks)`` of this process's cores ("0|1"). vLLM's "auto" binds one
    NUMA node per rank and fails where there are fewer nodes than ranks (a laptop, CI)."""
    cores = sorted(os.sched_getaffinity(0) if cores is None else cores)
    if len(cores) < tensor_parallel_size:
        raise ValueError(
            f"tensor_parallel_size {tensor_parallel_size} on CPU needs a core per rank; this process may use "
            f"{len(cores)} (cores {cores}): use tensor_parallel_size <= {len(cores)}, or set "
            "VLLM_CPU_OMP_THREADS_BIND yourself (vLLM's format, e.g. '0|0' to share a core)"
        )
    per_rank = max(1, min(cpu_threads, len(cores) // tensor_parallel_size))
    ranks = [cores[i * per_rank : (i + 1) * per_rank] for i in range(tensor_parallel_size)]
    return "|".join(",".join(map(str, rank)) for rank in ranks)


def engine_environment(
    engine: Mapping[str, Any],
    method: Mapping[str, Any],
    prefix_caching: bool = False,
    tensor_parallel_size: int = 1,
) -> dict[str, str]:
    """Environment the engine's processes need; set before vLLM is imported so children inherit it."""
    env = {ENV_METHOD: json.dumps(dict(method)), ENV_PREFIX_CACHING: "1" if prefix_caching else "0"}
    # The handler's own decode graphs (vllm_plugin/decode_graphs.py): CUDA only, on unless the config says no.
    graphs = engine["device"] == "cuda" and engine.get("handler_graphs", True)
    env[ENV_HANDLER_GRAPHS] = "1" if graphs else "0"
    if engine["device"] == "cpu":
        env.update(
            VLLM_CPU_KVCACHE_SPACE=str(engine["cpu_kvcache_space_gib"]),
            OMP_NUM_THREADS=str(engine["cpu_threads"]),
            # One process instead of three: fastest on small CPUs, and the handler's statistics
            # are then read in-process.
            VLLM_ENABLE_V1_MULTIPROCESSING="0",
        )
        if tensor_parallel_size > 1 and CPU_BIND not in os.environ:
            # TP ranks are worker processes even so; each needs cores of its own (a user's binding wins)
            env[CPU_BIND] = cpu_rank_cores(tensor_parallel_size, engine["cpu_threads"])
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


#: Quest's page min/max summaries live beside vLLM's KV cache, outside its memory budget: two per
#: 16-token block of keys, 1/16 of the cache's bytes. vLLM's share shrinks so that both fit.
SUMMARY_SHARE = 1 / 16


def keeps_page_summaries(specs: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any method setting selects pages from summaries (Quest, alone or as a decode part)."""
    from sparse_frontier.attention import get_method_class

    return any(
        get_method_class(s["method"]).from_params(s.get("params", {})).page_selector() is not None for s in specs
    )


#: ``engine.cuda_graphs`` -> vLLM's ``compilation_config.cudagraph_mode`` on CUDA (``none``, and every value
#: on CPU: ``enforce_eager``). ``piecewise``: everything but attention captured, so the handler runs every
#: call. ``full``: vLLM's own default on CUDA (0.20 and 0.32): decode batches replay whole-model graphs,
#: attention included, the rest piecewise; for stock vLLM only (:data:`STOCK_ONLY_GRAPHS`).
CUDAGRAPH_MODES = {"piecewise": "PIECEWISE", "full": "FULL_AND_PIECEWISE"}
CUDA_GRAPHS = ("piecewise", "none", "full")
#: ``cuda_graphs`` values only stock vLLM (``Engine(handler=False)``) may use: the handler routes attention
#: per request, which graphs captured once cannot do (its own decode graphs: ``engine.handler_graphs``)
STOCK_ONLY_GRAPHS = ("full",)


def check_cuda_graphs(engine: Mapping[str, Any], handler: bool = True) -> None:
    """Fail on a ``cuda_graphs`` value that is unknown, or that only stock vLLM may use while the handler is on."""
    graphs = engine.get("cuda_graphs")
    if graphs is not None and graphs not in CUDA_GRAPHS:
        raise ValueError(f"engine.cuda_graphs {graphs!r} is not one of {', '.join(CUDA_GRAPHS)}")
    if handler and graphs in STOCK_ONLY_GRAPHS:
        valid = ", ".join(g for g in CUDA_GRAPHS if g not in STOCK_ONLY_GRAPHS)
        raise ValueError(
            f"engine.cuda_graphs {graphs!r} (vLLM's {CUDAGRAPH_MODES[graphs]}) is for stock vLLM only "
            f"(Engine(handler=False)): the handler routes attention per request, which vLLM's full CUDA graphs "
            f"cannot capture; through the handler use one of {valid} (its own decode graphs: engine.handler_graphs)"
        )


def engine_arguments(
    model_location: str,
    max_model_len: int,
    engine: Mapping[str, Any],
    tensor_parallel_size: int,
    seed: int,
    yarn_original: int | None = None,
    page_summaries: bool = False,
    prefix_caching: bool = False,
) -> dict[str, Any]:
    """Arguments of ``vllm.LLM`` for an evaluation run (see docs/plugin.md for why each is set).
    ``prefix_caching``: for jobs of two or more settings that share dense prompts (``attention.chunk_shares_prompts``;
    the job's other requests then get a cache of their own, :meth:`Engine.stream`)."""
    args: dict[str, Any] = dict(
        model=model_location,
        dtype=engine["dtype"],
        max_model_len=max_model_len,
        # The whole prompt in one forward pass: the method sees the complete prefill (more: several prompts).
        max_num_batched_tokens=max(max_model_len, 2048, int(engine.get("max_num_batched_tokens") or 0)),
        enable_chunked_prefill=False,
        enable_prefix_caching=prefix_caching,
        tensor_parallel_size=tensor_parallel_size,
        seed=seed,
    )
    if "batch_size" in engine:  # sequences at once; a job hands over all its prompts (Engine.stream)
        args["max_num_seqs"] = int(engine["batch_size"])
    if engine["device"] == "cuda":
        # page_summaries: the KV cache gets 16/17 of what it would, the summaries the rest
        share = 1 / (1 + SUMMARY_SHARE) if page_summaries else 1.0
        args["gpu_memory_utilization"] = engine["gpu_memory_utilization"] * share
    if engine.get("load_format", "auto") == "dummy":  # engine dicts made by hand (tests) may leave it out
        args.update(load_format="dummy", skip_tokenizer_init=True)
    check_cuda_graphs(engine, handler=False)  # whether the handler may use it: Engine checks
    if engine["device"] == "cuda" and engine["cuda_graphs"] in CUDAGRAPH_MODES:
        # piecewise: attention stays outside the captured graphs, so the Python handler runs every call
        args["compilation_config"] = {"cudagraph_mode": CUDAGRAPH_MODES[engine["cuda_graphs"]]}
    else:
        args["enforce_eager"] = True
    if yarn_original and max_model_len > yarn_original:
        from transformers import AutoConfig

        args["hf_overrides"] = yarn_overrides(AutoConfig.from_pretrained(model_location), max_model_len, yarn_original)
    return args


class Engine:
    """A vLLM ``LLM`` whose attention runs through the sparse_frontier handler (``handler=False``: stock
    vLLM, the plugin inactive in every process of the engine; for comparisons)."""

    def __init__(
        self,
        model_location: str,
        max_model_len: int,
        engine: Mapping[str, Any],
        method: Mapping[str, Any],
        tensor_parallel_size: int = 1,
        seed: int = 0,
        yarn_original: int | None = None,
        request_methods: Iterable[Mapping[str, Any]] = (),
        handler: bool = True,
    ):
        """``request_methods``: the settings requests will ask for besides ``method`` (a sweep's), so
        that memory is left for what they keep beside the KV cache. ``handler=False``: stock vLLM
        with the same engine arguments (memory share included, so its KV cache is the same size):
        no method reaches the engine's processes, so the plugin's entry point installs nothing
        (checked after start-up); requests run dense and their ``attention`` statistics are empty.
        Only stock vLLM may take ``engine["cuda_graphs"] == "full"`` (ValueError otherwise:
        :func:`check_cuda_graphs`)."""
        check_cuda_graphs(engine, handler)
        specs = [method, *request_methods]
        #: requests of one prompt reuse its cached KV (two or more dense-prefill settings): hand them over together
        from sparse_frontier.attention import chunk_shares_prompts

        self.shares_prompts = chunk_shares_prompts(specs)
        self.default_method = dict(method)
        self.handler = handler
        env = engine_environment(engine, method, self.shares_prompts, tensor_parallel_size)
        if not handler:  # without the method variable the entry point returns at once (vllm_plugin.register)
            del env[ENV_METHOD]
            os.environ.pop(ENV_METHOD, None)
        os.environ.update(env)
        from vllm import LLM

        args = engine_arguments(
            model_location,
            max_model_len,
            engine,
            tensor_parallel_size,
            seed,
            yarn_original,
            page_summaries=keeps_page_summaries(specs),
            prefix_caching=self.shares_prompts,
        )
        log.info("starting vLLM: %s", args)
        try:
            self.llm = LLM(**args)
        finally:
            # The ranks are bound once started: a later engine of another size must not inherit our binding.
            if CPU_BIND in env:
                os.environ.pop(CPU_BIND, None)
        self.max_num_seqs = int(self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs)
        self._request_ids = itertools.count()
        self._stats: list[dict[str, dict[str, Any]]] = []
        if handler:
            self._check_handler_active()
        else:
            self._check_handler_inactive()

    def kv_cache_blocks(self) -> tuple[int, int]:
        """(blocks, tokens per block) of the engine's KV cache, as vLLM sized it at start-up
        (``cache_config.num_gpu_blocks``, set after start-up on CPU too; vLLM 0.20 and 0.32)."""
        cache = self.llm.llm_engine.vllm_config.cache_config
        return int(cache.num_gpu_blocks or 0), int(cache.block_size)

    def kv_cache_tokens(self) -> int:
        """Tokens the engine's KV cache holds (for a hybrid model, a rough figure: its cache groups share the blocks)."""
        blocks, size = self.kv_cache_blocks()
        return blocks * size

    def sequences_that_fit(self, tokens_per_sequence: int) -> int:
        """How many sequences of ``tokens_per_sequence`` (prompt + output) the KV cache holds at once,
        each taking whole blocks (0 if none fits)."""
        blocks, size = self.kv_cache_blocks()
        return blocks // max(1, -(-tokens_per_sequence // size))

    def prompts_cached_beside_batch(self, prompt_tokens: int, output_tokens: int) -> int:
        """How many prompts of ``prompt_tokens`` half of the KV cache holds beside a full batch of
        requests (at least 1): a window of samples whose shared prompts stay in vLLM's prefix cache
        while every setting of a sweep runs on them (``predict.shared_prompt_order``). Half: blocks
        of salted requests and of other cache groups (hybrid models) share the cache too."""
        spare = self.kv_cache_tokens() // 2 - self.max_num_seqs * (prompt_tokens + output_tokens)
        return max(1, spare // max(1, prompt_tokens))

    def _check_handler_inactive(self) -> None:
        """Stock vLLM: fail if any process of the engine has the handler installed."""
        from sparse_frontier.vllm_plugin.handler import handler_installed_rpc

        installed = self.llm.collective_rpc(handler_installed_rpc)
        if any(installed):
            raise RuntimeError(
                f"stock vLLM asked for, but the sparse_frontier handler is installed in the engine's workers "
                f"({installed}): was {ENV_METHOD} set in the environment of an earlier engine of this process?"
            )

    def _check_handler_active(self) -> None:
        """Attach the handler to each worker's model runner; fail early if it is not installed."""
        from sparse_frontier.vllm_plugin.handler import attach_runner_rpc

        self.ranks = self.llm.collective_rpc(attach_runner_rpc)
        self._stats: list[dict[str, dict[str, Any]]] = [{} for _ in self.ranks]  # per rank: request id -> latest
        # dense: the run's method would look up (or calibrate for) a 3-token prompt, a warning in its log
        probe = self.generate([[1, 2, 3]], max_tokens=2, seed=0, method={"method": "dense"})[0]
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
        """Greedy generation from token ids, in the prompts' order; ``method`` overrides the engine's
        default for these prompts: one setting for all, or a list with one per prompt (a batch may mix
        methods)."""
        if isinstance(method, list):
            if len(method) != len(prompts):
                raise ValueError(f"{len(method)} methods for {len(prompts)} prompts: give one per prompt")
            methods = method
        else:
            methods = [method] * len(prompts)
        done = dict(self.stream(zip(prompts, methods), max_tokens, seed))
        return [done[i] for i in range(len(prompts))]

    def stream(
        self,
        requests: Iterable[tuple[list[int], Mapping[str, Any] | None]],
        max_tokens: int,
        seed: int,
        pending: int | None = None,
        ignore_eos: bool = False,
    ) -> Iterator[tuple[int, Generation]]:
        """Generate for each ``(prompt token ids, method or None)`` of ``requests``; yield
        ``(position in requests, generation)`` as each request finishes.

        vLLM runs up to ``max_num_seqs`` (the engine's ``batch_size``) at once and starts the next
        request as soon as one finishes, so a slow answer never holds the others back; a caller that
        writes each answer as it comes loses nothing but the requests in flight when killed. At most
        ``pending`` (default 2 x max_num_seqs) requests are handed to vLLM ahead, so a long queue of
        long prompts is not copied into the engine at once (``pending`` below max_num_seqs caps how
        many run at once: what benchmarks/throughput.py uses to measure several concurrencies with one
        engine). ``ignore_eos``: every answer runs to ``max_tokens`` (benchmarks).
        """
        from vllm import TokensPrompt

        from sparse_frontier.vllm_plugin.handler import take_stats_rpc

        # LLMEngine.add_request / step / has_unfinished_requests: the same in vLLM 0.20 and 0.32;
        # outputs carry the id given here (vLLM suffixes it only inside the engine).
        engine = self.llm.llm_engine
        ahead = pending or 2 * self.max_num_seqs
        feed = iter(enumerate(requests))
        position: dict[str, int] = {}  # request id -> position, for requests handed to vLLM

        def top_up() -> None:
            while len(position) < ahead:
                item = next(feed, None)
                if item is None:
                    return
                index, (prompt, spec) = item
                request_id = f"sf-{next(self._request_ids)}"
                params = self._sampling(spec if self.handler else None, max_tokens, seed, ignore_eos)
                inputs = TokensPrompt(prompt_token_ids=list(prompt))
                if self.shares_prompts and not self._shares_cache(spec):
                    # A sparse prefill or a rewritten cache must neither use nor leave cached blocks:
                    # a salt of its own keeps vLLM's prefix cache from matching them to any other request.
                    inputs["cache_salt"] = request_id
                engine.add_request(request_id, inputs, params)
                position[request_id] = index

        try:
            top_up()
            while engine.has_unfinished_requests():
                finished = [o for o in engine.step() if o.finished]
                if not finished:
                    continue
                # Once per step that finished requests. vLLM's engine may run ahead of the outputs
                # read here, so a request can leave the worker (its statistics handed out once, on
                # that call) before its finished output arrives: keep each request's latest.
                if self.handler:  # stock vLLM: no statistics
                    for seen, rank in zip(self._stats, self.llm.collective_rpc(take_stats_rpc)):
                        seen.update(rank)
                for output in finished:
                    yield position.pop(output.request_id), self._generation(output, self._stats)
                top_up()
        finally:  # a caller that stops early (or an error) leaves nothing running in the engine
            if position:
                engine.abort_request(list(position))
        if position:
            raise RuntimeError(f"vLLM stopped without answering the requests at {sorted(position.values())}")

    def _shares_cache(self, spec: Mapping[str, Any] | None) -> bool:
        from sparse_frontier.attention import shares_prompts

        return shares_prompts([(spec or self.default_method)["method"]])

    @staticmethod
    def _sampling(spec: Mapping[str, Any] | None, max_tokens: int, seed: int, ignore_eos: bool = False):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        from sparse_frontier.vllm_plugin.handler import EXTRA_ARGS_KEY

        extra = {EXTRA_ARGS_KEY: dict(spec)} if spec else None
        return SamplingParams(
            temperature=0.0,
            max_tokens=max_tokens,
            seed=seed,
            ignore_eos=ignore_eos,
            extra_args=extra,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    def _generation(self, output: Any, per_rank: list[dict[str, dict[str, Any]]]) -> Generation:
        """The answer with its statistics, taken out of ``per_rank`` (one dict of request id ->
        statistics per TP rank; the latest seen, computed after the request's last forward pass);
        stock vLLM: none."""
        if not self.handler:
            completion = output.outputs[0]
            return Generation(completion.text, list(completion.token_ids), completion.finish_reason, {})
        ids = [next((rid for rid in rank if _matches(rid, output.request_id)), None) for rank in per_rank]
        stats = [rank.pop(rid) if rid is not None else None for rid, rank in zip(ids, per_rank)]
        if any(s is None for s in stats):
            raise RuntimeError(f"the attention handler has no statistics for request {output.request_id}")
        completion = output.outputs[0]
        return Generation(completion.text, list(completion.token_ids), completion.finish_reason, merge_ranks(stats))
