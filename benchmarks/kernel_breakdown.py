"""Where the time of a sparse kernel call goes: stage by stage, launch settings, dense baselines.

    python benchmarks/kernel_breakdown.py OUT_DIR                 # one H100, 128k (~2 min)
    python benchmarks/kernel_breakdown.py OUT_DIR --lengths 32768 131072

Complements ``benchmarks/kernels.py`` (end-to-end method timings) with the numbers that explain
them: every dense prefill baseline torch offers (SDPA flash with ``enable_gqa`` / with K/V repeated,
cuDNN), each stage of Vertical-Slash, Block-Sparse and Quest (estimation, selection, index tensors,
kernel), the kernel under several launch settings, and the Quest decode step both launched
eagerly and replayed from a CUDA graph (GPU time without Python launch overhead). Shapes are
Qwen2.5-7B's (28/4 heads, d 128), bf16. Writes ``breakdown.csv`` and ``breakdown.md``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernels import dense_prefill_variants, graph_run, quest_step, timer  # noqa: E402  (shared with kernels.py)

FIELDS = ["part", "length", "sparsity", "batch", "variant", "ms", "note"]


def cuda_ms(fn, reps: int = 10, warmup: int = 2) -> float:
    return timer("cuda", reps, warmup)(fn)


def graph_ms(fn, reps: int = 20) -> float:
    """Median time of ``fn`` replayed from a CUDA graph (pure GPU time, no launch overhead)."""
    return graph_run(timer("cuda", reps, 2), fn)


def dense_baselines(q, k, v, scale, add):
    """Time every dense SDPA variant (rows ``dense_prefill``); returns the fastest time."""
    best = None
    for name, f in dense_prefill_variants(q, k, v, scale).items():
        try:
            ms = cuda_ms(f, 5)
            add("dense_prefill", q.shape[0], 0.0, 1, name, ms)
            best = ms if best is None else min(best, ms)
        except Exception as e:  # noqa: BLE001 - a backend this build lacks
            add("dense_prefill", q.shape[0], 0.0, 1, name, None, f"unavailable: {e!r}"[:160])
    return best


def prefill_parts(q, k, v, scale, t, s, add, warps):
    from sparse_frontier.attention.block_sparse import block_index, top_chunks_for
    from sparse_frontier.attention.calibration import search_int
    from sparse_frontier.attention.vertical_slash import (
        BLOCK,
        VerticalSlash,
        estimate_scores,
        estimate_scores_torch,
        index_density,
        run_index,
    )
    from sparse_frontier.kernels.sparse_prefill import sparse_prefill

    vert, slash = estimate_scores(q, k, 256, scale)
    probe = VerticalSlash(approximation_size=256)
    n = search_int(lambda n: index_density(*probe.select_raw(vert, slash, n, n)[::-1], t).mean().item(), 1 - s, 1, t)
    m = VerticalSlash(vertical_size=n, slash_size=n)
    add(
        "vertical_slash",
        t,
        s,
        1,
        "estimate_scores (last 256 queries)",
        cuda_ms(lambda: estimate_scores(q, k, 256, scale)),
        "fused Triton kernels (kernels/estimation.py)",
    )
    add(
        "vertical_slash",
        t,
        s,
        1,
        "estimate_scores_torch (its reference)",
        cuda_ms(lambda: estimate_scores_torch(q, k, 256, scale)),
    )
    add(
        "vertical_slash",
        t,
        s,
        1,
        "selection (topk, cover)",
        cuda_ms(lambda: m.select_from_scores(vert, slash, layer_key=None)),
    )
    cols, cover = m.select_from_scores(vert, slash, layer_key=None)
    add(
        "vertical_slash", t, s, 1, "index + kernel (run_index)", cuda_ms(lambda: run_index(q, k, v, scale, cols, cover))
    )
    add(
        "vertical_slash",
        t,
        s,
        1,
        "whole prefill call",
        cuda_ms(lambda: m.prefill(q, k, v, layer_index=0, scale=scale)),
        f"vertical_size={n}, density {index_density(cover, cols, t).mean().item():.4f}",
    )
    nb = cover.shape[1]
    idx = torch.arange(nb, device=q.device)
    diag = torch.where(cover, idx, nb).sort(-1).values
    col_count = torch.searchsorted(
        cols.contiguous(), (idx * BLOCK + BLOCK - 1).clamp(max=t - 1).expand(cols.shape[0], nb).contiguous(), right=True
    )
    for nw, ns in warps:
        try:
            ms = cuda_ms(
                lambda: sparse_prefill(
                    q,
                    k,
                    v,
                    scale,
                    BLOCK,
                    diag=diag,
                    cover=cover,
                    cols=cols,
                    col_count=col_count,
                    num_warps=nw,
                    num_stages=ns,
                )
            )
            add("vertical_slash", t, s, 1, f"kernel only, warps {nw} stages {ns}", ms)
        except Exception as e:  # noqa: BLE001
            add("vertical_slash", t, s, 1, f"kernel only, warps {nw} stages {ns}", None, f"error: {e!r}"[:160])
    no_cols = cols[:, :0]
    add(
        "vertical_slash",
        t,
        s,
        1,
        "kernel, blocks only (no column strips)",
        cuda_ms(lambda: sparse_prefill(q, k, v, scale, BLOCK, diag=diag, cover=cover)),
    )
    del vert, slash, no_cols

    for bs in (16, 64):
        top = top_chunks_for(t, bs, s)
        try:
            add(
                "block_sparse",
                t,
                s,
                1,
                f"block_index (pooled scores + topk), chunk {bs}",
                cuda_ms(lambda: block_index(q, k, bs, top), 3, 1),
            )
            blocks, counts = block_index(q, k, bs, top)
            for kc in (1, 2, 4, 8) if bs == 16 else (1,):
                for nw in (4, 8):
                    ms = cuda_ms(
                        lambda: sparse_prefill(
                            q, k, v, scale, bs, blocks=blocks, block_count=counts, kchunks=kc, num_warps=nw
                        ),
                        3,
                        1,
                    )
                    add("block_sparse", t, s, 1, f"kernel, chunk {bs}, {kc} chunks/step, warps {nw}", ms)
            del blocks, counts
        except Exception as e:  # noqa: BLE001
            add("block_sparse", t, s, 1, f"chunk {bs}", None, f"error: {e!r}"[:160])


# Page-score launches tried: (pages per tile, tiles per program, warps, pipeline stages).
SCORE_LAUNCHES = [
    (64, 1, 4, 2),
    (128, 1, 8, 2),
    (64, 2, 4, 3),
    (64, 4, 4, 3),
    (64, 8, 4, 3),
    (64, 16, 4, 3),
    (128, 4, 8, 3),
    (32, 8, 4, 3),
]


def quest_parts(t, s, b, add, hq=28, hkv=4, d=128):
    from sparse_frontier.attention.quest import budget_pages
    from sparse_frontier.kernels.quest import page_scores, page_summaries, select_pages, sparse_decode

    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(b, hq, d, device=dev, dtype=dt)
    kc = torch.randn(b, hkv, t, d, device=dev, dtype=dt)
    vc = torch.randn(b, hkv, t, d, device=dev, dtype=dt)
    # index tensors as the plugin passes them: int32, made once per decode step (QuestStep)
    lens = torch.full((b, hkv), t, device=dev, dtype=torch.int32)
    scale = d**-0.5
    dense = lambda: torch.nn.functional.scaled_dot_product_attention(
        q[:, :, None], kc, vc, scale=scale, enable_gqa=True
    )  # noqa: E731
    add("quest", t, s, b, "dense decode (sdpa, enable_gqa)", cuda_ms(dense))
    add("quest", t, s, b, "dense decode, CUDA graph", graph_ms(dense))
    tiny = torch.zeros(1, device=dev)
    add(
        "quest",
        t,
        s,
        b,
        "floor: one tiny kernel, CUDA graph",
        graph_ms(tiny.zero_),
        "replay + event overhead in every single-part graph row below (paid once by a whole step)",
    )
    pmin, pmax = page_summaries(kc, 16)
    npages = (lens + 15) // 16
    cur = npages - 1
    nsel = budget_pages(s, 0, t, 16)
    sc = page_scores(q, pmin, pmax, npages, True, True)
    parts = {
        "page scores (kernel)": lambda: page_scores(q, pmin, pmax, npages, True, True),
        "select, torch topk": lambda: select_pages(sc, cur, nsel),
        "select, kernel": lambda: select_pages(sc, cur, nsel, True),
    }
    for block_p, tiles, warps, stages in SCORE_LAUNCHES:
        parts[f"page scores, {block_p} pages x {tiles} tiles, warps {warps} stages {stages}"] = (
            lambda a=(block_p, tiles, warps, stages): page_scores(
                q, pmin, pmax, npages, True, True, block_p=a[0], tiles=a[1], num_warps=a[2], num_stages=a[3]
            )
        )
    for warps in (4, 8, 16, 32):
        parts[f"select, kernel, warps {warps}"] = lambda w=warps: select_pages(sc, cur, nsel, True, num_warps=w)
    pages = select_pages(sc, cur, nsel, True)
    for tile in (64, 128):
        for stages in (2, 3, 4):
            parts[f"sparse decode + merge, tile {tile}, stages {stages}"] = lambda tile=tile, stages=stages: (
                sparse_decode(q, kc, vc, pages, lens, 16, scale, True, tile=tile, num_stages=stages)
            )
    for splits in (8, 16, 24, 32, 48):
        parts[f"sparse decode + merge, splits {splits}"] = lambda n=splits: sparse_decode(
            q, kc, vc, pages, lens, 16, scale, True, splits=n
        )
    for name, fn in parts.items():
        add("quest", t, s, b, name, cuda_ms(fn))
        add("quest", t, s, b, name + ", CUDA graph", graph_ms(fn))

    from sparse_frontier.vllm_plugin.paged_decode import QuestStep

    whole = quest_step(q, pmin, pmax, kc, vc, lens, nsel, scale)
    step = lambda: whole()[0]  # noqa: E731

    out = torch.empty(b, hq, d, device=dev, dtype=dt)

    def step_topk():
        scores = page_scores(q, pmin, pmax, npages, True, True)
        return sparse_decode(q, kc, vc, select_pages(scores, cur, nsel), lens, 16, scale, True, out=out)

    # the plugin's path: vLLM cache blocks [blocks, 16, Hkv, D] and summary pools [blocks, Hkv, D] in
    # shuffled order, read through a block table by the plugin's own per-step object
    per_req = t // 16
    table = torch.randperm(b * per_req, device=dev).reshape(b, per_req).to(torch.int32)
    cache_k, cache_v = (torch.empty(b * per_req, 16, hkv, d, device=dev, dtype=dt) for _ in range(2))
    pool_min, pool_max = (torch.empty(b * per_req, hkv, d, device=dev, dtype=dt) for _ in range(2))
    flat = table.flatten().long()
    cache_k[flat] = kc.permute(0, 2, 1, 3).reshape(b * per_req, 16, hkv, d)
    cache_v[flat] = vc.permute(0, 2, 1, 3).reshape(b * per_req, 16, hkv, d)
    pool_min[flat] = pmin.permute(0, 2, 1, 3).reshape(b * per_req, hkv, d)
    pool_max[flat] = pmax.permute(0, 2, 1, 3).reshape(b * per_req, hkv, d)
    quest = QuestStep(table, [t] * b, [nsel] * b, 16, True, hq // hkv, hkv)
    paged_step = lambda: quest.decode(q, cache_k, cache_v, (pool_min, pool_max), scale, out=out)  # noqa: E731

    add("quest", t, s, b, "whole step (select kernel)", cuda_ms(step))
    add("quest", t, s, b, "whole step (torch topk)", cuda_ms(step_topk))
    add("quest", t, s, b, "whole step (select kernel), CUDA graph", graph_ms(step))
    add("quest", t, s, b, "whole step, paged cache (the plugin's path), CUDA graph", graph_ms(paged_step))
    del cache_k, cache_v, pool_min, pool_max
    del q, kc, vc, pmin, pmax


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--lengths", type=int, nargs="+", default=[131072])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.9])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--skip-prefill", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        ap.error("needs a CUDA GPU")
    rows: list[dict] = []
    started = time.time()

    def add(part, length, sparsity, batch, variant, ms, note=""):
        rows.append(
            {
                "part": part,
                "length": length,
                "sparsity": sparsity,
                "batch": batch,
                "variant": variant,
                "ms": None if ms is None else round(ms, 4),
                "note": note,
            }
        )
        print(rows[-1], flush=True)

    warps = [(4, 2), (4, 3), (8, 2), (8, 3), (4, 4)]
    torch.manual_seed(0)
    for t in args.lengths:
        if not args.skip_prefill:
            q = torch.randn(t, 28, 128, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(t, 4, 128, device="cuda", dtype=torch.bfloat16)
            v = torch.randn(t, 4, 128, device="cuda", dtype=torch.bfloat16)
            dense_baselines(q, k, v, 128**-0.5, add)
            for s in args.sparsities:
                prefill_parts(q, k, v, 128**-0.5, t, s, add, warps)
            del q, k, v
            torch.cuda.empty_cache()
        for s in args.sparsities:
            for b in args.batches:
                try:
                    quest_parts(t, s, b, add)
                except Exception as e:  # noqa: BLE001
                    add("quest", t, s, b, "all", None, f"error: {e!r}"[:200])
                torch.cuda.empty_cache()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    with open(args.out_dir / "breakdown.csv", "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    import triton

    head = [
        "# Kernel time breakdown",
        "",
        f"{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {triton.__version__}; Qwen2.5-7B heads 28/4, "
        f"d 128, bf16; CUDA events, median; total {time.time() - started:.0f} s. Written by `benchmarks/kernel_breakdown.py`.",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    head += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in FIELDS) + " |" for r in rows]
    (args.out_dir / "breakdown.md").write_text("\n".join(head) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
