"""The vLLM plugin on a CUDA GPU: token identity with stock vLLM, and the handler's cost.

Each engine runs in its own subprocess (the handler patches the backend class for the life of a
process), so stock vLLM (plugin off) and vLLM with the handler (plugin on) are compared on the same
card within one call. For every (model, mode in eager / piecewise CUDA graphs):

- token identity: greedy outputs of a batch of prompts of different lengths, at batch 1 and 8;
- throughput (samples/hour) with 16k-token prompts and 256 output tokens, 1 and 32 concurrent;
- overhead: one 32k-token prefill + 256 decode steps, wall time with the handler / without.

Usage (on the GPU machine, with vLLM importable):
    python benchmarks/plugin_gpu.py OUT_DIR --model tiny=PATH --model qwen7b=dummy:qwen2.5-7b \
        --modes eager piecewise [--throughput-models qwen7b]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Architecture of Qwen2.5-7B-Instruct (public config), for a dummy-weight model of the same shape.
QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "torch_dtype": "bfloat16",
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}


def write_dummy_model(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def random_prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(100, vocab - 100) for _ in range(length)] for _ in range(n)]


# --------------------------------------------------------------------------- child: one engine
def child(args) -> dict:
    import torch

    if args.plugin == "on":
        os.environ["SPARSE_FRONTIER_ATTENTION"] = json.dumps({"method": "dense", "params": {}})
    else:
        os.environ.pop("SPARSE_FRONTIER_ATTENTION", None)
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    import vllm
    from vllm import LLM, SamplingParams, TokensPrompt

    dummy = args.dummy
    max_len = args.max_model_len
    kwargs = dict(
        model=args.model_path,
        dtype="bfloat16",
        max_model_len=max_len,
        max_num_batched_tokens=max(max_len, 8192),
        enable_prefix_caching=False,
        enable_chunked_prefill=False,
        gpu_memory_utilization=0.85,
        seed=0,
        max_num_seqs=args.max_num_seqs,
        tensor_parallel_size=args.tp,
    )
    if dummy:
        kwargs.update(load_format="dummy", skip_tokenizer_init=True)
    if args.mode == "eager":
        kwargs["enforce_eager"] = True
    else:
        kwargs["compilation_config"] = {"cudagraph_mode": "PIECEWISE"}
    t0 = time.time()
    llm = LLM(**kwargs)
    result = {
        "load_s": round(time.time() - t0, 1),
        "vllm": vllm.__version__,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
    }
    if args.plugin == "on":
        from sparse_frontier.vllm_plugin.handler import attach_runner_rpc, take_stats_rpc

        llm.collective_rpc(attach_runner_rpc)

    def run(prompts, max_tokens, ignore_eos=False):
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0, ignore_eos=ignore_eos)
        start = time.perf_counter()
        outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        torch.cuda.synchronize()
        return [list(o.outputs[0].token_ids) for o in outs], time.perf_counter() - start

    vocab = args.vocab
    identity_prompts = [
        random_prompts(1, n, vocab, i)[0] for i, n in enumerate((1500, 700, 64, 3000, 250, 900, 1200, 40))
    ]
    result["identity_single"] = [run([p], 24)[0][0] for p in identity_prompts[:4]]
    result["identity_batch8"] = run(identity_prompts, 24)[0]
    if args.plugin == "on":
        per_rank = llm.collective_rpc(take_stats_rpc)
        result["handler_ranks"] = len(per_rank)
        result["handler_requests_seen"] = len(per_rank[0])
        result["handler_layers"] = max((s["layers"] for s in per_rank[0].values()), default=0)
        # Sparse methods through the handler on this backend (and across TP ranks): the measured
        # sparsity must match each method's target on every rank.
        checks = {}
        methods = args.sparse_methods
        for spec in ({"method": m, "params": {"sparsity": 0.9}} for m in methods):
            params = SamplingParams(temperature=0.0, max_tokens=16, seed=0, extra_args={"sparse_frontier": spec})
            try:
                outs = llm.generate([TokensPrompt(prompt_token_ids=identity_prompts[3])], params, use_tqdm=False)
                ranks = [list(r.values())[0] for r in llm.collective_rpc(take_stats_rpc)]
                checks[spec["method"]] = {
                    "tokens": len(outs[0].outputs[0].token_ids),
                    "per_rank": [{k: v for k, v in r.items() if k.endswith("sparsity")} for r in ranks],
                }
            except Exception as err:  # report and go on: one method's failure must not hide the rest
                checks[spec["method"]] = {"error": f"{type(err).__name__}: {err}"[:500]}
        result["sparse_checks"] = checks
    if args.throughput:
        run(random_prompts(1, 1024, vocab, 99), 8)  # warm-up
        for concurrency, n in ((1, args.samples_batch1), (args.max_num_seqs, args.max_num_seqs)):
            prompts = random_prompts(n, 16384 - 64, vocab, 1000 + concurrency)
            if concurrency == 1:
                elapsed = sum(run([p], 256, ignore_eos=True)[1] for p in prompts)
            else:
                elapsed = run(prompts, 256, ignore_eos=True)[1]
            result[f"samples_per_hour_c{concurrency}"] = round(n / elapsed * 3600)
        prompt = random_prompts(1, 32000, vocab, 7)[0]
        result["prefill32k_decode256_s"] = round(run([prompt], 256, ignore_eos=True)[1], 3)
    return result


# --------------------------------------------------------------------------- parent
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH or NAME=dummy:qwen2.5-7b")
    parser.add_argument("--modes", nargs="+", default=["eager"], choices=["eager", "piecewise"])
    parser.add_argument("--throughput-models", nargs="*", default=[])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--plugin", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--dummy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--throughput", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--vocab", type=int, default=500)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--max-num-seqs", type=int, default=32)
    parser.add_argument("--samples-batch1", type=int, default=3)
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel size")
    parser.add_argument(
        "--sparse-methods",
        nargs="*",
        default=["quest", "snapkv", "ada_snapkv", "vertical_slash", "flexprefill", "block_sparse"],
    )
    args = parser.parse_args()

    if args.child:
        print("CHILD " + json.dumps(child(args)), flush=True)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "plugin_gpu.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    for spec in args.model:
        name, _, where = spec.partition("=")
        dummy = where.startswith("dummy:")
        path = write_dummy_model(Path("/tmp") / name, QWEN25_7B) if dummy else Path(where)
        vocab = QWEN25_7B["vocab_size"] if dummy else json.loads((path / "config.json").read_text())["vocab_size"]
        throughput = name in args.throughput_models
        for mode in args.modes:
            runs = {}
            for plugin in ("off", "on"):
                cmd = [
                    sys.executable,
                    __file__,
                    "unused",
                    "--model",
                    spec,
                    "--child",
                    "--model-path",
                    str(path),
                    "--plugin",
                    plugin,
                    "--mode",
                    mode,
                    "--vocab",
                    str(vocab),
                    "--max-model-len",
                    str(32768 if throughput else 4096),
                    "--tp",
                    str(args.tp),
                ]
                cmd += ["--dummy"] if dummy else []
                cmd += ["--sparse-methods", *args.sparse_methods]
                cmd += ["--throughput"] if throughput else []
                start = time.time()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                (args.out / f"child_{name}_{mode}_tp{args.tp}_{plugin}.log").write_text(proc.stderr[-200_000:])
                lines = [l for l in proc.stdout.splitlines() if l.startswith("CHILD ")]
                if proc.returncode or not lines:
                    print(proc.stdout[-3000:], proc.stderr[-6000:], file=sys.stderr)
                    raise SystemExit(f"{name} {mode} plugin {plugin}: child failed ({proc.returncode})")
                runs[plugin] = json.loads(lines[-1][6:])
                runs[plugin]["wall_s"] = round(time.time() - start, 1)
                print(
                    f"{name} {mode} plugin={plugin}: { ({k: v for k, v in runs[plugin].items() if not k.startswith('identity')}) }",
                    flush=True,
                )
            row = {
                "model": name,
                "mode": mode,
                "tp": args.tp,
                "gpu": runs["on"]["gpu"],
                "vllm": runs["on"]["vllm"],
                "torch": runs["on"]["torch"],
                "identical_single": runs["on"]["identity_single"] == runs["off"]["identity_single"],
                "identical_batch8": runs["on"]["identity_batch8"] == runs["off"]["identity_batch8"],
                "handler_layers": runs["on"].get("handler_layers"),
                "handler_requests_seen": runs["on"].get("handler_requests_seen"),
                "handler_ranks": runs["on"].get("handler_ranks"),
                "sparse_checks": runs["on"].get("sparse_checks"),
            }
            for key in ("samples_per_hour_c1", f"samples_per_hour_c{args.max_num_seqs}", "prefill32k_decode256_s"):
                if key in runs["on"]:
                    row[f"{key}_stock"], row[f"{key}_handler"] = runs["off"][key], runs["on"][key]
                    row[f"{key}_ratio"] = round(runs["on"][key] / runs["off"][key], 3)
            print("ROW " + json.dumps(row), flush=True)
            results = [r for r in results if (r["model"], r["mode"], r.get("tp", 1)) != (name, mode, args.tp)] + [row]
            results_path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
