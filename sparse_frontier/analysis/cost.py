"""Cost model of the paper (v3 Appendix B): prefill FLOPs and decode memory transfers.

Everything is computed from architecture numbers kept in the config (no checkpoint needed).
Symbols follow the paper: L length, d hidden size, h query heads, d_h head dim, n_kv kv heads,
N layers, d_mlp MLP size, |V| vocabulary, rho = 1 - sparsity (attention density), B batch size.

Prefill FLOPs = B (F_emb + F_attn + F_mlp + F_logits)
    F_emb    = 2 L d
    F_attn   = N (2 L d (2 d + 2 d_h n_kv) + rho h L^2 (4 d_h + 3))
    F_mlp    = N 2 L d_mlp (3 d + 1)
    F_logits = 2 L d |V|
Decode memory (elements moved per step) = M_weights + B M_kv
    M_weights = N (4 d^2 + 3 d d_mlp) + d |V| + d
    M_kv      = N 2 L d_h n_kv rho

Sliding-window layers (Gemma 3: 5 of every 6) see min(L, window) keys, and sparse methods apply to
the global layers only, so rho multiplies the global layers' attention and KV terms alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

#: Cost-model phases; a method's ``phase`` ("kv" = KV-cache compression) maps to the phase it saves.
PHASES = ("prefill", "decode")
METHOD_PHASE = {"prefill": "prefill", "decode": "decode", "kv": "decode"}


@dataclass(frozen=True)
class Architecture:
    """The numbers the cost model needs (config: ``models.<name>.architecture``)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp: int
    vocabulary: int
    params: float
    #: keys seen by a sliding-window layer; None = every layer is global
    sliding_window: int | None = None
    #: every ``global_every``-th layer is global, the others sliding-window (Gemma 3: 6)
    global_every: int = 1

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "sliding_window":
                if value is not None and value < 1:
                    raise ValueError(f"sliding_window must be a positive number of tokens or None, got {value}")
            elif value <= 0:
                raise ValueError(f"architecture {f.name} must be positive, got {value!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")

    @classmethod
    def from_config(cls, entry: Mapping[str, Any], name: str = "model") -> Architecture:
        if "architecture" not in entry:
            raise ValueError(f"model {name!r} has no 'architecture' block in the config: the cost model needs it")
        return cls(**entry["architecture"])

    @property
    def global_layers(self) -> int:
        """Layers attending to the whole context (the only ones sparse methods change).

        Every ``global_every``-th layer counting from 1 is global (Gemma 3: layers 6, 12, 18, ...),
        so a model has ``layers // global_every`` of them: 34 layers -> 5, 48 -> 8, 62 -> 10.
        """
        if self.sliding_window is None:
            return self.layers
        return self.layers // self.global_every if self.global_every > 1 else self.layers

    @property
    def local_layers(self) -> int:
        return self.layers - self.global_layers


def _check(length: int, density: float, batch: int) -> None:
    if length < 1:
        raise ValueError(f"length must be >= 1 token, got {length}")
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density (1 - sparsity) must lie in [0, 1], got {density}")
    if batch < 1:
        raise ValueError(f"batch size must be >= 1, got {batch}")


def prefill_flops(arch: Architecture, length: int, density: float = 1.0, batch: int = 1) -> dict[str, float]:
    """Prefill FLOPs by component (and ``total``) for ``batch`` prompts of ``length`` tokens."""
    _check(length, density, batch)
    L, d, N = float(length), arch.hidden, arch.layers
    projections = N * 2 * L * d * (2 * d + 2 * arch.head_dim * arch.kv_heads)
    per_pair = arch.heads * (4 * arch.head_dim + 3)
    core = arch.global_layers * density * per_pair * L * L
    if arch.local_layers:
        core += arch.local_layers * per_pair * L * min(L, arch.sliding_window)
    out = {
        "embedding": 2 * L * d,
        "attention_projections": projections,
        "attention_core": core,
        "mlp": N * 2 * L * arch.mlp * (3 * d + 1),
        "logits": 2 * L * d * arch.vocabulary,
    }
    out = {k: batch * v for k, v in out.items()}
    out["attention"] = out["attention_projections"] + out["attention_core"]
    out["total"] = out["embedding"] + out["attention"] + out["mlp"] + out["logits"]
    return out


def decode_flops(arch: Architecture, length: int, density: float = 1.0, batch: int = 1) -> dict[str, float]:
    """FLOPs of one decode step (one new token per sequence) with ``length`` tokens in context.

    The prefill formula for a single query attending to ``length`` keys (v1 counted decode in FLOPs).
    """
    _check(length, density, batch)
    L, d, N = float(length), arch.hidden, arch.layers
    per_key = arch.heads * (4 * arch.head_dim + 3)
    core = arch.global_layers * density * per_key * L
    if arch.local_layers:
        core += arch.local_layers * per_key * min(L, arch.sliding_window)
    out = {
        "embedding": 2 * d,
        "attention_projections": N * 2 * d * (2 * d + 2 * arch.head_dim * arch.kv_heads),
        "attention_core": core,
        "mlp": N * 2 * arch.mlp * (3 * d + 1),
        "logits": 2 * d * arch.vocabulary,
    }
    out = {k: batch * v for k, v in out.items()}
    out["attention"] = out["attention_projections"] + out["attention_core"]
    out["total"] = out["embedding"] + out["attention"] + out["mlp"] + out["logits"]
    return out


def decode_memory(arch: Architecture, length: int, density: float = 1.0, batch: int = 1) -> dict[str, float]:
    """Elements moved from memory in one decode step: weights once, KV cache once per sequence."""
    _check(length, density, batch)
    d = arch.hidden
    weights = arch.layers * (4 * d * d + 3 * d * arch.mlp) + d * arch.vocabulary + d
    per_layer_kv = 2 * arch.head_dim * arch.kv_heads
    kv = arch.global_layers * per_layer_kv * length * density
    if arch.local_layers:
        kv += arch.local_layers * per_layer_kv * min(length, arch.sliding_window)
    return {"weights": float(weights), "kv": float(batch * kv), "total": float(weights + batch * kv)}


def vertical_slash_index_flops(
    arch: Architecture, length: int, queries: int, verticals: int, slashes: int, batch: int = 1
) -> float:
    """Vertical-Slash pattern estimation: B N h [2 d_h L q + 5 L q + 2 L log2 L + (L/64)(k_v + k_s)].

    The spec writes the first term as 2 d L q; inside the per-head factor h the score of q queries
    against L keys costs 2 d_h L q per head (d = h d_h would count the heads twice), so we use d_h.
    """
    _check(length, 1.0, batch)
    L, q = float(length), float(queries)
    per_head = 2 * arch.head_dim * L * q + 5 * L * q + 2 * L * math.log2(L) + (L / 64) * (verticals + slashes)
    return batch * arch.global_layers * arch.heads * per_head


def quest_page_summary_elements(arch: Architecture, length: int, page_size: int = 16, batch: int = 1) -> float:
    """Quest's per-step loads of page minima and maxima: B N n_kv 2 d_h L / p.

    The spec writes d; the summaries hold one min and one max vector of the kv head's d_h dims per
    page (with d they would outweigh the whole KV cache), so we use d_h.
    """
    _check(length, 1.0, batch)
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    return batch * arch.global_layers * arch.kv_heads * 2 * arch.head_dim * length / page_size


def quest_page_score_flops(arch: Architecture, length: int, page_size: int = 16, batch: int = 1) -> float:
    """Quest's per-step page scoring: each query head scores every page against its min and max
    vectors (2 products of d_h, a max and a sum): B N h (L / p) (4 d_h + 1)."""
    _check(length, 1.0, batch)
    return batch * arch.global_layers * arch.heads * (length / page_size) * (4 * arch.head_dim + 1)


#: the index each method builds, priced as the paper's iso plots do (v3 Appendix B): Vertical-Slash
#: (and FlexPrefill, the same estimation) in prefill FLOPs, Quest's page summaries in decode.
INDEXED_METHODS = ("vertical_slash", "flexprefill", "quest")


def indexing_cost(
    arch: Architecture,
    method: str,
    args: Mapping[str, Any],
    phase: str,
    length: int,
    density: float,
    batch: int = 1,
    metric: str = "flops",
) -> float:
    """The cost of a method's index in ``phase`` (0 for methods that build none in that phase).

    Vertical-Slash / FlexPrefill: the estimation with ``approximation_size`` queries; the
    ``(L/64)(k_v + k_s)`` selection term takes ``k_v + k_s = density L`` (the kept pairs of a
    vertical-slash pattern grow as (k_v + k_s) L; the term is at most ~2% of the estimation).
    Quest: page summaries read per decode step (cost) or the page scoring FLOPs (flops).
    A combination (``a+b``) adds its components' index costs.
    """
    total = 0.0
    for part in method.split("+"):
        if part in ("vertical_slash", "flexprefill") and phase == "prefill":
            default = 256 if part == "vertical_slash" else 512
            queries = int(float(args.get("approximation_size", default)))
            kept = max(density * length, 1.0)
            total += vertical_slash_index_flops(arch, length, min(queries, length), kept / 2, kept / 2, batch)
        elif part == "quest" and phase == "decode":
            page = int(float(args.get("page_size", 16)))
            if metric == "cost":
                total += quest_page_summary_elements(arch, length, page, batch)
            else:
                total += quest_page_score_flops(arch, length, page, batch)
    return total


def phase_cost(
    arch: Architecture,
    phase: str,
    length: int,
    density: float,
    batch: int = 1,
    metric: str = "flops",
    method: str = "dense",
    args: Mapping[str, Any] | None = None,
) -> float:
    """One number per run for iso-cost plots, the method's index included (:func:`indexing_cost`).

    ``metric="flops"`` (isoFLOPS, v1): prefill FLOPs of the prompt, or FLOPs of one decode step.
    ``metric="cost"`` (isoCost, v3): prefill FLOPs, or elements moved by one decode step.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    if metric not in ("flops", "cost"):
        raise ValueError(f"unknown cost metric {metric!r}; valid: flops, cost")
    if phase == "prefill":
        base = prefill_flops(arch, length, density, batch)["total"]
    elif metric == "flops":
        base = decode_flops(arch, length, density, batch)["total"]
    else:
        base = decode_memory(arch, length, density, batch)["total"]
    return base + indexing_cost(arch, method, args or {}, phase, length, density, batch, metric)


def attention_share(arch: Architecture, length: int, density: float = 1.0) -> float:
    """Share of prefill FLOPs spent in attention (projections and the quadratic core)."""
    f = prefill_flops(arch, length, density)
    return f["attention"] / f["total"]


def kv_share(arch: Architecture, length: int, batch: int, density: float = 1.0) -> float:
    """Share of one decode step's memory traffic that is KV cache."""
    m = decode_memory(arch, length, density, batch)
    return m["kv"] / m["total"]


def amdahl(share: float, compression: float) -> float:
    """Speedup when a ``share`` of the work runs ``compression`` times faster (the paper's Figs 12-13:
    its 5x speedups 1.48 / 2.20 / 2.80 at 16k / 64k / 128k are this with the attention share of
    prefill FLOPs, projections included, averaged over the Qwen sizes)."""
    if not 0.0 <= share <= 1.0 or compression < 1.0:
        raise ValueError(f"share must lie in [0, 1] and compression be >= 1, got {share}, {compression}")
    return 1.0 / ((1.0 - share) + share / compression)


def prefill_speedup(arch: Architecture, length: int, compression: float) -> float:
    """Dense over sparse prefill FLOPs when attention keeps 1/compression of the pairs (the model's own
    count: only the quadratic core shrinks; the paper's figure applies :func:`amdahl` to all of attention)."""
    return prefill_flops(arch, length)["total"] / prefill_flops(arch, length, 1.0 / compression)["total"]


def decode_speedup(arch: Architecture, length: int, compression: float, batch: int) -> float:
    """Dense over sparse decode memory traffic when the KV cache read is 1/compression."""
    return (
        decode_memory(arch, length, 1.0, batch)["total"]
        / decode_memory(arch, length, 1.0 / compression, batch)["total"]
    )
