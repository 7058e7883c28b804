"""Kernel benchmarks: sparse prefill / Quest decode / SnapKV vs the best dense a vLLM user has, with correctness checks.

    python benchmarks/kernels.py OUT_DIR                 # one H100: 16k-128k, sparsity 0.5-0.95 (~2-3 min)
    python benchmarks/kernels.py OUT_DIR --device cpu --dry-run   # tiny sizes, Triton interpreter (tests)

Shapes are Qwen2.5-7B's (28 query heads, 4 kv heads, head dim 128), bf16 on CUDA. Timings: CUDA
events, warm-up first, median of several runs. Prefill times include index building (estimation,
selection, index tensors). Quest decode times page scoring + selection + sparse decode over
precomputed page summaries (a paged cache keeps them incrementally; their full recomputation is
reported apart as ``quest_summaries``), launched eagerly (``quest``: includes Python/launch
overhead, which dominates at small batch) and replayed from a CUDA graph (``quest_graph``: GPU time
only; ``quest_paged_graph``: the plugin's path, reading vLLM's paged cache through the block table).

Dense baselines (:data:`BASELINES_DOC`): torch SDPA (the fastest of its cuDNN and flash backends) and
vLLM's FlashAttention 3 (``sparse_frontier.vllm_plugin.fa3``: varlen over contiguous K/V, and paged
as vLLM's ``FlashAttentionImpl.forward`` calls it; decode eager and CUDA-graphed). Each sparse row's
``speedup`` is over the fastest dense row of the same shape (and the same launch mode in decode), and
``tflops`` (prefill) / ``tbs`` (decode), ``of_peak``, ``bound_ms`` and ``max_speedup`` put it next to
the card's data-sheet limits (``sparse_frontier.planning.roofline``). The issue's targets
(:data:`TARGETS`) get a pass/miss column. Without CUDA or vLLM's FA3 the FA3 rows say why and the
rest runs. Each row records the measured density, the ideal 1/density and the fraction of it reached,
and the relative error vs the float32 reference at that size (prefill: on the last 128 query rows of
two heads; decode: on the first batch element). Writes ``kernels.csv`` and ``kernels.md`` into
OUT_DIR. A failing configuration is recorded, not fatal.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sparse_frontier.planning import roofline  # noqa: E402
from sparse_frontier.planning.cards import CARDS, Card, card_named  # noqa: E402

FIELDS = [
    "kind",
    "method",
    "length",
    "sparsity",
    "batch",
    "density",
    "ms",
    "baseline",
    "baseline_ms",
    "speedup",
    "tflops",
    "tbs",
    "of_peak",
    "bound_ms",
    "max_speedup",
    "ideal",
    "fraction_of_ideal",
    "target",
    "target_met",
    "rel_err",
    "params",
    "note",
]

BASELINES_DOC = """\
## Baselines

Every sparse row's `speedup` is over the fastest dense baseline of the same shape (`baseline` names
it; decode: of the same launch mode, eager or CUDA graph), all timed in the same run:

- prefill `dense`: torch SDPA, the fastest of cuDNN (`sdpa_kernel(SDPBackend.CUDNN_ATTENTION)`) and
  flash, GQA native or K/V repeated outside the timing (a backend this build lacks is skipped);
- prefill `dense_fa3`: vLLM's FlashAttention 3 varlen kernel (`vllm.vllm_flash_attn.flash_attn_varlen_func`,
  `fa_version=3`, causal) over contiguous K/V (`cu_seqlens_q = cu_seqlens_k = [0, L]`);
- prefill `dense_fa3_paged`: the same kernel as vLLM 0.20's `FlashAttentionImpl.forward` calls it in a
  prefill: K/V in a paged cache `(2, blocks, 16, kv_heads, d)`, `block_table`, `seqused_k`,
  `cu_seqlens_q`, FA3's ahead-of-time `scheduler_metadata` (made once per step, outside the timing);
- decode `dense` / `dense_graph`: torch SDPA over a contiguous cache, eager / replayed from a CUDA graph;
- decode `dense_fa3_paged` / `dense_fa3_paged_graph`: vLLM's FA3 paged decode (one query per sequence,
  `max_seqlen_q=1`, `cu_seqlens_q = [0, 1, .., B]`, `seqused_k`, `block_table` over 16-token blocks,
  `scheduler_metadata`), eager (`num_splits=0`) and captured in a `torch.cuda.CUDAGraph` with static
  buffers and replayed (`num_splits=32`, vLLM's cap for full CUDA graphs).

Formulas (`sparse_frontier/planning/roofline.py`; h = 28 query heads, h_kv = 4 kv heads, d = 128,
L = length, B = batch, 2 bytes an element):

- causal prefill FLOPs = 4 * h * d * L^2 / 2 (QK^T and PV); a sparse row's work = density * that +
  its index building (Vertical-Slash/FlexPrefill: 2 * h * d * 256 * L for the last 256 queries;
  Block-Sparse: 2 * h * d * (L/16)^2 / 2 for the pooled blocks); `tflops` = work / time;
- decode bytes = 2 * 2 * B * L * h_kv * d (K and V read once); Quest reads density * that plus its page
  summaries 2 * 2 * B * h_kv * (L/16) * d; `tbs` = bytes / time in TB/s;
- `of_peak` = `tflops` / dense bf16 peak (prefill) or `tbs` / HBM peak (decode): H100 SXM 989 TFLOP/s
  and 3.35 TB/s, H200 989 TFLOP/s (the same tensor cores) and 4.8 TB/s;
- `bound_ms` = max(FLOPs / peak FLOP/s, bytes / peak bytes/s) for the row's work (prefill bytes:
  Q, K, V read and O written once): the least time the card allows; `max_speedup` = `baseline_ms` /
  `bound_ms`, what the card allows at that density against that baseline.

Targets (issue #18; `target_met` pass/miss): Vertical-Slash >= 7x and FlexPrefill >= 6x at 128k,
sparsity 0.9; Block-Sparse (16-token blocks) >= 3x at 128k, sparsity 0.9; Quest at 128k, 1/20
budget (sparsity 0.95), batch 8 >= 6x, graphed against graphed dense decode (`quest_graph`,
`quest_paged_graph`). `benchmarks/kernel_breakdown.py` says per target which stage limits it.
"""


class Target(NamedTuple):
    """A speedup the issue asks of one row: method at (length, sparsity, batch), over the best dense baseline."""

    method: str
    length: int
    sparsity: float
    batch: int
    speedup: float


TARGETS = (
    Target("vertical_slash", 131072, 0.9, 1, 7.0),
    Target("flexprefill", 131072, 0.9, 1, 6.0),
    Target("block_sparse", 131072, 0.9, 1, 3.0),
    Target("quest_graph", 131072, 0.95, 8, 6.0),
    Target("quest_paged_graph", 131072, 0.95, 8, 6.0),
)


def target_for(method: str, length: int, sparsity, batch: int) -> Target | None:
    """The target of :data:`TARGETS` this row is measured for, else None."""
    for target in TARGETS:
        if (target.method, target.length, target.batch) == (method, length, batch) and (
            sparsity is not None and math.isclose(target.sparsity, sparsity)
        ):
            return target
    return None


def target_met(speedup: float | None, target: Target) -> str:
    """``pass`` or ``miss`` (empty without a measured speedup)."""
    if speedup is None:
        return ""
    return "pass" if speedup >= target.speedup else "miss"


def best_baseline(candidates: dict[str, float | None]) -> tuple[str, float] | None:
    """(name, ms) of the fastest dense baseline; unavailable ones (None) are skipped; None if there is none."""
    timed = [(ms, name) for name, ms in candidates.items() if ms is not None]
    if not timed:
        return None
    ms, name = min(timed)
    return name, ms


def sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits (rates and bounds span many decades)."""
    return float(f"{x:.{digits}g}")


def card_for(name: str | None, device: str) -> Card | None:
    """``--card`` if given, else the CUDA device's card (``planning.cards``), else None (no peaks, no bounds)."""
    if name:
        return CARDS[name]
    return card_named(torch.cuda.get_device_name()) if device == "cuda" else None


def timer(device: str, reps: int, warmup: int):
    def run(fn) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    return run


def dense_prefill_variants(q, k, v, scale) -> dict:
    """Every dense causal SDPA on CUDA for [T, H, D] inputs: {label: fn} over the flash and cuDNN
    backends, GQA native or with K/V repeated (outside the timing). A variant this build lacks
    raises RuntimeError when called."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qt, kt, vt = (x.transpose(0, 1)[None] for x in (q, k, v))
    g = q.shape[1] // k.shape[1]
    kr, vr = kt.repeat_interleave(g, 1), vt.repeat_interleave(g, 1)
    variants = {}
    for backend, label in [(SDPBackend.CUDNN_ATTENTION, "cudnn"), (SDPBackend.FLASH_ATTENTION, "flash")]:
        for gqa in (True, False):
            kk, vv = (kt, vt) if gqa else (kr, vr)

            def f(backend=backend, kk=kk, vv=vv, gqa=gqa):
                with sdpa_kernel([backend]):
                    extra = {"enable_gqa": True} if gqa else {}
                    return torch.nn.functional.scaled_dot_product_attention(
                        qt, kk, vv, is_causal=True, scale=scale, **extra
                    )

            variants[f"sdpa {label}, " + ("enable_gqa" if gqa else "K/V repeated")] = f
    return variants


def dense_prefill_fn(q, k, v, scale, run=None):
    """The fastest dense causal SDPA this torch offers on [1, H, T, D] (flash / cuDNN, GQA native or K/V repeated).

    On the H100/H200 cuDNN's kernel is ~1.7x faster than the flash backend at long lengths, and is
    the dense baseline of the team's H100 measurements (benchmarks/results/); a ratio against a slower baseline would flatter
    the sparse kernels. ``run`` times the candidates (K/V repetition outside the timing).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if not q.is_cuda:
        qt, kt, vt = (x.transpose(0, 1)[None] for x in (q, k, v))

        def f_cpu():
            with sdpa_kernel([SDPBackend.MATH]):
                return torch.nn.functional.scaled_dot_product_attention(
                    qt, kt, vt, is_causal=True, scale=scale, enable_gqa=True
                )

        return f_cpu, "sdpa math (cpu)"
    best = None
    for note, f in dense_prefill_variants(q, k, v, scale).items():
        try:
            ms = run(f) if run else 0.0
        except RuntimeError:
            continue
        if best is None or ms < best[0]:
            best = (ms, f, note)
    return best[1], best[2] + " (fastest dense SDPA here)"


def dense_decode_fn(q, kc, vc, scale):
    qt = q[:, :, None]  # [B, Hq, 1, D]

    def f():
        return torch.nn.functional.scaled_dot_product_attention(qt, kc, vc, scale=scale, enable_gqa=True)

    try:
        f()
        return f, "sdpa default backend, enable_gqa"
    except RuntimeError:
        g = q.shape[1] // kc.shape[1]
        kr, vr = kc.repeat_interleave(g, 1), vc.repeat_interleave(g, 1)
        return (lambda: torch.nn.functional.scaled_dot_product_attention(qt, kr, vr, scale=scale)), "sdpa, K/V repeated"


def graph_run(run, fn) -> float:
    """``run`` timing of ``fn`` captured once in a CUDA graph and replayed (pure GPU time)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return run(graph.replay)


def quest_step(query, pmin, pmax, key, value, lengths, n_select: int, scale: float, page: int = 16):
    """One layer's Quest decode over a contiguous cache ``[B, Hkv, S, D]`` as a callable -> (out, pages),
    with the per-step index tensors (int32) made once outside it, as the plugin's QuestStep does."""
    from sparse_frontier.kernels.quest import page_scores, select_pages, sparse_decode

    npages = (lengths + page - 1) // page
    current = npages - 1
    row_k = torch.full((npages.numel(),), min(n_select + 1, int(npages.max())), device=query.device, dtype=torch.int32)
    out = torch.empty_like(query)

    def step():
        pages = select_pages(page_scores(query, pmin, pmax, npages, True, True), current, n_select, True, row_k=row_k)
        return sparse_decode(query, key, value, pages, lengths, page, scale, True, out=out), pages

    return step


def rel_err(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def fa3_prefill_fns(q, k, v, scale) -> dict:
    """vLLM's FA3 over ``[T, H, D]`` inputs: ``{"dense_fa3": varlen over contiguous K/V,
    "dense_fa3_paged": paged as FlashAttentionImpl.forward calls it}`` -> (fn, output)."""
    from sparse_frontier.vllm_plugin import fa3

    t = q.shape[0]
    cu = torch.tensor([0, t], dtype=torch.int32, device=q.device)
    out, out_paged = torch.empty_like(q), torch.empty_like(q)
    kv_cache, table = fa3.paged_cache([k], [v], generator=torch.Generator().manual_seed(1))
    args = fa3.paged_args(table, [t], [t])
    sched = fa3.schedule(args, q.shape[1], k.shape[1], q.shape[2], q.dtype)
    return {
        "dense_fa3": (
            lambda: fa3.varlen(
                q, k, v, out, cu_seqlens_q=cu, max_seqlen_q=t, cu_seqlens_k=cu, max_seqlen_k=t, scale=scale
            ),
            out,
        ),
        "dense_fa3_paged": (lambda: fa3.paged(q, kv_cache, out_paged, args, scale, sched), out_paged),
    }


def paged_decode_setup(kc, vc, pmin, pmax):
    """vLLM's paged cache of a contiguous decode cache ``[B, Hkv, S, D]`` (shuffled 16-token blocks),
    its decode arguments, and the Quest summary pools ``[blocks, Hkv, D]`` at the same block ids."""
    from sparse_frontier.vllm_plugin import fa3

    b, hkv, t, d = kc.shape
    kv_cache, table = fa3.paged_cache(
        kc.transpose(1, 2), vc.transpose(1, 2), generator=torch.Generator().manual_seed(2)
    )
    pools = []
    for summary in (pmin, pmax):
        pool = summary.new_zeros(kv_cache.shape[1], hkv, d)
        pool[table.long()] = summary.permute(0, 2, 1, 3)
        pools.append(pool)
    return kv_cache, table, fa3.decode_args(table, [t] * b), tuple(pools)


def fa3_decode_fns(qd, kv_cache, args, scale) -> dict:
    """FA3 paged decode as vLLM 0.20 runs it: ``{"dense_fa3_paged": eager (FA3's split heuristics),
    "dense_fa3_paged_graph": the call vLLM captures in a full CUDA graph (split cap 32)}`` -> (fn, output)."""
    from sparse_frontier.vllm_plugin import fa3

    hq, d = qd.shape[1:]
    hkv = kv_cache.shape[3]
    fns = {}
    for name, splits in (("dense_fa3_paged", 0), ("dense_fa3_paged_graph", fa3.CUDA_GRAPH_SPLITS)):
        out = torch.empty_like(qd)
        sched = fa3.schedule(args, hq, hkv, d, qd.dtype, splits)
        fns[name] = (lambda out=out, sched=sched, n=splits: fa3.paged(qd, kv_cache, out, args, scale, sched, n), out)
    return fns


def fa3_reason(device: str) -> str | None:
    """Why the FA3 rows are skipped on this run, or None."""
    if device != "cuda":
        return "--device cpu (vLLM's FlashAttention 3 is CUDA-only)"
    from sparse_frontier.vllm_plugin import fa3

    return fa3.unavailable()


def prefill_work(t, hq, hkv, d, density, index_flops=0.0) -> tuple[float, float]:
    """(FLOPs, bytes) of a prefill at this density (plus its index building)."""
    return density * roofline.causal_flops(t, hq, d) + index_flops, roofline.prefill_bytes(t, hq, hkv, d)


def prefill_baselines(t, q, k, v, scale, run, results, card, no_fa3) -> tuple[str, float] | None:
    """Time the dense prefill baselines (rows ``dense``, ``dense_fa3``, ``dense_fa3_paged``; FA3's
    checked on the last 128 rows of two heads); returns the fastest as (name, ms)."""
    from sparse_frontier.attention.reference import masked_attention

    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    r0, heads = max(0, t - 128), [0, hq - 1]
    causal_rows = torch.arange(t, device=q.device)[None, :] <= torch.arange(r0, t, device=q.device)[:, None]
    ref = masked_attention(
        q[r0:, heads],
        k[:, [h * hkv // hq for h in heads]],
        v[:, [h * hkv // hq for h in heads]],
        causal_rows.expand(2, -1, -1),
        scale,
    )
    dense_work = prefill_work(t, hq, hkv, d, 1.0)
    dense, note = dense_prefill_fn(q, k, v, scale, run)
    timed = {"dense": (run(dense), None, note)}
    fns = {}
    try:
        fns = {} if no_fa3 else fa3_prefill_fns(q, k, v, scale)
    except Exception as e:  # noqa: BLE001 - record and go on
        results.append(row("prefill", "dense_fa3", t, 0.0, 1, note=f"error: {e!r}"[:300]))
    for name, (fn, out) in fns.items():
        try:
            fn()
            timed[name] = (run(fn), rel_err(out[r0:, heads], ref), "vLLM 0.20 FlashAttention 3")
        except Exception as e:  # noqa: BLE001 - record and go on
            results.append(row("prefill", name, t, 0.0, 1, note=f"error: {e!r}"[:300]))
    base = best_baseline({name: ms for name, (ms, _, _) in timed.items()})
    for name, (ms, err, note) in timed.items():
        results.append(row("prefill", name, t, 0.0, 1, 1.0, ms, base, err, "", note, dense_work, card))
    if no_fa3:
        results.append(row("prefill", "dense_fa3", t, 0.0, 1, note=f"unavailable: {no_fa3}"))
    return base


def prefill_rows(args, t, s, run, results, base, q, k, v, scale, card):
    from sparse_frontier.attention.block_sparse import BlockSparse, block_density, block_index, top_chunks_for
    from sparse_frontier.attention.calibration import search_int
    from sparse_frontier.attention.reference import block_list_mask, masked_attention, vertical_slash_mask
    from sparse_frontier.attention.vertical_slash import (
        FlexPrefill,
        VerticalSlash,
        estimate_scores,
        index_density,
    )

    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    rows = (max(0, t - 128), t)
    heads = [0, q.shape[1] - 1]

    def check(out, mask_rows):
        m = mask_rows[heads]
        ref = masked_attention(
            q[rows[0] :, heads],
            k[:, [h // (q.shape[1] // k.shape[1]) for h in heads]],
            v[:, [h // (q.shape[1] // k.shape[1]) for h in heads]],
            m,
            scale,
        )
        return rel_err(out[rows[0] :, heads], ref)

    # Vertical-Slash: sizes calibrated once on these inputs (outside the timing), then fixed
    approx = args.approximation_size
    vert, slash = estimate_scores(q, k, approx, scale)
    probe = VerticalSlash(approximation_size=approx)
    n = search_int(lambda n: index_density(*probe.select_raw(vert, slash, n, n)[::-1], t).mean().item(), 1 - s, 1, t)
    del vert, slash
    est = roofline.estimation_flops(approx, t, hq, d)
    for name, method in [
        ("vertical_slash", VerticalSlash(vertical_size=n, slash_size=n, approximation_size=approx)),
        # the paper's high-compression FlexPrefill setting: alpha 0, min_budget = the VS size
        ("flexprefill", FlexPrefill(alpha=0.0, min_budget=n, approximation_size=approx)),
    ]:
        try:
            res = method.prefill(q, k, v, layer_index=0, scale=scale)
            dens = res.density.mean().item()
            cols, cover = method.index(q, k, scale)
            err = check(res.output, vertical_slash_mask(t, cover, cols, 64, rows=rows))
            ms = run(lambda: method.prefill(q, k, v, layer_index=0, scale=scale))
            work = prefill_work(t, hq, hkv, d, dens, est)
            results.append(row("prefill", name, t, s, 1, dens, ms, base, err, f"vertical_size={n}", "", work, card))
        except Exception as e:  # noqa: BLE001 - record and go on
            results.append(row("prefill", name, t, s, 1, note=f"error: {e!r}"[:300]))
    try:
        bs = args.block_size
        top = top_chunks_for(t, bs, s)
        method = BlockSparse(top_chunks=top, chunk_size=bs)
        res = method.prefill(q, k, v, layer_index=0, scale=scale)
        blocks, counts = block_index(q, k, bs, top)
        err = check(res.output, block_list_mask(t, blocks, counts, bs, rows=rows))
        del blocks, counts
        ms = run(lambda: method.prefill(q, k, v, layer_index=0, scale=scale))
        dens = block_density(t, bs, top)
        work = prefill_work(t, hq, hkv, d, dens, roofline.pooled_index_flops(t, bs, hq, d))
        params = f"top_chunks={top},chunk_size={bs}"
        # its limit is the K/V its per-query-block programs gather, not FLOPs: say how fast it moves them
        gathered = roofline.gathered_kv_bytes(t, bs, top, hq, d)
        note = f"gathers {gathered / 1e9:.0f} GB of K/V: {roofline.tbytes_per_s(gathered, ms):.2f} TB/s"
        results.append(row("prefill", "block_sparse", t, s, 1, dens, ms, base, err, params, note, work, card))
    except Exception as e:  # noqa: BLE001
        results.append(row("prefill", "block_sparse", t, s, 1, note=f"error: {e!r}"[:300]))


def decode_rows(args, t, b, hq, hkv, d, device, dtype, g, scale, run, results, card, no_fa3):
    """Dense decode baselines and Quest at every sparsity over a cache of ``t`` tokens, batch ``b``."""
    from sparse_frontier.attention.quest import budget_pages
    from sparse_frontier.attention.reference import masked_decode, page_keep_mask
    from sparse_frontier.kernels.quest import page_summaries
    from sparse_frontier.vllm_plugin.paged_decode import QuestStep

    cuda = device == "cuda"
    qd = torch.randn(b, hq, d, device=device, dtype=dtype, generator=g)
    kc = torch.randn(b, hkv, t, d, device=device, dtype=dtype, generator=g)
    vc = torch.randn(b, hkv, t, d, device=device, dtype=dtype, generator=g)
    lens = torch.full((b, hkv), t, device=device, dtype=torch.int32)  # int32 as the plugin passes it
    pmin, pmax = page_summaries(kc, 16)
    ref = masked_decode(qd[0], kc[0], vc[0], torch.ones(hq, t, dtype=torch.bool, device=device), scale)
    dense, note = dense_decode_fn(qd, kc, vc, scale)
    eager = {"dense": (run(dense), None, note)}
    graphed = {"dense_graph": (graph_run(run, dense), None, note + ", CUDA graph")} if cuda else {}
    paged = paged_decode_setup(kc, vc, pmin, pmax) if cuda else None
    fns = {}
    try:
        fns = fa3_decode_fns(qd, paged[0], paged[2], scale) if paged and not no_fa3 else {}
    except Exception as e:  # noqa: BLE001 - record and go on
        results.append(row("decode", "dense_fa3_paged", t, 0.0, b, note=f"error: {e!r}"[:300]))
    for name, (fn, out) in fns.items():
        try:
            fn()
            err = rel_err(out[0], ref)
            if name.endswith("_graph"):
                graphed[name] = (graph_run(run, fn), err, "vLLM 0.20 FA3 paged decode, CUDA graph, num_splits 32")
            else:
                eager[name] = (run(fn), err, "vLLM 0.20 FA3 paged decode")
        except Exception as e:  # noqa: BLE001 - record and go on
            results.append(row("decode", name, t, 0.0, b, note=f"error: {e!r}"[:300]))
    if no_fa3:
        results.append(row("decode", "dense_fa3_paged", t, 0.0, b, note=f"unavailable: {no_fa3}"))
    base_eager = best_baseline({name: ms for name, (ms, _, _) in eager.items()})
    base_graph = best_baseline({name: ms for name, (ms, _, _) in graphed.items()})
    dense_work = (roofline.decode_flops(b, t, hq, d), roofline.kv_bytes(b, t, hkv, d))
    for timed, base in ((eager, base_eager), (graphed, base_graph)):
        for name, (ms, err, note) in timed.items():
            results.append(row("decode", name, t, 0.0, b, 1.0, ms, base, err, "", note, dense_work, card))
    results.append(
        row(
            "decode",
            "quest_summaries",
            t,
            None,
            b,
            1.0,
            run(lambda: page_summaries(kc, 16)),
            note="full recomputation; incremental in a paged cache",
        )
    )
    for s in args.sparsities:
        nsel = budget_pages(s, 0, t, 16)
        step = quest_step(qd, pmin, pmax, kc, vc, lens, nsel, scale)
        out, pages = step()
        keep = page_keep_mask(pages[0], t, 16, hq // hkv)
        err = rel_err(out[0], masked_decode(qd[0], kc[0], vc[0], keep, scale))
        dens = keep.float().mean().item()
        work = (dens * roofline.decode_flops(b, t, hq, d), roofline.quest_bytes(b, t, hkv, d, dens))
        params = f"pages={nsel}+1"
        results.append(row("decode", "quest", t, s, b, dens, run(step), base_eager, err, params, "", work, card))
        if not cuda:
            continue
        # GPU time alone: replayed from CUDA graphs, as the graphed dense rows
        ms = graph_run(run, step)
        note = "CUDA graph, contiguous cache"
        results.append(row("decode", "quest_graph", t, s, b, dens, ms, base_graph, err, params, note, work, card))
        kv_cache, table, _, pools = paged
        quest = QuestStep(table, [t] * b, [nsel] * b, 16, True, hq // hkv, hkv)
        out_paged = torch.empty_like(qd)
        paged_step = lambda: quest.decode(qd, kv_cache[0], kv_cache[1], pools, scale, out=out_paged)  # noqa: E731
        paged_step()
        err = rel_err(out_paged[0], masked_decode(qd[0], kc[0], vc[0], keep, scale))
        ms = graph_run(run, paged_step)
        note = "CUDA graph, vLLM's paged cache through the block table (the plugin's path)"
        results.append(row("decode", "quest_paged_graph", t, s, b, dens, ms, base_graph, err, params, note, work, card))
    del qd, kc, vc, pmin, pmax, paged


def row(
    kind, method, t, s, batch, density=None, ms=None, base=None, err=None, params="", note="", work=None, card=None
):
    """One table row. ``base``: (name, ms) of the fastest dense baseline; ``work``: (FLOPs, bytes) of
    the row's work, rated against ``card``'s peaks (prefill in TFLOP/s, decode in TB/s)."""
    r = {"kind": kind, "method": method, "length": t, "sparsity": s, "batch": batch, "params": params, "note": note}
    if ms is None:
        return r
    r.update(density=round(density, 4), ms=round(ms, 3))
    speedup = None
    if base:
        name, base_ms = base
        speedup = base_ms / ms
        ideal = 1 / density
        r.update(
            baseline=name,
            baseline_ms=round(base_ms, 3),
            speedup=round(speedup, 2),
            ideal=round(ideal, 2),
            fraction_of_ideal=round(speedup / ideal, 3),
        )
    if work and card:
        flops, nbytes = work
        if kind == "prefill":
            r["tflops"] = sig(roofline.tflops(flops, ms))
            r["of_peak"] = sig(flops / (ms * 1e-3) / card.peak_flops)
        else:
            r["tbs"] = sig(roofline.tbytes_per_s(nbytes, ms))
            r["of_peak"] = sig(nbytes / (ms * 1e-3) / card.peak_hbm_bytes_per_s)
        bound = roofline.bound_ms(card, flops, nbytes)
        r["bound_ms"] = sig(bound)
        if base:
            r["max_speedup"] = sig(base[1] / bound)
    target = target_for(method, t, s, batch)
    if target:
        r.update(target=f">={target.speedup:g}x", target_met=target_met(speedup, target))
    if err is not None:
        r["rel_err"] = f"{err:.2e}"
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes (seconds on CPU with TRITON_INTERPRET=1)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[16384, 32768, 65536, 131072])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--approximation-size", type=int, default=256)
    ap.add_argument("--card", choices=sorted(CARDS), help="peaks to rate rows against (default: the CUDA device's)")
    ap.add_argument("--time-budget", type=float, default=480.0, help="seconds; later configurations are skipped")
    args = ap.parse_args(argv)
    hq, hkv, d = 28, 4, 128
    if args.dry_run:
        args.lengths, args.sparsities, args.batches, args.reps = [200], [0.5, 0.9], [1, 2], 1
        args.approximation_size = 64
        hq, hkv, d = 4, 2, 64
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no GPU is visible; use --device cpu --dry-run")
    if args.device == "cpu":
        os.environ.setdefault(
            "SPARSE_FRONTIER_KERNELS", "triton" if os.environ.get("TRITON_INTERPRET") == "1" else "torch"
        )
    device, dtype = args.device, torch.bfloat16 if args.device == "cuda" else torch.float32
    card = card_for(args.card, device)
    no_fa3 = fa3_reason(device)
    if no_fa3:
        print(f"FA3 baselines skipped: {no_fa3}", file=sys.stderr)
    run = timer(device, args.reps, 0 if args.dry_run else 2)
    scale = d**-0.5
    results: list[dict] = []
    started = time.time()
    g = torch.Generator(device=device).manual_seed(0)

    def over_budget():
        return time.time() - started > args.time_budget

    from sparse_frontier.attention.snapkv import SnapKV

    for t in args.lengths:
        if over_budget():
            results.append(row("prefill", "all", t, None, 1, note="skipped: time budget"))
            continue
        q = torch.randn(t, hq, d, device=device, dtype=dtype, generator=g)
        k = torch.randn(t, hkv, d, device=device, dtype=dtype, generator=g)
        v = torch.randn(t, hkv, d, device=device, dtype=dtype, generator=g)
        base = prefill_baselines(t, q, k, v, scale, run, results, card, no_fa3)
        for s in args.sparsities:
            if over_budget():
                results.append(row("prefill", "all", t, s, 1, note="skipped: time budget"))
                continue
            prefill_rows(args, t, s, run, results, base, q, k, v, scale, card)
        # SnapKV compression (scoring + pooling + top-k)
        for s in args.sparsities:
            try:
                m = SnapKV(sparsity=s)
                results.append(
                    row(
                        "kv",
                        "snapkv",
                        t,
                        s,
                        1,
                        1 - s,
                        run(lambda: m.compress_kv(q, k, v, layer_index=0, scale=scale)),
                        params=f"token_capacity={m.capacity(t)}",
                    )
                )
            except Exception as e:  # noqa: BLE001
                results.append(row("kv", "snapkv", t, s, 1, note=f"error: {e!r}"[:300]))
        del q, k, v
        # Quest decode over a cache of t tokens
        for b in args.batches:
            if over_budget():
                results.append(row("decode", "quest", t, None, b, note="skipped: time budget"))
                continue
            try:
                decode_rows(args, t, b, hq, hkv, d, device, dtype, g, scale, run, results, card, no_fa3)
            except Exception as e:  # noqa: BLE001
                results.append(row("decode", "quest", t, None, b, note=f"error: {e!r}"[:300]))
            if device == "cuda":
                torch.cuda.empty_cache()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    with open(args.out_dir / "kernels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(results)
    gpu = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    peaks = (
        f"rated against {card.name}: {card.peak_flops / 1e12:g} TFLOP/s dense bf16, {card.peak_hbm_bytes_per_s / 1e12:g} TB/s"
        if card
        else "no card peaks (--card to rate the rows)"
    )
    lines = [
        "# Kernel benchmarks",
        "",
        f"{gpu}; torch {torch.__version__}; triton {__import__('triton').__version__}; heads {hq}/{hkv}, d {d}, "
        f"{dtype}; median of {args.reps} runs; {peaks}; FA3 baselines: {no_fa3 or 'vLLM 0.20 flash_attn_varlen_func'}; "
        f"total {time.time() - started:.0f} s. Written by `benchmarks/kernels.py`.",
        "",
        # which lengths, batches and budget this file covers (a run may have been cut to fit a session)
        f"Command: `python benchmarks/kernels.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        BASELINES_DOC,
        "## Results",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in FIELDS) + " |" for r in results]
    lines += ["", *targets_table(results)]
    (args.out_dir / "kernels.md").write_text("\n".join(lines) + "\n")
    bad = [r for r in results if r.get("rel_err") and float(r["rel_err"]) > (2e-2 if dtype != torch.float32 else 1e-4)]
    errors = [r for r in results if str(r.get("note", "")).startswith("error")]
    print("\n".join(lines))
    if bad or errors:
        print(f"{len(bad)} rows above the error tolerance, {len(errors)} failed configurations", file=sys.stderr)
        return 1
    return 0


def targets_table(results: list[dict]) -> list[str]:
    """The issue's targets (:data:`TARGETS`) as Markdown lines: the rows measured for them, pass/miss."""
    lines = [
        "## Targets",
        "",
        "| target | row | speedup | over | met | card allows |",
        "|---|---|---|---|---|---|",
    ]
    for target in TARGETS:
        found = [r for r in results if target_for(r["method"], r["length"], r["sparsity"], r["batch"]) == target]
        where = f"{target.method}, L={target.length}, sparsity {target.sparsity}, batch {target.batch}"
        if not found:
            lines.append(f"| >={target.speedup:g}x | {where} | not measured in this run |  |  |  |")
        for r in found:
            lines.append(
                f"| >={target.speedup:g}x | {where} | {r.get('speedup', '')} | {r.get('baseline', '')} "
                f"| {r.get('target_met', '') or r.get('note', '')} | {r.get('max_speedup', '')} |"
            )
    return lines


if __name__ == "__main__":
    sys.exit(main())
