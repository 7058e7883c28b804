"""Block-Sparse kernels side by side: one program per query block (`sparse_prefill`) vs tiles of
G query blocks over the union of their kept key blocks (`grouped_block_prefill`), same selections,
same run, on random Q/K (the kernel benchmark's inputs) and on a real model's captured Q/K
(`benchmarks/block_overlap.py --save-qk`).

Per input and sparsity: the index once (`block_index`, not timed), then each kernel's median time
(CUDA events), its output's relative error against the one-block kernel, and the union's size:
`traffic` = union key blocks / listed key blocks (the key-tile loads left), `inflation` = G * that
(the tile products per member computed).

    python benchmarks/grouped_blocks.py OUT_DIR [--qk FILE] [--lengths 131072] [--sparsities 0.9]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from kernels import timer  # noqa: E402

from sparse_frontier.attention.block_sparse import block_index, top_chunks_for  # noqa: E402
from sparse_frontier.kernels.grouped_blocks import group_blocks, grouped_block_prefill  # noqa: E402
from sparse_frontier.kernels.sparse_prefill import sparse_prefill  # noqa: E402


def inputs(args, device, dtype):
    """(label, q [T, Hq, D], k [T, Hkv, D]): random at each length (Qwen2.5-7B heads), then the
    captured layers."""
    g = torch.Generator(device=device).manual_seed(0)
    for t in args.lengths:
        q = torch.randn(t, args.heads, args.head_dim, device=device, dtype=dtype, generator=g)
        k = torch.randn(t, args.kv_heads, args.head_dim, device=device, dtype=dtype, generator=g)
        yield f"random {args.heads}/{args.kv_heads}x{args.head_dim}", q, k
    if args.qk:
        saved = torch.load(args.qk)
        for layer, (q, k) in saved["layers"].items():
            yield f"{saved['model']} {saved['task']} layer {layer}", q.to(device, dtype), k.to(device, dtype)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--qk", help="captured queries and keys (benchmarks/block_overlap.py --save-qk)")
    parser.add_argument("--lengths", type=int, nargs="*", default=[131072])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9])
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--block", type=int, default=16)
    parser.add_argument("--heads", type=int, default=28)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = args.device
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    run = timer(device, args.reps if device == "cuda" else 1, 2 if device == "cuda" else 0)
    start = time.time()
    rows = []
    for label, q, k in inputs(args, device, dtype):
        v = torch.randn_like(k)
        t, scale = q.shape[0], q.shape[-1] ** -0.5
        for s in args.sparsities:
            top = top_chunks_for(t, args.block, s)
            blocks, counts = block_index(q, k, args.block, top)
            base = dict(input=label, length=t, sparsity=s, top_chunks=top)
            ref = sparse_prefill(q, k, v, scale, args.block, blocks=blocks, block_count=counts)
            ms = run(lambda: sparse_prefill(q, k, v, scale, args.block, blocks=blocks, block_count=counts))
            rows.append(dict(base, kernel="one block per program", group=1, ms=ms, traffic=1.0, inflation=1.0, note=""))
            listed = counts.sum().item()
            for group in args.groups:
                union_count = group_blocks(blocks, counts, -(-t // args.block), group)[2]
                traffic = union_count.sum().item() / listed
                try:
                    out = grouped_block_prefill(q, k, v, scale, args.block, blocks, counts, group=group)
                    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()

                    def call(group=group):
                        return grouped_block_prefill(q, k, v, scale, args.block, blocks, counts, group=group)

                    ms_g, note = run(call), ""
                except Exception as e:  # noqa: BLE001 - record and go on
                    ms_g, err, note = None, None, f"error: {e!r}"[:200]
                rows.append(
                    dict(
                        base,
                        kernel=f"{group} blocks per program",
                        group=group,
                        ms=ms_g,
                        traffic=traffic,
                        inflation=group * traffic,
                        rel_err_vs_one_block=err,
                        note=note,
                    )
                )
            print(f"{label} s={s}: {time.time() - start:.0f} s", flush=True)
    one = {(r["input"], r["sparsity"]): r["ms"] for r in rows if r["group"] == 1}
    for r in rows:
        r["speedup_vs_one_block"] = round(one[(r["input"], r["sparsity"])] / r["ms"], 2) if r["ms"] else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # plain csv and markdown: the GPU machine has torch and triton, not necessarily pandas
    with open(out / "grouped_blocks.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    machine = torch.cuda.get_device_name() if device == "cuda" else "CPU (Triton interpreter)"
    import triton

    def cell(v):
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = [
        "# Block-Sparse: one query block per program vs tiles of G blocks over their union",
        "",
        f"{machine}; torch {torch.__version__}; triton {triton.__version__}; {dtype}; {args.block}-token "
        f"blocks; median of {args.reps} (CUDA events); total {time.time() - start:.0f} s. Written by "
        f"`benchmarks/grouped_blocks.py` (`{' '.join(sys.argv[1:] if argv is None else argv)}`).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    (out / "grouped_blocks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))


COLUMNS = [
    "input",
    "length",
    "sparsity",
    "top_chunks",
    "kernel",
    "group",
    "ms",
    "speedup_vs_one_block",
    "traffic",
    "inflation",
    "rel_err_vs_one_block",
    "note",
]


if __name__ == "__main__":
    main()
