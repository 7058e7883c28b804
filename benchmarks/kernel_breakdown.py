"""Where the time of a sparse kernel call goes: stage by stage, launch settings, dense baselines, the card's bound.

    python benchmarks/kernel_breakdown.py OUT_DIR                 # one H100, 128k, sparsity 0.9 and 0.95 (~3 min)
    python benchmarks/kernel_breakdown.py OUT_DIR --lengths 32768 131072

Complements ``benchmarks/kernels.py`` (end-to-end method timings) with the numbers that explain
them: every dense prefill baseline torch offers (SDPA flash with ``enable_gqa`` / with K/V repeated,
cuDNN) and vLLM's FlashAttention 3 (varlen, paged; paged decode eager and CUDA-graphed), each stage
of Vertical-Slash, FlexPrefill, Block-Sparse and Quest (estimation, selection, index tensors,
kernel), the kernel under several launch settings, and the Quest decode step both launched eagerly
and replayed from a CUDA graph (GPU time without Python launch overhead). Each row with a known
amount of work carries ``bound_ms``, the least time the card's data-sheet FLOP/s and bytes/s allow for
it (``sparse_frontier.planning.roofline``), and ``of_bound`` = bound / measured. For each of the
issue's targets (``kernels.TARGETS``) measured here, a ``target`` row says the speedup over the best
dense baseline, pass or miss, the stages' shares, the stage that limits it (the most time above
its bound) and what the card allows. Shapes are Qwen2.5-7B's (28/4 heads, d 128), bf16. Writes
``breakdown.csv`` and ``breakdown.md``.
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

from kernels import (  # noqa: E402  (shared with kernels.py)
    CARDS,
    TARGETS,
    Target,
    best_baseline,
    card_for,
    dense_prefill_variants,
    fa3_decode_fns,
    fa3_prefill_fns,
    fa3_reason,
    graph_run,
    paged_decode_setup,
    prefill_work,
    quest_step,
    sig,
    target_met,
    timer,
)

from sparse_frontier.planning import roofline  # noqa: E402

FIELDS = ["part", "length", "sparsity", "batch", "variant", "ms", "bound_ms", "of_bound", "note"]


def cuda_ms(fn, reps: int = 10, warmup: int = 2) -> float:
    return timer("cuda", reps, warmup)(fn)


def graph_ms(fn, reps: int = 20) -> float:
    """Median time of ``fn`` replayed from a CUDA graph (pure GPU time, no launch overhead)."""
    return graph_run(timer("cuda", reps, 2), fn)


def dense_baselines(q, k, v, scale, add, no_fa3):
    """Time every dense prefill baseline (rows ``dense_prefill``): torch SDPA's variants and vLLM's FA3;
    returns the fastest as (name, ms)."""
    t, hq, d = q.shape
    work = prefill_work(t, hq, k.shape[1], d, 1.0)
    timed = {}
    fns = {name: (f, None) for name, f in dense_prefill_variants(q, k, v, scale).items()}
    if no_fa3:
        add("dense_prefill", t, 0.0, 1, "fa3", None, f"unavailable: {no_fa3}")
    else:
        try:
            fns.update({f"{name}, vLLM 0.20": f for name, f in fa3_prefill_fns(q, k, v, scale).items()})
        except Exception as e:  # noqa: BLE001
            add("dense_prefill", t, 0.0, 1, "fa3", None, f"error: {e!r}"[:160])
    for name, (f, _) in fns.items():
        try:
            timed[name] = cuda_ms(f, 5)
            add("dense_prefill", t, 0.0, 1, name, timed[name], work=work)
        except Exception as e:  # noqa: BLE001 - a backend this build lacks
            add("dense_prefill", t, 0.0, 1, name, None, f"unavailable: {e!r}"[:160])
    return best_baseline(timed)


def vertical_slash_stages(q, k, v, scale, t, s, add, warps):
    """Vertical-Slash's and FlexPrefill's stages (estimation, selection, index + kernel, the whole
    call) at sizes calibrated to density ``1 - s``, and Vertical-Slash's kernel under launch settings."""
    from sparse_frontier.attention.calibration import search_int
    from sparse_frontier.attention.vertical_slash import (
        BLOCK,
        FlexPrefill,
        VerticalSlash,
        estimate_scores,
        estimate_scores_torch,
        index_density,
        run_index,
    )
    from sparse_frontier.kernels.sparse_prefill import sparse_prefill

    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    est_work = (roofline.estimation_flops(256, t, hq, d), 2 * (256 * hq + t * hkv) * d)
    vert, slash = estimate_scores(q, k, 256, scale)
    probe = VerticalSlash(approximation_size=256)
    n = search_int(lambda n: index_density(*probe.select_raw(vert, slash, n, n)[::-1], t).mean().item(), 1 - s, 1, t)
    for part, m in (
        ("vertical_slash", VerticalSlash(vertical_size=n, slash_size=n)),
        ("flexprefill", FlexPrefill(alpha=0.0, min_budget=n)),
    ):
        cols, cover = m.select_from_scores(vert, slash, layer_key=None)
        density = index_density(cover, cols, t).mean().item()
        add(
            part,
            t,
            s,
            1,
            "estimate_scores (last 256 queries)",
            cuda_ms(lambda: estimate_scores(q, k, 256, scale)),
            "fused Triton kernels (kernels/estimation.py)",
            est_work,
            "stage",
        )
        if part == "vertical_slash":
            add(
                part,
                t,
                s,
                1,
                "estimate_scores_torch (its reference)",
                cuda_ms(lambda: estimate_scores_torch(q, k, 256, scale)),
            )
        add(
            part,
            t,
            s,
            1,
            "selection (topk, cover)",
            cuda_ms(lambda: m.select_from_scores(vert, slash, layer_key=None)),
            work=(0.0, 2 * hq * t * 4),
            role="stage",
        )
        add(
            part,
            t,
            s,
            1,
            "index + kernel (run_index)",
            cuda_ms(lambda: run_index(q, k, v, scale, cols, cover)),
            work=prefill_work(t, hq, hkv, d, density),
            role="stage",
        )
        add(
            part,
            t,
            s,
            1,
            "whole prefill call",
            cuda_ms(lambda: m.prefill(q, k, v, layer_index=0, scale=scale)),
            f"vertical_size={n}, density {density:.4f}",
            prefill_work(t, hq, hkv, d, density, est_work[0]),
            "whole",
        )
    cols, cover = VerticalSlash(vertical_size=n, slash_size=n).select_from_scores(vert, slash, layer_key=None)
    kernel_work = prefill_work(t, hq, hkv, d, index_density(cover, cols, t).mean().item())
    nb = cover.shape[1]
    idx = torch.arange(nb, device=q.device)
    diag = torch.where(cover, idx, nb).sort(-1).values
    col_count = torch.searchsorted(
        cols.contiguous(), (idx * BLOCK + BLOCK - 1).clamp(max=t - 1).expand(cols.shape[0], nb).contiguous(), right=True
    )
    # kc: kept diagonals gathered per step (one 64 x 64 * kc tile; 1 is the default; on the H100, 2
    # was slower and 4 exceeded shared memory)
    for (nw, ns), kc in [(w, kc) for kc in (1, 2) for w in warps]:
        variant = f"kernel only, warps {nw} stages {ns}" + (f", {kc} diagonals/step" if kc > 1 else "")
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
                    kchunks=kc,
                )
            )
            add("vertical_slash", t, s, 1, variant, ms, work=kernel_work)
        except Exception as e:  # noqa: BLE001
            add("vertical_slash", t, s, 1, variant, None, f"error: {e!r}"[:160])
    add(
        "vertical_slash",
        t,
        s,
        1,
        "kernel, blocks only (no column strips)",
        cuda_ms(lambda: sparse_prefill(q, k, v, scale, BLOCK, diag=diag, cover=cover)),
    )
    del vert, slash


def block_sparse_stages(q, k, v, scale, t, s, add):
    """Block-Sparse's stages (block index, kernel, the whole call) for 16- and 64-token blocks, and
    the kernel under launch settings."""
    from sparse_frontier.attention.block_sparse import BlockSparse, block_density, block_index, top_chunks_for
    from sparse_frontier.kernels.sparse_prefill import sparse_prefill

    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    for bs in (16, 64):
        top = top_chunks_for(t, bs, s)
        density = block_density(t, bs, top)
        index_work = (roofline.pooled_index_flops(t, bs, hq, d), 2 * t * (hq + hkv) * d)
        kernel_work = prefill_work(t, hq, hkv, d, density)
        try:
            add(
                "block_sparse",
                t,
                s,
                1,
                f"block_index (pooled scores + topk), chunk {bs}",
                cuda_ms(lambda: block_index(q, k, bs, top), 3, 1),
                work=index_work,
                role="stage" if bs == 16 else None,
            )
            blocks, counts = block_index(q, k, bs, top)
            add(
                "block_sparse",
                t,
                s,
                1,
                f"kernel (default launch), chunk {bs}",
                cuda_ms(lambda: sparse_prefill(q, k, v, scale, bs, blocks=blocks, block_count=counts), 3, 1),
                work=kernel_work,
                role="stage" if bs == 16 else None,
            )
            for kc in (1, 2, 4, 8) if bs == 16 else (1,):
                for nw in (4, 8):
                    ms = cuda_ms(
                        lambda: sparse_prefill(
                            q, k, v, scale, bs, blocks=blocks, block_count=counts, kchunks=kc, num_warps=nw
                        ),
                        3,
                        1,
                    )
                    add(
                        "block_sparse",
                        t,
                        s,
                        1,
                        f"kernel, chunk {bs}, {kc} chunks/step, warps {nw}",
                        ms,
                        work=kernel_work,
                    )
            del blocks, counts
            m = BlockSparse(top_chunks=top, chunk_size=bs)
            add(
                "block_sparse",
                t,
                s,
                1,
                f"whole prefill call, chunk {bs}",
                cuda_ms(lambda: m.prefill(q, k, v, layer_index=0, scale=scale), 3, 1),
                f"top_chunks={top}, density {density:.4f}",
                prefill_work(t, hq, hkv, d, density, index_work[0]),
                "whole" if bs == 16 else None,
            )
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


def quest_parts(t, s, b, add, no_fa3, hq=28, hkv=4, d=128):
    from sparse_frontier.attention.quest import budget_pages
    from sparse_frontier.kernels.quest import page_scores, page_summaries, select_pages, sparse_decode
    from sparse_frontier.vllm_plugin.paged_decode import QuestStep

    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(b, hq, d, device=dev, dtype=dt)
    kc = torch.randn(b, hkv, t, d, device=dev, dtype=dt)
    vc = torch.randn(b, hkv, t, d, device=dev, dtype=dt)
    # index tensors as the plugin passes them: int32, made once per decode step (QuestStep)
    lens = torch.full((b, hkv), t, device=dev, dtype=torch.int32)
    scale = d**-0.5
    pmin, pmax = page_summaries(kc, 16)
    # the plugin's path and vLLM's FA3: vLLM cache blocks [2, blocks, 16, Hkv, D] and summary pools
    # [blocks, Hkv, D] in shuffled order, read through a block table
    kv_cache, table, fa_args, pools = paged_decode_setup(kc, vc, pmin, pmax)
    dense_work = (roofline.decode_flops(b, t, hq, d), roofline.kv_bytes(b, t, hkv, d))
    dense = lambda: torch.nn.functional.scaled_dot_product_attention(
        q[:, :, None], kc, vc, scale=scale, enable_gqa=True
    )  # noqa: E731
    add("quest", t, s, b, "dense decode (sdpa, enable_gqa)", cuda_ms(dense), work=dense_work)
    add("quest", t, s, b, "dense decode, CUDA graph", graph_ms(dense), work=dense_work, role="dense")
    if no_fa3:
        add("quest", t, s, b, "dense decode, fa3 paged", None, f"unavailable: {no_fa3}")
    else:
        try:
            for name, (fn, _) in fa3_decode_fns(q, kv_cache, fa_args, scale).items():
                graphed = name.endswith("_graph")
                ms = graph_ms(fn) if graphed else cuda_ms(fn)
                label = "dense decode, fa3 paged (vLLM 0.20)" + (", CUDA graph" if graphed else "")
                add("quest", t, s, b, label, ms, work=dense_work, role="dense" if graphed else None)
        except Exception as e:  # noqa: BLE001
            add("quest", t, s, b, "dense decode, fa3 paged", None, f"error: {e!r}"[:160])
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
    npages = (lens + 15) // 16
    cur = npages - 1
    nsel = budget_pages(s, 0, t, 16)
    density = min(nsel + 1, t // 16) * 16 / t
    score_work = (0.0, roofline.page_summary_bytes(b, t, hkv, d))
    select_work = (0.0, 4.0 * b * hkv * (t // 16))
    decode_work = (density * dense_work[0], density * dense_work[1])
    sc = page_scores(q, pmin, pmax, npages, True, True)
    parts = {
        "page scores (kernel)": (lambda: page_scores(q, pmin, pmax, npages, True, True), score_work, "stage"),
        "select, torch topk": (lambda: select_pages(sc, cur, nsel), select_work, None),
        "select, kernel": (lambda: select_pages(sc, cur, nsel, True), select_work, "stage"),
    }
    for block_p, tiles, warps, stages in SCORE_LAUNCHES:
        parts[f"page scores, {block_p} pages x {tiles} tiles, warps {warps} stages {stages}"] = (
            lambda a=(block_p, tiles, warps, stages): page_scores(
                q, pmin, pmax, npages, True, True, block_p=a[0], tiles=a[1], num_warps=a[2], num_stages=a[3]
            ),
            score_work,
            None,
        )
    for warps in (4, 8, 16, 32):
        parts[f"select, kernel, warps {warps}"] = (
            lambda w=warps: select_pages(sc, cur, nsel, True, num_warps=w),
            select_work,
            None,
        )
    pages = select_pages(sc, cur, nsel, True)
    parts["sparse decode + merge (default launch)"] = (
        lambda: sparse_decode(q, kc, vc, pages, lens, 16, scale, True),
        decode_work,
        "stage",
    )
    for tile in (64, 128):
        for stages in (2, 3, 4):
            parts[f"sparse decode + merge, tile {tile}, stages {stages}"] = (
                lambda tile=tile, stages=stages: sparse_decode(
                    q, kc, vc, pages, lens, 16, scale, True, tile=tile, num_stages=stages
                ),
                decode_work,
                None,
            )
    for splits in (8, 16, 24, 32, 48):
        parts[f"sparse decode + merge, splits {splits}"] = (
            lambda n=splits: sparse_decode(q, kc, vc, pages, lens, 16, scale, True, splits=n),
            decode_work,
            None,
        )
    for name, (fn, work, role) in parts.items():
        add("quest", t, s, b, name, cuda_ms(fn), work=work)
        add("quest", t, s, b, name + ", CUDA graph", graph_ms(fn), work=work, role=role)

    whole = quest_step(q, pmin, pmax, kc, vc, lens, nsel, scale)
    step = lambda: whole()[0]  # noqa: E731

    out = torch.empty(b, hq, d, device=dev, dtype=dt)

    def step_topk():
        scores = page_scores(q, pmin, pmax, npages, True, True)
        return sparse_decode(q, kc, vc, select_pages(scores, cur, nsel), lens, 16, scale, True, out=out)

    quest = QuestStep(table, [t] * b, [nsel] * b, 16, True, hq // hkv, hkv)
    paged_step = lambda: quest.decode(q, kv_cache[0], kv_cache[1], pools, scale, out=out)  # noqa: E731
    step_work = (decode_work[0], roofline.quest_bytes(b, t, hkv, d, density))

    add("quest", t, s, b, "whole step (select kernel)", cuda_ms(step), work=step_work)
    add("quest", t, s, b, "whole step (torch topk)", cuda_ms(step_topk), work=step_work)
    add("quest", t, s, b, "whole step (select kernel), CUDA graph", graph_ms(step), work=step_work, role="whole")
    add(
        "quest",
        t,
        s,
        b,
        "whole step, paged cache (the plugin's path), CUDA graph",
        graph_ms(paged_step),
        work=step_work,
        role="whole_paged",
    )
    del kv_cache, pools
    del q, kc, vc, pmin, pmax


def limiting_stage(stages: list[tuple[str, float, float | None]]) -> str:
    """The stage with the most time above its bound (``(name, ms, bound_ms or None)``; no bound = 0):
    where a faster implementation has the most to gain."""
    return max(stages, key=lambda st: st[1] - (st[2] or 0.0))[0]


def target_summary(
    target: Target,
    whole_ms: float,
    whole_bound_ms: float | None,
    stages: list[tuple[str, float, float | None]],
    best: tuple[str, float],
) -> str:
    """One line on a target: the speedup over the best dense baseline, pass/miss, each stage's time
    (share of the call; times its bound), the stage that limits it and what the card allows."""
    name, best_ms = best
    speedup = best_ms / whole_ms
    text = [
        f"{speedup:.2f}x over {name} ({best_ms:.3g} ms): {target_met(speedup, target)} "
        f"(target >= {target.speedup:g}x needs <= {best_ms / target.speedup:.3g} ms)"
    ]
    shares = []
    for stage, ms, bound in stages:
        over = f", {ms / bound:.3g}x its bound {bound:.3g} ms" if bound else ""
        shares.append(f"{stage} {ms:.3g} ms ({ms / whole_ms:.0%}{over})")
    text.append("stages: " + "; ".join(shares))
    text.append(f"limited by: {limiting_stage(stages)}")
    if whole_bound_ms:
        text.append(f"card bound for the call {whole_bound_ms:.3g} ms, allows {best_ms / whole_bound_ms:.3g}x")
    return ". ".join(text)


def target_rows(rows: list[dict]) -> list[dict]:
    """A ``target`` row per target of :data:`kernels.TARGETS` measured in ``rows`` (prefill: over the
    fastest ``dense_prefill`` row; Quest: graphed, over the fastest graphed dense decode)."""
    out = []
    for target in TARGETS:
        here = [
            r
            for r in rows
            if r["length"] == target.length
            and r["sparsity"] is not None
            and abs(r["sparsity"] - target.sparsity) < 1e-9
        ]
        if target.method.startswith("quest"):
            here = [r for r in here if r["part"] == "quest" and r["batch"] == target.batch]
            dense = [r for r in here if r.get("role") == "dense"]
            whole_role = "whole_paged" if target.method == "quest_paged_graph" else "whole"
            stages = [r for r in here if r.get("role") == "stage" and r["variant"].endswith("CUDA graph")]
        else:
            dense = [r for r in rows if r["part"] == "dense_prefill" and r["length"] == target.length]
            here = [r for r in here if r["part"] == target.method]
            whole_role = "whole"
            stages = [r for r in here if r.get("role") == "stage"]
        whole = [r for r in here if r.get("role") == whole_role and r["ms"] is not None]
        best = best_baseline({r["variant"]: r["ms"] for r in dense})
        if not whole or not best:
            continue
        note = target_summary(
            target,
            whole[0]["ms"],
            whole[0]["bound_ms"],
            [(r["variant"], r["ms"], r["bound_ms"]) for r in stages if r["ms"] is not None],
            best,
        )
        variant = f"{target.method} >= {target.speedup:g}x"
        out.append(
            {
                "part": "target",
                "length": target.length,
                "sparsity": target.sparsity,
                "batch": target.batch,
                "variant": variant,
                "ms": whole[0]["ms"],
                "bound_ms": whole[0]["bound_ms"],
                "of_bound": whole[0]["of_bound"],
                "note": note,
            }
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--lengths", type=int, nargs="+", default=[131072])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--card", choices=sorted(CARDS), help="peaks for the bounds (default: the device's)")
    ap.add_argument("--skip-prefill", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        ap.error("needs a CUDA GPU")
    card = card_for(args.card, "cuda")
    no_fa3 = fa3_reason("cuda")
    if no_fa3:
        print(f"FA3 baselines skipped: {no_fa3}", file=sys.stderr)
    rows: list[dict] = []
    started = time.time()

    def add(part, length, sparsity, batch, variant, ms, note="", work=None, role=None):
        bound = roofline.bound_ms(card, *work) if work and card else None
        rows.append(
            {
                "part": part,
                "length": length,
                "sparsity": sparsity,
                "batch": batch,
                "variant": variant,
                "ms": None if ms is None else round(ms, 4),
                "bound_ms": None if bound is None else sig(bound),
                "of_bound": None if bound is None or not ms else sig(bound / ms),
                "note": note,
                "role": role,
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
            dense_baselines(q, k, v, 128**-0.5, add, no_fa3)
            for s in args.sparsities:
                vertical_slash_stages(q, k, v, 128**-0.5, t, s, add, warps)
                block_sparse_stages(q, k, v, 128**-0.5, t, s, add)
            del q, k, v
            torch.cuda.empty_cache()
        for s in args.sparsities:
            for b in args.batches:
                try:
                    quest_parts(t, s, b, add, no_fa3)
                except Exception as e:  # noqa: BLE001
                    add("quest", t, s, b, "all", None, f"error: {e!r}"[:200])
                torch.cuda.empty_cache()
    rows += target_rows(rows)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    with open(args.out_dir / "breakdown.csv", "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    import triton

    peaks = (
        f"bounds for {card.name}: {card.peak_flops / 1e12:g} TFLOP/s dense bf16, {card.peak_hbm_bytes_per_s / 1e12:g} TB/s"
        if card
        else "no card peaks (--card for bounds)"
    )
    head = [
        "# Kernel time breakdown",
        "",
        f"{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {triton.__version__}; Qwen2.5-7B heads 28/4, "
        f"d 128, bf16; CUDA events, median; {peaks}; FA3: {no_fa3 or 'vLLM 0.20'}; total {time.time() - started:.0f} s. "
        "Written by `benchmarks/kernel_breakdown.py`; `target` rows at the end.",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    head += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in FIELDS) + " |" for r in rows]
    (args.out_dir / "breakdown.md").write_text("\n".join(head) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
