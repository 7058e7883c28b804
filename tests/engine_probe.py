"""Run one vLLM CPU engine (plugin on or off) over fixed prompts and print what it generated.

Used by the handler tests as a subprocess, so that stock vLLM (plugin off) and the handler run in
separate processes (the handler patches the backend class for the life of a process).
Usage: python engine_probe.py MODEL_DIR on|off|both SPECS_JSON PROMPTS_JSON MAX_TOKENS

``both`` saves an engine start's worth of processes: stock vLLM first (the plugin is not installed
yet), then, in the same process, the handler is installed and a second engine runs the specs.
"""

import json
import os
import sys

# ENGINE_PROBE_DEVICE=cuda runs the same probe on a GPU (bfloat16: FlashAttention has no float32),
# as benchmarks/handler_gpu.py does; the tests run it on the CPU.
DEVICE = os.environ.get("ENGINE_PROBE_DEVICE", "cpu")
DTYPE = "bfloat16" if DEVICE == "cuda" else "float32"
ENGINE_ARGS = dict(
    dtype=DTYPE,
    max_model_len=2048,
    max_num_batched_tokens=2048,
    enable_prefix_caching=False,
    enable_chunked_prefill=False,
    enforce_eager=True,
    seed=0,
)


def run_stock(model, prompts, max_tokens):
    from vllm import LLM, SamplingParams, TokensPrompt

    llm = LLM(model=model, **ENGINE_ARGS)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0)
    run = lambda batch: [
        list(o.outputs[0].token_ids)
        for o in llm.generate(  # noqa: E731
            [TokensPrompt(prompt_token_ids=p) for p in batch], params, use_tqdm=False
        )
    ]
    stock = {"batch": run(prompts), "single": [run([p])[0] for p in prompts]}
    del llm
    from vllm.distributed import cleanup_dist_env_and_memory

    cleanup_dist_env_and_memory()
    return stock


def run_handler(model, specs, prompts, max_tokens, results, after_stock=False):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import plugin_methods  # noqa: F401  (registers the test methods)

    from sparse_frontier.vllm_plugin.engine import Engine
    from sparse_frontier.vllm_plugin.handler import HANDLER, install

    dense = {"method": "dense", "params": {}}
    if after_stock:  # vLLM loaded its plugins (once per process) while the method was unset
        install(dense)
    settings = dict(device=DEVICE, dtype=DTYPE, cuda_graphs="none", cpu_kvcache_space_gib=1, cpu_threads=2)
    if DEVICE == "cuda":
        settings["gpu_memory_utilization"] = 0.5
    engine = Engine(model, 2048, settings, dense, seed=0)
    for name, spec in specs.items():
        rows = HANDLER.backend_rows, HANDLER.skipped_rows
        batch = engine.generate(prompts, max_tokens, 0, method=spec)
        single = [engine.generate([p], max_tokens, 0, method=spec)[0] for p in prompts]
        results[name] = {
            "batch": [g.token_ids for g in batch],
            "single": [g.token_ids for g in single],
            "stats": [g.attention for g in batch],
            "single_stats": [g.attention for g in single],
            # query rows of global layers: computed by the backend / by the handler alone
            "backend_rows": HANDLER.backend_rows - rows[0],
            "skipped_rows": HANDLER.skipped_rows - rows[1],
        }
    if "quest" in specs:  # Engine.stream with at most 2 requests in vLLM: each answered once, as in a batch
        seen = [
            (position, gen.token_ids, engine.llm.llm_engine.get_num_unfinished_requests())
            for position, gen in engine.stream(((p, specs["quest"]) for p in prompts), max_tokens, 0, pending=2)
        ]
        results["stream"] = {
            "positions": [s[0] for s in seen],
            "tokens": {s[0]: s[1] for s in seen},
            "most_unfinished": max(s[2] for s in seen),
        }
    results["mixed_calls"] = HANDLER.mixed_calls
    results["global_layers"] = sorted(HANDLER.layers_seen)
    results["sliding_layers"] = sorted(HANDLER.sliding_layers_seen)
    results["recorded_layers"] = {hook: sorted(layers) for hook, layers in plugin_methods.RecordLayers.CALLS.items()}


def run_shared(model, specs, prompts, max_tokens, results):
    """One engine for several settings, two or more of them dense-prefill ones (prefix caching on, the
    others salted apart): each prompt handed over for every setting in turn, as a sweep of them runs;
    tokens per setting and the cached prompt tokens."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import plugin_methods  # noqa: F401  (registers the test methods)

    from sparse_frontier.vllm_plugin.engine import Engine
    from sparse_frontier.vllm_plugin.handler import HANDLER

    names = list(specs)
    settings = dict(device=DEVICE, dtype=DTYPE, cuda_graphs="none", cpu_kvcache_space_gib=1, cpu_threads=2)
    if DEVICE == "cuda":
        settings["gpu_memory_utilization"] = 0.5
    engine = Engine(model, 2048, settings, specs[names[0]], seed=0, request_methods=[specs[n] for n in names[1:]])
    requests = [(p, specs[n]) for p in prompts for n in names]
    tokens = {n: [None] * len(prompts) for n in names}
    for position, gen in engine.stream(requests, max_tokens, 0):
        tokens[names[position % len(names)]][position // len(names)] = gen.token_ids
    results.update(
        tokens=tokens,
        shares_prompts=engine.shares_prompts,
        cached_prompt_tokens=HANDLER.cached_prompt_tokens,
        prefix_caching=bool(engine.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching),
    )


if __name__ == "__main__":
    model, mode, specs, prompts, max_tokens = (
        sys.argv[1],
        sys.argv[2],
        *map(json.loads, sys.argv[3:5]),
        int(sys.argv[5]),
    )
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", OMP_NUM_THREADS="2", VLLM_CPU_KVCACHE_SPACE="1")
    results = {}
    if mode in ("off", "both"):
        os.environ.pop("SPARSE_FRONTIER_ATTENTION", None)
        results["stock"] = run_stock(model, prompts, max_tokens)
    if mode == "shared":
        run_shared(model, specs, prompts, max_tokens, results)
    if mode in ("on", "both"):
        run_handler(model, specs, prompts, max_tokens, results, after_stock=mode == "both")
    print("RESULT " + json.dumps(results))
