"""What the handler knows about one live request (its method, cache lengths, measured density) and
how it turns into the request's statistics."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch


class RequestState:
    """One live request: its method (with what the method declares it does, asked once), cache
    lengths, measured density.

    Densities are recorded only for (global layer, step) pairs the method computed; every other
    pair of a global layer ran the backend's dense attention and counts as density 1. Sliding-window
    layers are outside the method's reach and outside the average.
    """

    def __init__(self, method):
        self.method = method
        self.computes_prefill = method.computes_prefill()
        self.computes_decode = method.computes_decode()
        self.compacts_kv = method.compacts_kv()
        self.touches_attention = self.computes_prefill or self.computes_decode or self.compacts_kv
        self.pager = method.page_selector()  # its page-selecting (Quest) part, or None
        self.shares_prompt_cache = type(method).shares_prompt_cache()
        self.prompt_len: int | None = None
        self.decode_steps = 0
        self.kv_lengths: dict[int, torch.Tensor] = {}  # layer -> kept tokens per kv head (host)
        # the same on the cache's device, and its longest head: what the batched decode reads per layer
        self.kv_lengths_device: dict[int, torch.Tensor] = {}
        self.kv_longest: dict[int, int] = {}
        self.prefill_density: dict[int, float] = {}
        self.kv_density: dict[int, float] = {}
        self.decode_density: dict[int, float] = defaultdict(float)  # summed over handled steps
        self.decode_handled: dict[int, int] = defaultdict(int)
        self.pages: dict[int, list[torch.Tensor]] = {}  # layer -> [page min, page max] per kv head

    def start_prefill(self, prompt_len: int) -> None:
        """A (re)prefill starts from a full cache and fresh measurements."""
        self.prompt_len = prompt_len
        self.decode_steps = 0
        for record in (
            self.kv_lengths,
            self.kv_lengths_device,
            self.kv_longest,
            self.prefill_density,
            self.kv_density,
            self.decode_density,
            self.decode_handled,
            self.pages,
        ):
            record.clear()

    def compacted(self, layer: int) -> bool:
        """Whether this layer's cache was compacted (its kv heads keep their own lengths)."""
        return self.kv_lengths.get(layer) is not None

    def record_decode(self, layer: int, density: float) -> None:
        """A decode step of ``layer`` the handler computed, reading ``density`` of the valid keys."""
        self.decode_density[layer] += density
        self.decode_handled[layer] += 1

    def summary(self, num_layers: int, sliding_layers: int = 0) -> dict[str, Any]:
        """Per-request statistics; densities are averaged over the ``num_layers`` global layers."""

        def layer_mean(values: dict[int, float]) -> float:
            if not num_layers:  # only sliding-window layers: the method had nothing to sparsify
                return 1.0
            return (sum(values.values()) + (num_layers - len(values))) / num_layers

        prefill = layer_mean(self.prefill_density) if self.prompt_len else None
        decode = None
        if self.decode_steps:
            per_layer = {
                layer: (total + self.decode_steps - self.decode_handled[layer]) / self.decode_steps
                for layer, total in self.decode_density.items()
            }
            decode = layer_mean(per_layer)
        kv = sum(self.kv_density.values()) / len(self.kv_density) if self.kv_density else None
        out = {
            "layers": num_layers,  # global layers: the ones the method applies to and is averaged over
            "sliding_layers": sliding_layers,  # sliding-window layers: stock attention, not counted
            "prompt_tokens": self.prompt_len,
            "decode_steps": self.decode_steps,
            "prefill_sparsity": None if prefill is None else 1.0 - prefill,
            "decode_sparsity": None if decode is None else 1.0 - decode,
            "kv_sparsity": None if kv is None else 1.0 - kv,
        }
        phase = self.method.phase
        if phase == "prefill":
            out["sparsity"] = out["prefill_sparsity"]
        elif phase in ("decode", "kv"):
            out["sparsity"] = out["decode_sparsity"]
        elif phase == "none":
            out["sparsity"] = out["prefill_sparsity"] or 0.0
        else:  # a prefill x decode combination: both phases count equally
            parts = [s for s in (out["prefill_sparsity"], out["decode_sparsity"]) if s is not None]
            out["sparsity"] = sum(parts) / len(parts) if parts else None
        return out
