"""A FlashAttention-layout paged cache and a handler run over it, shared by the CPU tests
(tests/test_paged_decode.py, Triton in the interpreter) and the GPU tests (tests/test_kernels_gpu.py).
No environment is set here: importing it does not decide how Triton runs."""

from __future__ import annotations

import torch

BLOCK, HQ, HKV, D = 16, 4, 2, 64


def paged_cache(lengths, seed=0, spare=5, hkv=HKV, d=D, null_block=False):
    """Random K/V per request ([Hkv, S, D]) written into a shuffled paged cache; its block tables.
    ``null_block``: block 0 is given to no request (vLLM's null block, where the handler's graphs point
    padding rows)."""
    g = torch.Generator().manual_seed(seed)
    per_req = max(-(-s // BLOCK) for s in lengths)
    total = len(lengths) * per_req + spare
    order = torch.randperm(total, generator=g)
    if null_block:
        order = order[order != 0]
    cache_k = torch.randn(total, BLOCK, hkv, d, generator=g)  # garbage outside the requests' tokens
    cache_v = torch.randn(total, BLOCK, hkv, d, generator=g)
    tables = order[: len(lengths) * per_req].reshape(len(lengths), per_req)
    keys, values = [], []
    for r, s in enumerate(lengths):
        k, v = torch.randn(2, hkv, s, d, generator=g)
        pos = torch.arange(s)
        cache_k[tables[r, pos // BLOCK], pos % BLOCK] = k.transpose(0, 1)
        cache_v[tables[r, pos // BLOCK], pos % BLOCK] = v.transpose(0, 1)
        keys.append(k)
        values.append(v)
    return cache_k, cache_v, tables, keys, values


def handler_decode_run(monkeypatch, kernels, lengths, spec, dense=(), device="cpu"):
    """Prefill then one decode step of ``lengths`` requests through the handler on a FlashAttention
    cache layout ``[2, blocks, 16, Hkv, D]``, method ``spec`` for all; ``kernels``: triton = the
    batched path (Quest: summary pool; compacted caches: pages of the kept tokens; one set of
    launches per step), torch = the per-request gather path; ``device``: where the tensors live
    (the output comes back on the CPU)."""
    from types import SimpleNamespace

    from sparse_frontier.vllm_plugin import adapters
    from sparse_frontier.vllm_plugin.handler import AttentionHandler

    monkeypatch.setenv("SPARSE_FRONTIER_KERNELS", kernels)
    cache_k, cache_v, tables, keys, values = paged_cache(lengths, seed=4)
    kv_cache = torch.stack([cache_k, cache_v]).to(device)
    tables = tables.to(device)
    handler = AttentionHandler()
    handler.configure(spec, adapters.CUDA_FLASH_ATTN)
    # requests named in ``dense`` run dense attention (their own setting, as vLLM's extra_args carry it)
    dense_params = SimpleNamespace(sampling_params=SimpleNamespace(extra_args={"sparse_frontier": {"method": "dense"}}))
    handler.runner = SimpleNamespace(
        input_batch=SimpleNamespace(req_ids=[f"r{i}" for i in lengths]),
        requests={f"r{lengths[i]}": dense_params for i in dense},
    )
    impl = SimpleNamespace(num_heads=HQ, num_kv_heads=HKV, head_size=D, scale=0.125)
    layer = SimpleNamespace(layer_name="model.layers.0.self_attn.attn")
    backend = []

    def original(impl, layer, query, key, value, kv_cache, meta, output, *args, **kwargs):
        backend.append(meta.query_start_loc.tolist())
        output.fill_(3.0)  # stands for the backend's dense prefill
        return output

    # step 1: every prompt (all but its last token) prefilled at once; step 2: one decode step each
    prompt = [s - 1 for s in lengths]
    starts = torch.tensor([0] + prompt).cumsum(0)
    q = torch.randn(sum(prompt), HQ, D, generator=torch.Generator().manual_seed(6))  # SnapKV's window reads it
    k = torch.cat([keys[r][:, :n].transpose(0, 1) for r, n in enumerate(prompt)])
    v = torch.cat([values[r][:, :n].transpose(0, 1) for r, n in enumerate(prompt)])
    q, k, v = q.to(device), k.to(device), v.to(device)
    meta = SimpleNamespace(
        query_start_loc=starts.to(device),
        seq_lens=torch.tensor(prompt, device=device),
        block_table=tables,
        num_actual_tokens=sum(prompt),
        max_query_len=max(prompt),
        max_seq_len=max(prompt),
    )
    handler.attention(original, impl, layer, q, k, v, kv_cache, meta, torch.zeros(sum(prompt), HQ * D, device=device))
    query = torch.randn(len(lengths), HQ, D, generator=torch.Generator().manual_seed(5))
    new_keys = torch.stack([keys[r][:, s - 1] for r, s in enumerate(lengths)]).to(device)
    query = query.to(device)
    meta = SimpleNamespace(
        query_start_loc=torch.arange(len(lengths) + 1, device=device),
        seq_lens=torch.tensor(lengths, device=device),
        block_table=tables,
        num_actual_tokens=len(lengths),
        max_query_len=1,
        max_seq_len=max(lengths),
    )
    out = torch.zeros(len(lengths), HQ * D, device=device)
    handler.attention(original, impl, layer, query, new_keys, new_keys, kv_cache, meta, out)
    return out.cpu(), handler.take_stats(), backend


def handler_decode_steps(
    monkeypatch, prompts, spec, schedule, graphs, device="cpu", heads=(HQ, HKV, D), dtype=torch.float32, seed=4
):
    """Prefill ``prompts`` (their lengths) at once, then one decode step per entry of ``schedule`` (the
    requests decoding at that step, each one token further) through the handler's batched path on a
    FlashAttention cache layout whose block 0 is vLLM's null block. ``graphs``: "off" (the paths
    launch unpadded), "eager" (the handler's graphs on, none captured: the bucketed work runs
    eagerly) or "replay" (captured and replayed where there is CUDA).
    -> (output rows per step, on the CPU; statistics; the handler; the cache after the last step)."""
    from types import SimpleNamespace

    from sparse_frontier.vllm_plugin import adapters
    from sparse_frontier.vllm_plugin.env import ENV_HANDLER_GRAPHS
    from sparse_frontier.vllm_plugin.handler import AttentionHandler

    hq, hkv, d = heads
    monkeypatch.setenv("SPARSE_FRONTIER_KERNELS", "triton")
    monkeypatch.setenv(ENV_HANDLER_GRAPHS, "0" if graphs == "off" else "1")
    lengths = [p + len(schedule) for p in prompts]  # room for every generated token
    cache_k, cache_v, tables, keys, values = paged_cache(lengths, seed=seed, hkv=hkv, d=d, null_block=True)
    kv_cache = torch.stack([cache_k, cache_v]).to(device, dtype)
    tables = tables.to(device).int()
    handler = AttentionHandler()
    handler.configure(spec, adapters.CUDA_FLASH_ATTN)
    if graphs == "eager":
        handler.router.graphs.max_graphs = 0
    names = [f"r{i}" for i in range(len(prompts))]
    handler.runner = SimpleNamespace(input_batch=SimpleNamespace(req_ids=names), requests={})
    impl = SimpleNamespace(num_heads=hq, num_kv_heads=hkv, head_size=d, scale=d**-0.5)
    layer = SimpleNamespace(layer_name="model.layers.0.self_attn.attn")
    backend = lambda impl, layer, q, k, v, cache, meta, out, *a, **kw: out.fill_(3.0)  # noqa: E731 (dense prefill)
    g = torch.Generator().manual_seed(seed + 1)

    def step(active, query_lens, seq_lens, new_keys, new_values):
        handler.runner.input_batch.req_ids = [names[r] for r in active]
        meta = SimpleNamespace(
            query_start_loc=torch.tensor([0] + query_lens, device=device).cumsum(0),
            seq_lens=torch.tensor(seq_lens, device=device),
            block_table=tables[torch.tensor(active, device=device)],
            num_actual_tokens=sum(query_lens),
            max_query_len=max(query_lens),
            max_seq_len=max(seq_lens),
        )
        q = torch.randn(sum(query_lens), hq, d, generator=g).to(device, dtype)
        out = torch.zeros(sum(query_lens), hq * d, device=device, dtype=dtype)
        handler.attention(backend, impl, layer, q, new_keys, new_values, kv_cache, meta, out)
        return out.float().cpu()

    everyone = list(range(len(prompts)))
    k = torch.cat([keys[r][:, :n].transpose(0, 1) for r, n in enumerate(prompts)]).to(device, dtype)
    v = torch.cat([values[r][:, :n].transpose(0, 1) for r, n in enumerate(prompts)]).to(device, dtype)
    step(everyone, list(prompts), list(prompts), k, v)
    seq, outputs = list(prompts), []
    for active in schedule:
        for r in active:
            seq[r] += 1
        k = torch.stack([keys[r][:, seq[r] - 1] for r in active]).to(device, dtype)
        v = torch.stack([values[r][:, seq[r] - 1] for r in active]).to(device, dtype)
        outputs.append(step(active, [1] * len(active), [seq[r] for r in active], k, v))
    return outputs, handler.take_stats(), handler, kv_cache


DECODE_SPECS = {
    "quest": {"method": "quest", "params": {"sparsity": 0.7}},
    "quest_unshared": {"method": "quest", "params": {"sparsity": 0.7, "share_pages": False}},
    "snapkv": {
        "method": "snapkv",
        "params": {"sparsity": 0.6, "approximation_window": 16, "kernel_size": 5, "local_window": 16},
    },
    "ada_snapkv": {
        "method": "ada_snapkv",
        "params": {"sparsity": 0.6, "approximation_window": 16, "kernel_size": 5, "local_window": 16},
    },
}
