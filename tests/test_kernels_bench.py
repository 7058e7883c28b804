"""benchmarks/kernels.py runs end to end at tiny sizes on CPU (Triton interpreter) and checks itself;
the pure parts of it and of benchmarks/kernel_breakdown.py (FLOP and byte counts, bounds, the choice of
baseline, the issue's targets, the stage that limits a target) and the FA3 baseline's arguments
(``sparse_frontier.vllm_plugin.fa3``) are checked here without a GPU."""

from __future__ import annotations

import csv
import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from sparse_frontier.attention.reference import dense_attention, masked_decode
from sparse_frontier.planning import roofline
from sparse_frontier.planning.cards import H100, H200
from sparse_frontier.vllm_plugin import fa3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import kernel_breakdown  # noqa: E402
import kernels as bench  # noqa: E402


def test_benchmark_dry_run_writes_checked_tables(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "benchmarks/kernels.py", str(tmp_path), "--device", "cpu", "--dry-run", "--card", "H100"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FA3 baselines skipped: --device cpu" in proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "kernels.csv")))
    assert list(rows[0]) == bench.FIELDS
    methods = {(r["kind"], r["method"]) for r in rows}
    assert {
        ("prefill", "vertical_slash"),
        ("prefill", "flexprefill"),
        ("prefill", "block_sparse"),
        ("decode", "quest"),
        ("kv", "snapkv"),
        ("prefill", "dense"),
        ("decode", "dense"),
    } <= methods
    checked = [r for r in rows if r["rel_err"]]
    assert checked and all(float(r["rel_err"]) < 1e-4 for r in checked)
    assert not [r for r in rows if r["note"].startswith("error")]
    fa3_rows = [r for r in rows if r["method"].startswith("dense_fa3")]
    assert fa3_rows and all(r["note"].startswith("unavailable: --device cpu") and not r["ms"] for r in fa3_rows)
    for r in rows:
        if r["kind"] in ("prefill", "decode") and r["ms"] and r["method"] != "quest_summaries":
            assert r["baseline"] == "dense" and float(r["bound_ms"]) > 0
            assert r["tflops" if r["kind"] == "prefill" else "tbs"]
    md = (tmp_path / "kernels.md").read_text()
    assert md.startswith("# Kernel benchmarks") and "## Baselines" in md and "## Targets" in md


# -- formulas --------------------------------------------------------------------------------------------


def test_flop_and_byte_counts():
    t, h, hkv, d = 131072, 28, 4, 128
    assert roofline.causal_flops(t, h, d) == 4 * h * d * t * t / 2 == 2 * h * d * t**2
    assert roofline.prefill_bytes(t, h, hkv, d) == 2 * t * d * (2 * h + 2 * hkv)
    assert roofline.estimation_flops(256, t, h, d) == 2 * h * d * 256 * t
    assert roofline.pooled_index_flops(t, 16, h, d) == h * d * (t // 16) ** 2
    assert roofline.kv_bytes(8, t, hkv, d) == 2 * 2 * 8 * t * hkv * d  # 2 GiB: K and V of batch 8 at 128k
    assert roofline.kv_bytes(8, t, hkv, d) == 2**31
    assert roofline.page_summary_bytes(8, t, hkv, d) == roofline.kv_bytes(8, t, hkv, d) / 16
    assert roofline.page_summary_bytes(1, 17, 1, 1) == 2 * 2 * 2  # a partial page has its summary too
    assert roofline.quest_bytes(8, t, hkv, d, 0.05) == pytest.approx((0.05 + 1 / 16) * 2**31)
    assert roofline.decode_flops(8, t, h, d) == 4 * 8 * h * d * t
    # keeping every block = the causal half of the blocks, each loaded by every query head
    nb = t // 16
    assert roofline.gathered_kv_bytes(t, 16, nb, h, d) == 2 * 2 * h * nb * (nb + 1) / 2 * 16 * d
    # 3 blocks kept of 4 (rows 0-2 keep 1, 2, 3): 9 key blocks of 16 keys x 1 head x d 2, K and V, bf16
    assert roofline.gathered_kv_bytes(64, 16, 3, 1, 2) == 2 * 2 * 9 * 16 * 2
    assert roofline.tflops(1e12, 1.0) == pytest.approx(1000.0) and roofline.tbytes_per_s(1e9, 1.0) == 1.0


def test_bound_is_the_tighter_of_the_two_limits():
    t, h, hkv, d = 131072, 28, 4, 128
    flops, nbytes = roofline.causal_flops(t, h, d), roofline.prefill_bytes(t, h, hkv, d)
    # dense 128k prefill is compute-bound: ~124 ms at 989 TFLOP/s, the same on both cards
    assert roofline.bound_ms(H100, flops, nbytes) == pytest.approx(flops / 989e12 * 1e3)
    assert roofline.bound_ms(H100, flops, nbytes) == roofline.bound_ms(H200, flops, nbytes)
    assert 124 < roofline.bound_ms(H100, flops, nbytes) < 125
    # decode is bandwidth-bound: the H200's HBM is 4.8 / 3.35 times faster
    work = (roofline.decode_flops(8, t, h, d), roofline.kv_bytes(8, t, hkv, d))
    assert roofline.bound_ms(H100, *work) == pytest.approx(2**31 / 3.35e12 * 1e3)
    assert roofline.bound_ms(H100, *work) / roofline.bound_ms(H200, *work) == pytest.approx(4.8 / 3.35)
    assert roofline.bound_ms(H100) == 0.0


# -- baseline choice, rows, targets -------------------------------------------------------------------------


def test_best_baseline_is_the_fastest_available():
    assert bench.best_baseline({"dense": 210.0, "dense_fa3": 180.0, "dense_fa3_paged": 185.0}) == ("dense_fa3", 180.0)
    assert bench.best_baseline({"dense": 0.7, "dense_fa3_paged": None}) == ("dense", 0.7)
    assert bench.best_baseline({"dense_fa3": None}) is None and bench.best_baseline({}) is None


def test_targets_and_pass_or_miss():
    vs = bench.target_for("vertical_slash", 131072, 0.9, 1)
    assert vs.speedup == 7.0
    assert bench.target_for("flexprefill", 131072, 0.9, 1).speedup == 6.0
    assert bench.target_for("block_sparse", 131072, 0.9, 1).speedup == 3.0
    assert bench.target_for("quest_graph", 131072, 0.95, 8).speedup == 6.0
    assert bench.target_for("quest_paged_graph", 131072, 0.95, 8).speedup == 6.0
    # other lengths, sparsities, batches, launch modes: no target
    assert bench.target_for("vertical_slash", 65536, 0.9, 1) is None
    assert bench.target_for("vertical_slash", 131072, 0.95, 1) is None
    assert bench.target_for("quest", 131072, 0.95, 8) is None  # eager: launch overhead vLLM's graphs do not pay
    assert bench.target_for("quest_graph", 131072, 0.95, 1) is None
    assert bench.target_for("quest_graph", 131072, None, 8) is None
    assert bench.target_met(7.0, vs) == "pass" and bench.target_met(6.99, vs) == "miss"
    assert bench.target_met(None, vs) == ""


def test_row_rates_a_sparse_row_against_the_best_baseline_and_the_card():
    t, h, hkv, d = 131072, 28, 4, 128
    base = bench.best_baseline({"dense": 210.0, "dense_fa3": 180.0})
    work = bench.prefill_work(t, h, hkv, d, 0.1, roofline.estimation_flops(256, t, h, d))
    r = bench.row("prefill", "vertical_slash", t, 0.9, 1, 0.1, 30.0, base, 1e-3, "n=1", "", work, H100)
    assert (r["baseline"], r["baseline_ms"], r["speedup"]) == ("dense_fa3", 180.0, 6.0)  # not over SDPA's 210
    assert (r["target"], r["target_met"]) == (">=7x", "miss")
    assert r["ideal"] == 10.0 and r["fraction_of_ideal"] == 0.6
    assert r["tflops"] == bench.sig(work[0] / 30e-3 / 1e12)
    assert r["of_peak"] == bench.sig(work[0] / 30e-3 / 989e12)
    bound = work[0] / 989e12 * 1e3  # compute-bound: ~12.6 ms of kept work at the peak
    assert r["bound_ms"] == bench.sig(bound) and 12 < bound < 13
    assert r["max_speedup"] == bench.sig(180.0 / bound)
    assert "tbs" not in r
    # decode rows are rated in TB/s: Quest at 1/20 over 2 GiB of cache reads ~0.24 GB
    work = (0.0, roofline.quest_bytes(8, t, hkv, d, 0.05))
    r = bench.row(
        "decode", "quest_graph", t, 0.95, 8, 0.05, 0.1, ("dense_fa3_paged_graph", 0.4), None, "", "", work, H100
    )
    assert r["speedup"] == 4.0 and r["target_met"] == "miss" and "tflops" not in r
    assert r["tbs"] == bench.sig(work[1] / 0.1e-3 / 1e12)
    # no card (a CPU run without --card): no rates, no bound
    r = bench.row("prefill", "dense", t, 0.0, 1, 1.0, 180.0, base, None, "", "", work, None)
    assert r["speedup"] == 1.0 and "bound_ms" not in r and "tflops" not in r


def test_breakdown_names_the_limiting_stage_and_the_card_allowance():
    stages = [("estimate", 13.8, 0.25), ("selection", 1.0, None), ("index + kernel", 31.8, 12.4)]
    assert kernel_breakdown.limiting_stage(stages) == "index + kernel"  # 19.4 ms above its bound vs 13.6
    assert kernel_breakdown.limiting_stage([("a", 5.0, 4.9), ("b", 2.0, None)]) == "b"
    target = bench.target_for("vertical_slash", 131072, 0.9, 1)
    text = kernel_breakdown.target_summary(target, 45.0, 12.6, stages, ("fa3", 180.0))
    assert text.startswith("4.00x over fa3 (180 ms): miss (target >= 7x needs <= 25.7 ms)")
    assert "estimate 13.8 ms (31%, 55.2x its bound 0.25 ms)" in text
    assert "limited by: index + kernel" in text and "allows 14.3x" in text


def test_breakdown_target_rows_from_stage_rows():
    def r(part, variant, ms, bound=None, sparsity=0.9, batch=1):
        of = None if bound is None else bound / ms
        return dict(
            part=part,
            length=131072,
            sparsity=sparsity,
            batch=batch,
            variant=variant,
            ms=ms,
            bound_ms=bound,
            of_bound=of,
        )

    rows = [
        r("dense_prefill", "sdpa cudnn", 210.0, 124.0, sparsity=0.0),
        r("dense_prefill", "dense_fa3, vLLM 0.20", 190.0, 124.0, sparsity=0.0),
        r("vertical_slash", "estimate", 13.8, 0.25) | {"role": "stage"},
        r("vertical_slash", "kernel", 31.8, 12.4) | {"role": "stage"},
        r("vertical_slash", "whole prefill call", 45.0, 12.6) | {"role": "whole"},
        r("vertical_slash", "kernel only, warps 4 stages 2", 30.0, 12.4),
        r("quest", "dense decode, CUDA graph", 0.7, 0.32, sparsity=0.95, batch=8) | {"role": "dense"},
        r("quest", "dense decode, fa3 paged (vLLM 0.20), CUDA graph", 0.4, 0.32, sparsity=0.95, batch=8)
        | {"role": "dense"},
        r("quest", "page scores (kernel), CUDA graph", 0.04, 0.02, sparsity=0.95, batch=8) | {"role": "stage"},
        r("quest", "whole step (select kernel), CUDA graph", 0.1, 0.036, sparsity=0.95, batch=8) | {"role": "whole"},
    ]
    out = {x["variant"]: x for x in kernel_breakdown.target_rows(rows)}
    assert set(out) == {"vertical_slash >= 7x", "quest_graph >= 6x"}  # the others were not measured
    assert out["vertical_slash >= 7x"]["note"].startswith("4.22x over dense_fa3, vLLM 0.20 (190 ms): miss")
    assert "limited by: kernel" in out["vertical_slash >= 7x"]["note"]
    assert out["quest_graph >= 6x"]["note"].startswith("4.00x over dense decode, fa3 paged (vLLM 0.20), CUDA graph")
    assert out["quest_graph >= 6x"]["ms"] == 0.1 and out["quest_graph >= 6x"]["bound_ms"] == 0.036


# -- the FA3 baseline's arguments, on CPU -------------------------------------------------------------------


def test_paged_args_for_a_small_decode_batch():
    g = torch.Generator().manual_seed(0)
    lengths = [5, 16, 33]
    keys = [torch.randn(s, 2, 8, generator=g) for s in lengths]
    kv_cache, table = fa3.paged_cache(keys, keys, block_size=16, generator=g, spare=2)
    assert kv_cache.shape == (2, 1 + 1 + 3 + 2, 16, 2, 8)
    assert table.dtype == torch.int32 and table.shape == (3, 3)
    assert table[0, 1:].tolist() == [0, 0] and table[1, 1:].tolist() == [0, 0]  # 0 past a sequence's blocks
    used = [table[0, 0].item(), table[1, 0].item(), *table[2].tolist()]
    assert len(set(used)) == 5  # distinct blocks
    args = fa3.decode_args(table, lengths)
    assert args.cu_seqlens_q.tolist() == [0, 1, 2, 3] and args.cu_seqlens_q.dtype == torch.int32
    assert args.seqused_k.tolist() == lengths and args.seqused_k.dtype == torch.int32
    assert (args.max_seqlen_q, args.max_seqlen_k) == (1, 33)
    # token 32 of sequence 2 is slot 0 of its third block; the pad after it is zeros
    assert torch.equal(kv_cache[0, table[2, 2], 0], keys[2][32])
    assert not kv_cache[0, table[2, 2], 1:].any()
    prefill = fa3.paged_args(table, lengths, lengths)
    assert prefill.cu_seqlens_q.tolist() == [0, 5, 21, 54] and prefill.max_seqlen_q == 33


@pytest.mark.parametrize("hq,hkv", [(4, 2), (4, 4), (6, 1)])
def test_paged_reference_equals_dense_attention_over_the_unpaged_cache(hq, hkv):
    g = torch.Generator().manual_seed(1)
    lengths, d, scale = [7, 16, 40], 16, 0.25
    keys = [torch.randn(s, hkv, d, generator=g) for s in lengths]
    values = [torch.randn(s, hkv, d, generator=g) for s in lengths]
    kv_cache, table = fa3.paged_cache(keys, values, generator=g, spare=3)
    # decode: one query per sequence, over all its tokens
    q = torch.randn(len(lengths), hq, d, generator=g)
    out = fa3.paged_reference(q, kv_cache, fa3.decode_args(table, lengths), scale)
    for b, s in enumerate(lengths):
        keep = torch.ones(hq, s, dtype=torch.bool)
        ref = masked_decode(q[b], keys[b].transpose(0, 1), values[b].transpose(0, 1), keep, scale)
        torch.testing.assert_close(out[b], ref)
    # prefill: every token a query, causal
    q = torch.randn(sum(lengths), hq, d, generator=g)
    args = fa3.paged_args(table, lengths, lengths)
    out = fa3.paged_reference(q, kv_cache, args, scale)
    starts = args.cu_seqlens_q.tolist()
    for b in range(len(lengths)):
        rows = slice(starts[b], starts[b + 1])
        torch.testing.assert_close(out[rows], dense_attention(q[rows], keys[b], values[b], scale))


def test_paged_decode_setup_serves_quest_and_fa3_alike():
    """The benchmark's paged copy of its contiguous decode cache: the FA3 reference over it is dense
    decode, and the plugin's Quest over it (block table, summary pools) equals Quest over the original."""
    from sparse_frontier.kernels.quest import page_summaries
    from sparse_frontier.vllm_plugin.paged_decode import QuestStep

    g = torch.Generator().manual_seed(3)
    b, hq, hkv, t, d, scale, nsel = 2, 4, 2, 200, 16, 0.25, 4
    qd = torch.randn(b, hq, d, generator=g)
    kc, vc = torch.randn(2, b, hkv, t, d, generator=g)
    pmin, pmax = page_summaries(kc, 16)
    kv_cache, table, args, pools = bench.paged_decode_setup(kc, vc, pmin, pmax)
    assert table.shape == (b, 13) and args.seqused_k.tolist() == [t, t] and args.max_seqlen_q == 1
    ref = fa3.paged_reference(qd, kv_cache, args, scale)
    for i in range(b):
        torch.testing.assert_close(
            ref[i], masked_decode(qd[i], kc[i], vc[i], torch.ones(hq, t, dtype=torch.bool), scale)
        )
    lens = torch.full((b, hkv), t, dtype=torch.int32)
    want, _ = bench.quest_step(qd, pmin, pmax, kc, vc, lens, nsel, scale)()
    quest = QuestStep(table, [t] * b, [nsel] * b, 16, True, hq // hkv, hkv)
    torch.testing.assert_close(quest.decode(qd, kv_cache[0], kv_cache[1], pools, scale), want)


def fake_flash_attn(calls):
    """A ``vllm.vllm_flash_attn`` with vLLM 0.20's signatures (flash_attn_interface.py) whose
    varlen function computes causal attention (bottom-right aligned) in plain torch."""

    def flash_attn_varlen_func(
        q,
        k,
        v,
        max_seqlen_q,
        cu_seqlens_q,
        max_seqlen_k,
        cu_seqlens_k=None,
        seqused_k=None,
        q_v=None,
        dropout_p=0.0,
        softmax_scale=None,
        causal=False,
        window_size=None,
        softcap=0.0,
        alibi_slopes=None,
        deterministic=False,
        return_attn_probs=False,
        block_table=None,
        return_softmax_lse=False,
        out=None,
        scheduler_metadata=None,
        q_descale=None,
        k_descale=None,
        v_descale=None,
        num_splits: int = 0,
        fa_version: int = 2,
        s_aux=None,
        cp_world_size=1,
        cp_rank=0,
        cp_tot_seqused_k=None,
    ):
        calls.append({"fa_version": fa_version, "causal": causal, "scheduler_metadata": scheduler_metadata})
        starts = cu_seqlens_q.tolist()
        for b in range(len(starts) - 1):
            if block_table is None:  # contiguous
                k0, k1 = cu_seqlens_k[b].item(), cu_seqlens_k[b + 1].item()
                kb, vb = k[k0:k1], v[k0:k1]
            else:  # [blocks, block_size, Hkv, D] through the block table, seqused_k tokens
                s = seqused_k[b].item()
                kb = torch.cat([k[i] for i in block_table[b].tolist()])[:s]
                vb = torch.cat([v[i] for i in block_table[b].tolist()])[:s]
            qb = q[starts[b] : starts[b + 1]].transpose(0, 1)
            n, s = qb.shape[1], kb.shape[0]
            mask = torch.arange(s)[None, :] <= torch.arange(s - n, s)[:, None] if causal else None
            res = torch.nn.functional.scaled_dot_product_attention(
                qb, kb.transpose(0, 1), vb.transpose(0, 1), attn_mask=mask, scale=softmax_scale, enable_gqa=True
            )
            out[starts[b] : starts[b + 1]] = res.transpose(0, 1)
        return out

    def get_scheduler_metadata(
        batch_size,
        max_seqlen_q,
        max_seqlen_k,
        num_heads_q,
        num_heads_kv,
        headdim,
        cache_seqlens,
        qkv_dtype=torch.bfloat16,
        headdim_v=None,
        cu_seqlens_q=None,
        cu_seqlens_k_new=None,
        cache_leftpad=None,
        page_size=None,
        max_seqlen_k_new=0,
        causal=False,
        window_size=(-1, -1),
        has_softcap=False,
        num_splits=0,
        pack_gqa=None,
        sm_margin=0,
    ):
        return ("schedule", batch_size, max_seqlen_q, max_seqlen_k, num_heads_q, num_heads_kv, page_size, num_splits)

    module = types.ModuleType("vllm.vllm_flash_attn")
    module.flash_attn_varlen_func = flash_attn_varlen_func
    module.get_scheduler_metadata = get_scheduler_metadata
    return module


def test_fa3_adapter_passes_vllm_020_arguments(monkeypatch):
    calls = []
    module = fake_flash_attn(calls)
    monkeypatch.setitem(sys.modules, "vllm.vllm_flash_attn", module)
    g = torch.Generator().manual_seed(2)
    hq, hkv, d, scale, lengths = 4, 2, 16, 0.25, [9, 20]
    keys = [torch.randn(s, hkv, d, generator=g) for s in lengths]
    values = [torch.randn(s, hkv, d, generator=g) for s in lengths]
    kv_cache, table = fa3.paged_cache(keys, values, generator=g, spare=1)
    args = fa3.decode_args(table, lengths)
    sched = fa3.schedule(args, hq, hkv, d, torch.float32, fa3.CUDA_GRAPH_SPLITS)
    assert sched == ("schedule", 2, 1, 20, hq, hkv, 16, 32)
    q = torch.randn(2, hq, d, generator=g)
    out = fa3.paged(q, kv_cache, torch.empty_like(q), args, scale, sched, fa3.CUDA_GRAPH_SPLITS)
    torch.testing.assert_close(out, fa3.paged_reference(q, kv_cache, args, scale))
    assert calls[-1] == {"fa_version": 3, "causal": True, "scheduler_metadata": sched}
    # contiguous varlen prefill
    q = torch.randn(sum(lengths), hq, d, generator=g)
    cu = torch.tensor([0, 9, 29], dtype=torch.int32)
    out = fa3.varlen(
        q,
        torch.cat(keys),
        torch.cat(values),
        torch.empty_like(q),
        cu_seqlens_q=cu,
        max_seqlen_q=20,
        cu_seqlens_k=cu,
        max_seqlen_k=20,
        scale=scale,
    )
    torch.testing.assert_close(out, fa3.paged_reference(q, kv_cache, fa3.paged_args(table, lengths, lengths), scale))
    # the stub takes exactly 0.20's parameters: a keyword 0.20 does not know would have raised TypeError
    assert {"seqused_k", "block_table", "fa_version", "scheduler_metadata", "softmax_scale"} <= set(
        inspect.signature(module.flash_attn_varlen_func).parameters
    )


def test_fa3_unavailable_says_why_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: tests/test_kernels_gpu.py checks FA3 itself")
    assert fa3.unavailable() == "no CUDA device"
    assert bench.fa3_reason("cpu").startswith("--device cpu")
