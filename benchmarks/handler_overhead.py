"""Cost of the handler's batched decode per layer call, without vLLM: where a decode step's time goes.

Drives :class:`AttentionHandler` the way vLLM's FlashAttention backend would (CUDA cache layout
``[2, blocks, 16, Hkv, D]``, shuffled block tables, one metadata object per step) for ``--batch``
requests of ``--length`` tokens of a Qwen2.5-7B-shaped layer stack: one prefill step (the backend's
dense prefill stubbed out; Quest writes its page summaries, SnapKV compacts the cache), then
``--steps`` decode steps through ``--layers`` layers. Reported per layer call: wall time on the host
(what the launch queue sees when nothing waits for the GPU), GPU time (CUDA events around the step),
and the profiler's top operators of one step. Each method runs twice on the same shapes: with the
handler's decode graphs off (its kernels launched eagerly, unpadded) and on (``engine.handler_graphs``:
captured in the first, untimed step, then replayed; vllm_plugin/decode_graphs.py). Needs no vLLM (the
handler only sees the adapter), so it runs on the GPU machine in seconds.

    python benchmarks/handler_overhead.py --methods quest snapkv ada_snapkv --layers 28 \
        --out benchmarks/results/handler_overhead.md
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import torch


def run(method: dict, length: int, batch: int, layers: int, steps: int, graphs: bool, hq=28, hkv=4, d=128, page=16):
    from sparse_frontier.vllm_plugin import ENV_HANDLER_GRAPHS, adapters
    from sparse_frontier.vllm_plugin.handler import AttentionHandler

    os.environ[ENV_HANDLER_GRAPHS] = "1" if graphs else "0"  # read per step, as the engine sets it
    dev = torch.device("cuda")
    handler = AttentionHandler()
    handler.configure(method, adapters.CUDA_FLASH_ATTN)
    ids = [f"r{i}" for i in range(batch)]
    handler.runner = SimpleNamespace(input_batch=SimpleNamespace(req_ids=ids), requests={})
    impl = SimpleNamespace(num_heads=hq, num_kv_heads=hkv, head_size=d, scale=d**-0.5)
    mods = [SimpleNamespace(layer_name=f"model.layers.{i}.self_attn.attn") for i in range(layers)]
    per_req = -(-(length + steps + 1) // page)
    blocks = batch * per_req + 8
    caches = [torch.randn(2, blocks, page, hkv, d, device=dev, dtype=torch.bfloat16) for _ in range(layers)]
    # block 0 is vLLM's null block, never a request's (the graphs' padding rows read it)
    tables = (1 + torch.randperm(blocks - 8, device=dev)[: batch * per_req]).reshape(batch, per_req).int()
    backend = lambda impl, layer, q, k, v, cache, meta, out, *a, **kw: out  # noqa: E731  (stub)

    def meta(qlens, seqs):
        starts = torch.tensor([0] + qlens, device=dev).cumsum(0).int()
        return SimpleNamespace(
            query_start_loc=starts,
            seq_lens=torch.tensor(seqs, device=dev).int(),
            block_table=tables,
            num_actual_tokens=sum(qlens),
            max_query_len=max(qlens),
            max_seq_len=max(seqs),
        )

    # prefill, one request at a time (as vLLM schedules long prompts), keys = the cache's own
    for r in range(batch):
        m = meta([length], [length])
        m.block_table = tables[r : r + 1]
        handler.runner.input_batch.req_ids = [ids[r]]
        for i, layer in enumerate(mods):
            kc = caches[i][0][tables[r, : -(-length // page)].long()].reshape(-1, hkv, d)[:length]
            vc = caches[i][1][tables[r, : -(-length // page)].long()].reshape(-1, hkv, d)[:length]
            q = torch.randn(length, hq, d, device=dev, dtype=torch.bfloat16)
            handler.attention(
                backend,
                impl,
                layer,
                q,
                kc,
                vc,
                caches[i],
                m,
                torch.empty(length, hq * d, device=dev, dtype=torch.bfloat16),
            )
    handler.runner.input_batch.req_ids = ids
    torch.cuda.synchronize()
    q = torch.randn(batch, hq, d, device=dev, dtype=torch.bfloat16)
    k = torch.randn(batch, hkv, d, device=dev, dtype=torch.bfloat16)
    out = torch.empty(batch, hq * d, device=dev, dtype=torch.bfloat16)

    def step(s):
        m = meta([1] * batch, [length + 1 + s] * batch)
        for i, layer in enumerate(mods):
            handler.attention(backend, impl, layer, q, k, k, caches[i], m, out)

    step(0)  # compile / warm up / capture the handler's graphs
    torch.cuda.synchronize()
    host, gpu = [], []
    for s in range(1, steps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        e0.record()
        step(s)
        e1.record()
        host.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        gpu.append(e0.elapsed_time(e1) / 1e3)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step(steps)
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=25)
    stats = handler.take_stats()
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {
        "method": method["method"],
        "handler_graphs": graphs,
        "graphs_captured": len(handler.router.graphs.graphs),
        "length": length,
        "batch": batch,
        "layers": layers,
        "host_ms_per_layer": round(med(host) / layers * 1e3, 4),
        "gpu_ms_per_layer": round(med(gpu) / layers * 1e3, 4),
        "decode_sparsity": round(next(iter(stats.values()))["decode_sparsity"], 4),
        "profile": table,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["quest", "snapkv"])
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--length", type=int, default=16384)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    rows = [
        run({"method": m, "params": {"sparsity": a.sparsity}}, a.length, a.batch, a.layers, a.steps, graphs)
        for m in a.methods
        for graphs in (False, True)
    ]
    card = torch.cuda.get_device_name(0)
    md = [
        f"# Handler decode cost per layer call ({card}, torch {torch.__version__})",
        "",
        f"`benchmarks/handler_overhead.py`: Qwen2.5-7B-shaped layers (28/4 heads, d 128, bf16), {a.batch} requests of "
        f"{a.length} tokens, sparsity {a.sparsity}, backend stubbed (handler work only).",
        "",
        "| method | handler graphs | host ms / layer | GPU ms / layer | decode sparsity |",
        "|---|---|---|---|---|",
    ]
    graphs = lambda r: f"on ({r['graphs_captured']} captured)" if r["handler_graphs"] else "off"  # noqa: E731
    md += [
        f"| {r['method']} | {graphs(r)} | {r['host_ms_per_layer']} | {r['gpu_ms_per_layer']} | {r['decode_sparsity']} |"
        for r in rows
    ]
    for r in rows:
        md += [
            "",
            f"## {r['method']}, handler graphs {graphs(r)}: one decode step ({a.layers} layers), profiler",
            "",
            "```",
        ]
        md += [r["profile"], "```"]
    a.out.write_text("\n".join(md) + "\n")
    a.out.with_suffix(".json").write_text(
        json.dumps([{k: v for k, v in r.items() if k != "profile"} for r in rows], indent=1)
    )
    print("\n".join(md[: 8 + len(rows)]))


if __name__ == "__main__":
    main()
