"""The "new method in ~50 lines" example of docs/methods.md registers, runs and matches the reference."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from sparse_frontier.attention import METHODS, get_method_class
from sparse_frontier.attention.reference import masked_attention, vertical_slash_mask
from sparse_frontier.attention.vertical_slash import BLOCK

DOC = Path(__file__).resolve().parent.parent / "docs" / "methods.md"


def test_docs_example_method_registers_and_runs(monkeypatch):
    monkeypatch.setenv("SPARSE_FRONTIER_KERNELS", "torch")
    code = re.search(r"## A new method in ~50 lines.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert len(code.splitlines()) <= 60
    if "sink_window" in METHODS.names():  # re-running in one session: drop the earlier class
        monkeypatch.delitem(METHODS._classes, "sink_window")
    exec(compile(code, str(DOC), "exec"), {})
    cls = get_method_class("sink_window")
    assert cls.resolve_params({"sparsity": 0.7}) == {"sparsity": 0.7, "sink_tokens": 4, "window_blocks": 0}
    method = cls.from_params({"sparsity": 0.7})
    t = 700
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(t, h, 64, generator=g) for h in (4, 2, 2))
    res = method.prefill(q, k, v, layer_index=0, scale=0.125)
    cols, cover = method.index(t, 4, q.device)
    mask = vertical_slash_mask(t, cover, cols, BLOCK)
    assert torch.allclose(res.output, masked_attention(q, k, v, mask, 0.125), atol=1e-5)
    assert abs(1 - res.density.mean().item() - 0.7) < 0.1
    assert mask[:, :, :4][torch.ones(t, 4, dtype=torch.bool).tril().expand(4, t, 4)].all()
