"""The vLLM plugin's registration and handler, without starting an engine (the e2e tests do that)."""

from importlib.metadata import entry_points
from types import SimpleNamespace

import pytest
import torch

from sparse_frontier import vllm_plugin
from sparse_frontier.vllm_plugin import adapters
from sparse_frontier.vllm_plugin.handler import AttentionHandler, causal_pairs


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


@pytest.mark.parametrize("name, index", [("model.layers.12.self_attn.attn", 12), ("language_model.model.layers.0.self_attn.attn", 0)])
def test_layer_index_comes_from_the_layer_name(name, index):
    assert adapters.layer_index(SimpleNamespace(layer_name=name)) == index


def test_layer_without_index_is_an_error():
    with pytest.raises(ValueError, match="cannot find a layer index"):
        adapters.layer_index(SimpleNamespace(layer_name="encoder.attn"))


def test_causal_pairs():
    assert causal_pairs(4, 4) == 10  # full prefill: 1+2+3+4
    assert causal_pairs(1, 100) == 100  # one decode step sees the whole cache
    assert causal_pairs(2, 5) == 4 + 5


def test_handler_splits_the_batch_and_passes_dense_through():
    handler = AttentionHandler()
    handler.configure({"method": "dense", "params": {}}, adapters.CPU)
    calls = []

    def original(impl, layer, query, key, value, kv_cache, meta, output, *args, **kwargs):
        calls.append(query.shape[0])
        return output

    # One step mixing a 5-token prefill and two decodes (seq lens 9 and 3).
    meta = SimpleNamespace(query_start_loc=torch.tensor([0, 5, 6, 7]), seq_lens=torch.tensor([5, 9, 3]))
    out = torch.zeros(7, 8)
    for layer in (0, 1):
        layer_obj = SimpleNamespace(layer_name=f"model.layers.{layer}.self_attn.attn")
        assert handler.attention(original, None, layer_obj, torch.zeros(7, 2, 4), None, None, None, meta, out) is out
    # The profiling run (no metadata) is passed through without counting.
    handler.attention(original, None, layer_obj, torch.zeros(3, 2, 4), None, None, None, None, out)
    assert calls == [7, 7, 3]
    stats = handler.take_stats()
    assert stats == {"layers": 2, "calls": 2, "prefill_tokens": 5, "decode_tokens": 2, "sparsity": 0.0}
    assert handler.take_stats()["calls"] == 0  # reset after reading
