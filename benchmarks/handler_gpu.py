"""The handler's CPU engine checks (tests/test_handler_engine.py) on a CUDA GPU with FlashAttention 3.

Runs tests/engine_probe.py once (stock vLLM, then the handler, in one process) with
``ENGINE_PROBE_DEVICE=cuda`` over the prompts and method specs of the CPU test, and writes what held
to OUT/handler_gpu.json and .md: token identity with stock where the handler's arithmetic is the
backend's (dense; keep-all compaction), batch == one prompt at a time for every method (the batch
steps mix prefill and decode, so the backend runs on sub-batches of the step), the paged Quest
against the full-cache oracle, and the exact count of query rows the handler computed alone.
bfloat16 (FlashAttention has no float32): a method whose arithmetic differs from FlashAttention's
(``torch_dense``) may pick other tokens; it is reported, not required.

    python benchmarks/handler_gpu.py MODEL_DIR OUT_DIR     # e.g. ../shared/gpu/tiny-llama
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from test_handler_engine import LENGTHS, MAX_TOKENS, SPECS, prompts  # noqa: E402


def main(model: str, out: Path) -> int:
    import torch

    vocab = json.loads((Path(model) / "config.json").read_text())["vocab_size"]
    device = os.environ.get("ENGINE_PROBE_DEVICE", "cuda")  # cpu: a smoke run of this script
    env = dict(os.environ, ENGINE_PROBE_DEVICE=device)
    cmd = [
        sys.executable,
        str(REPO / "tests/engine_probe.py"),
        model,
        "both",
        json.dumps(SPECS),
        json.dumps(prompts(min(vocab, 500))),
        str(MAX_TOKENS),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out.mkdir(parents=True, exist_ok=True)
    (out / "handler_gpu_probe.log").write_text(proc.stderr[-100_000:])
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        print(proc.stdout[-3000:], proc.stderr[-6000:], file=sys.stderr)
        return 1
    res = json.loads(lines[-1][len("RESULT ") :])
    stock = res["stock"]
    layers = len(res["global_layers"])
    prompt_rows, decode_rows = sum(LENGTHS) * 2, (MAX_TOKENS - 1) * len(LENGTHS) * 2
    alone = {
        "torch_dense": prompt_rows + decode_rows,
        "local_window": prompt_rows,
        "decode_topk": decode_rows,
        "keep_recent": decode_rows,
        "quest": decode_rows,
    }
    checks = {
        "stock: batch == single": stock["batch"] == stock["single"],
        "dense == stock (batch, single)": res["dense"]["batch"] == stock["batch"]
        and res["dense"]["single"] == stock["single"],
        "keep_all compaction == stock (batch)": res["keep_all"]["batch"] == stock["batch"],
        "torch_dense == stock (batch; reported only)": res["torch_dense"]["batch"] == stock["batch"],
        "quest (paged, batched) == quest over the full cache": res["quest"]["batch"] == res["quest_full_read"]["batch"],
    }
    for name in ("local_window", "decode_topk", "keep_recent", "quest", "quest_unshared"):
        checks[f"{name}: batch == single"] = res[name]["batch"] == res[name]["single"]
    checks["dense: the backend's own path (no row left to the handler)"] = res["dense"]["skipped_rows"] == 0
    for name, rows in alone.items():
        got = res[name]["skipped_rows"], res[name]["backend_rows"]
        checks[f"{name}: rows computed by the handler alone = {layers * rows}"] = got[0] == layers * rows
        checks[f"{name}: every row computed once"] = sum(got) == layers * (prompt_rows + decode_rows)
    card = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    summary = {
        "card": card,
        "torch": torch.__version__,
        "model": model,
        "checks": checks,
        "rows": {n: {k: res[n][k] for k in ("backend_rows", "skipped_rows")} for n in SPECS},
        "sparsity": {n: [s.get("sparsity") for s in res[n]["stats"]] for n in SPECS},
    }
    import vllm

    summary["vllm"] = vllm.__version__
    (out / "handler_gpu.json").write_text(json.dumps(summary, indent=1))
    md = [
        f"# The handler's engine checks on {summary['card']} (vLLM {summary['vllm']}, torch {summary['torch']}, {'bf16' if device == 'cuda' else 'fp32'})",
        "",
        f"Model `{Path(model).name}`, prompts of {', '.join(map(str, LENGTHS))} tokens, {MAX_TOKENS} new tokens "
        "(`benchmarks/handler_gpu.py`).",
        "",
        "| check | holds |",
        "|---|---|",
    ]
    md += [f"| {k} | {v} |" for k, v in checks.items()]
    (out / "handler_gpu.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    required = [v for k, v in checks.items() if "reported only" not in k]
    return 0 if all(required) else 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], Path(sys.argv[2])))
