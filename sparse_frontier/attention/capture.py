"""Recording methods: each global layer's estimation scores (calibration on a real model), and one
layer's queries, keys and values (the pattern figure on a real model).

``capture_estimation`` leaves attention dense (its prefill hook returns None) and writes, per
request and layer, the Vertical-Slash / FlexPrefill estimation scores of the prompt (the same
:func:`~sparse_frontier.attention.vertical_slash.estimate_scores` the methods run) to ``out_dir``.
:mod:`sparse_frontier.calibrate` runs it through vLLM on a few dataset prompts per length and turns
the files into calibration-table entries for the model. Files are written atomically, one per
(request, layer), so worker processes of a tensor-parallel engine never collide.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from sparse_frontier.attention.base import AttentionMethod, AttentionResult
from sparse_frontier.attention.registry import register_method
from sparse_frontier.attention.vertical_slash import estimate_scores


def save_record(out_dir: str, tag: str, layer_index: int, record: dict) -> None:
    """Write one (request, layer) record atomically under a unique name; ``record`` gets the rank
    (the worker processes of a tensor-parallel engine each hold a slice of the heads)."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
    name = f"{tag}-layer{layer_index:03d}-rank{rank}-{uuid.uuid4().hex[:12]}.pt"
    tmp = folder / (name + ".tmp")
    torch.save(dict(record, rank=int(rank)), tmp)
    tmp.replace(folder / name)


@register_method
@dataclass
class CaptureEstimation(AttentionMethod):
    name = "capture_estimation"
    phase = "prefill"
    out_dir: str = ""
    approximation_size: int = 256
    tag: str = "capture"

    def __post_init__(self):
        self.check(bool(self.out_dir), "out_dir", "a folder to write the captured scores to")
        self.check(self.approximation_size >= 1, "approximation_size", "an integer >= 1")
        self.check(bool(self.tag) and "/" not in self.tag, "tag", "a file-name prefix without '/'")

    def prefill(self, query, key, value, *, layer_index: int, scale: float) -> AttentionResult | None:
        vert, slash = estimate_scores(query, key, self.approximation_size, scale)
        save_record(
            self.out_dir,
            self.tag,
            layer_index,
            {
                "vert": vert.float().cpu(),
                "slash": slash.float().cpu(),
                "length": query.shape[0],
                "layer": layer_index,
                "approximation_size": self.approximation_size,
            },
        )
        return None  # attention stays dense


@register_method
@dataclass
class CaptureQKV(AttentionMethod):
    """Records one layer's queries, keys and values (after rotary embedding, as attention sees them)
    for the pattern figure on a real model (:mod:`sparse_frontier.patterns`); attention stays dense."""

    name = "capture_qkv"
    phase = "prefill"
    out_dir: str = ""
    layer: int = 0
    tag: str = "qkv"

    def __post_init__(self):
        self.check(bool(self.out_dir), "out_dir", "a folder to write the captured tensors to")
        self.check(isinstance(self.layer, int) and self.layer >= 0, "layer", "a layer index >= 0")
        self.check(bool(self.tag) and "/" not in self.tag, "tag", "a file-name prefix without '/'")

    def prefill(self, query, key, value, *, layer_index: int, scale: float) -> AttentionResult | None:
        if layer_index != self.layer:
            return None
        save_record(
            self.out_dir,
            self.tag,
            layer_index,
            {
                "query": query.float().cpu(),
                "key": key.float().cpu(),
                "value": value.float().cpu(),
                "layer": layer_index,
                "scale": scale,
            },
        )
        return None  # attention stays dense
