"""Vertical-Slash (MInference) and FlexPrefill: sparse prefill over verticals (columns) and slashes (diagonals).

Shared pipeline, all on the device (no CPU round trips):

1. :func:`estimate_scores`: the last ``approximation_size`` queries attend to all keys (causal
   softmax, float32); column sums = vertical scores ``[Hq, T]``, diagonal sums = slash scores
   ``[Hq, T]`` indexed by offset (query position - key position).
2. Selection: ``n_vert``/``n_slash`` per head (uniform for Vertical-Slash, cumulative-mass for
   FlexPrefill); the first ``sink_tokens`` columns and the first ``local_window`` diagonals always.
3. :func:`build_index`: a kept slash of offset o covers, in every query block of 64 rows, the key
   blocks on block diagonals ``o // 64`` and (unless ``o % 64 == 0``) ``o // 64 + 1``, so the
   kernel computes whole aligned 64x64 blocks along kept block diagonals (``cover [Hq, NB]``), plus
   64-row column strips for kept verticals not already inside a kept block. Block diagonal 0 (the
   diagonal block) is always kept, so every query has at least itself.
4. The kernel (:mod:`sparse_frontier.kernels.sparse_prefill`) on CUDA, the chunked torch path on CPU.

Density (what is counted as computed) = kept causal query-key pairs / (T (T + 1) / 2) per query
head, exactly the pairs the kernel evaluates (whole blocks cut by causality, plus column strips);
:func:`index_density` computes it in closed form without building the mask.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import ClassVar

import torch

from sparse_frontier.attention import calibration
from sparse_frontier.attention.base import AttentionMethod, AttentionResult
from sparse_frontier.attention.reference import masked_attention_rows, vertical_slash_mask
from sparse_frontier.attention.registry import register_method
from sparse_frontier.kernels import use_triton

log = logging.getLogger(__name__)

BLOCK = 64  # MInference's tile: 64x64 blocks, 64-wide column strips


def estimate_scores(query, key, n: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical scores ``[Hq, T]`` (by key) and slash scores ``[Hq, T]`` (by offset) from the last ``n`` queries.

    Each estimation row is a causal softmax, so both score vectors of a head sum to ``n``. On CUDA
    the fused Triton kernels (:mod:`sparse_frontier.kernels.estimation`: no logits or probabilities
    in memory but one by-offset buffer), else :func:`estimate_scores_torch`, their reference.
    """
    if use_triton(query):
        from sparse_frontier.kernels.estimation import estimate_scores_triton

        return estimate_scores_triton(query, key, n, scale)
    return estimate_scores_torch(query, key, n, scale)


def estimate_scores_torch(query, key, n: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`estimate_scores` in float32 torch (the kernels' reference). bf16/fp16 inputs are exact
    in TF32, so the GPU matmul may use it without changing a product. Causality only touches the
    last ``n`` keys, so only that slice is masked."""
    t, hq, d = query.shape
    hkv = key.shape[1]
    g = hq // hkv
    n = min(n, t)
    qe = query[-n:].reshape(n, hkv, g, d)
    future = torch.arange(n, device=query.device)[None, :] > torch.arange(n, device=query.device)[:, None]
    vert = torch.empty(hq, t, device=query.device)
    slash = torch.empty(hq, t, device=query.device)
    exact_tf32 = query.is_cuda and query.dtype in (torch.bfloat16, torch.float16) and key.dtype == query.dtype
    with _tf32(exact_tf32):
        for h in range(hkv):  # one kv group at a time bounds memory to g * n * T floats
            q_h = qe[:, h].transpose(0, 1).float()  # [g, n, d]
            k_h = key[:, h].float().T  # [d, T]
            logits = torch.matmul(q_h, k_h)
            logits.mul_(scale)
            logits[..., t - n :].masked_fill_(future, float("-inf"))
            probs = torch.softmax(logits, -1)
            del logits
            vert[h * g : (h + 1) * g], slash[h * g : (h + 1) * g] = scores_from_probs(probs, t)
    return vert, slash


@contextlib.contextmanager
def _tf32(enabled: bool):
    if not enabled:
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def scores_from_probs(probs: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column sums and diagonal sums (``[H, T]``, by offset) of probabilities ``[H, n, T]`` of the last n queries.

    Row i is query ``T - n + i``; offset o sums ``probs[:, i, T - n + i - o]`` over the rows where
    that key exists. Offsets 0..T-n read every row: a strided view (row stride T + 1) turns each
    diagonal into a column, no copy. The n - 1 larger offsets reach only the first keys: gathered.
    """
    h, n, _ = probs.shape
    probs = probs.contiguous()
    main = probs.as_strided((h, n, t - n + 1), (n * t, t + 1, 1), probs.storage_offset()).sum(1)  # x -> offset T-n-x
    slash = torch.zeros(h, t, dtype=probs.dtype, device=probs.device)
    slash[:, : t - n + 1] = main.flip(-1)
    if n > 1:
        i = torch.arange(n, device=probs.device)[None, :]
        j = torch.arange(1, n, device=probs.device)[:, None]  # offset T - n + j
        col = i - j
        head = probs[:, :, : n - 1]
        picked = head[:, i.expand_as(col), col.clamp(min=0)] * (col >= 0)
        slash[:, t - n + 1 :] = picked.sum(-1)
    return probs.sum(1), slash


def mass_counts(scores: torch.Tensor, alpha: float, min_budget: int) -> torch.Tensor:
    """FlexPrefill budget: fewest top entries whose share of the head's total mass reaches ``alpha``."""
    t = scores.shape[-1]
    share = scores / scores.sum(-1, keepdim=True).clamp(min=1e-30)
    cum = share.sort(-1, descending=True).values.cumsum(-1)
    count = (cum < alpha - 1e-6).sum(-1) + 1
    return count.clamp(min=min(min_budget, t), max=t)


def select(vert, slash, n_vert, n_slash, sink_tokens: int, local_window: int):
    """Kept columns ``[Hq, C]`` (sorted, padded with T) and covered block diagonals ``[Hq, NB]``.

    ``n_vert`` / ``n_slash`` are ints or ``[Hq]`` tensors (counts include the forced sinks/local).
    """
    hq, t = vert.shape
    nb = -(-t // BLOCK)
    dev = vert.device
    v = vert.clone()
    v[:, :sink_tokens] = float("inf")
    s = slash.clone()
    s[:, :local_window] = float("inf")
    rank = torch.arange(t, device=dev)
    if isinstance(n_vert, int):
        width = min(max(n_vert, 1), t)
        cols = v.topk(width, -1).indices.sort(-1).values
    else:
        order = v.argsort(-1, descending=True)
        cols = torch.where(rank < n_vert[:, None], order, t).sort(-1).values
    if isinstance(n_slash, int):
        offs = s.topk(min(max(n_slash, 1), t), -1).indices
    else:
        order = s.argsort(-1, descending=True)
        offs = torch.where(rank < n_slash[:, None], order, t)  # t = none
    cover = torch.zeros(hq, nb + 2, dtype=torch.bool, device=dev)
    a = torch.where(offs < t, offs // BLOCK, nb + 1)
    cover.scatter_(1, a, True)
    cover.scatter_(1, torch.where((offs < t) & (offs % BLOCK != 0), a + 1, nb + 1), True)
    cover = cover[:, :nb].clone()
    cover[:, 0] = True
    return cols, cover


def index_density(cover: torch.Tensor, cols: torch.Tensor, t: int) -> torch.Tensor:
    """Density ``[Hq]`` of a (cover, cols) index, in closed form (equals the reference mask's count)."""
    nb = cover.shape[1]
    dev = cover.device
    last = t - BLOCK * (nb - 1)  # rows of the last query block
    d = torch.arange(nb, device=dev)
    pairs_d = (BLOCK * (t - BLOCK * d)).double()  # block diagonal d >= 1: full blocks
    pairs_d[0] = (nb - 1) * BLOCK * (BLOCK + 1) / 2 + last * (last + 1) / 2
    block_pairs = (cover.double() * pairs_d).sum(-1)
    notc = ~cover
    notc[:, 0] = False
    prefix = notc.long().cumsum(-1)  # prefix[x] = uncovered diagonals in 1..x
    valid = cols < t
    x = (nb - 1 - cols.clamp(max=t - 1) // BLOCK).long()
    col_pairs = BLOCK * prefix.gather(1, x) - (BLOCK - last) * (notc.gather(1, x) & (x >= 1))
    col_pairs = (col_pairs * valid).sum(-1).double()
    return ((block_pairs + col_pairs) / (t * (t + 1) / 2)).float()


def run_index(query, key, value, scale, cols, cover) -> torch.Tensor:
    """Attention over a (cover, cols) index: Triton on CUDA, chunked torch on CPU."""
    t = query.shape[0]
    if use_triton(query):
        from sparse_frontier.kernels.sparse_prefill import sparse_prefill

        nb = cover.shape[1]
        idx = torch.arange(nb, device=query.device)
        diag = torch.where(cover, idx, nb).sort(-1).values
        row_last = (idx * BLOCK + BLOCK - 1).clamp(max=t - 1)
        col_count = torch.searchsorted(cols.contiguous(), row_last.expand(cols.shape[0], nb).contiguous(), right=True)
        return sparse_prefill(
            query,
            key,
            value,
            scale,
            BLOCK,
            diag=diag,
            cover=cover,
            cols=cols,
            col_count=col_count,
        )
    return masked_attention_rows(
        query, key, value, scale, lambda r0, r1: vertical_slash_mask(t, cover, cols, BLOCK, rows=(r0, r1))
    )


@dataclass
class _VerticalSlashBase(AttentionMethod):
    phase = "prefill"
    #: the calibration table's parameter names, in the order ``select_raw`` takes them
    table_params: ClassVar[tuple[str, ...]] = ()

    def _check_common(self):
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "a target sparsity in [0, 1)")
        self.check(self.approximation_size >= 1, "approximation_size", "an integer >= 1")
        self.check(self.sink_tokens >= 0, "sink_tokens", "an integer >= 0")
        self.check(self.local_window >= 1, "local_window", "an integer >= 1 (the diagonal is always kept)")

    def index(self, query, key, scale: float):
        """``(cols, cover)`` for these inputs (what the kernel will compute)."""
        vert, slash = estimate_scores(query, key, self.approximation_size, scale)
        return self.select_from_scores(vert, slash, layer_key=None)

    def build_mask(self, query, key, value, *, scale: float) -> torch.Tensor:
        cols, cover = self.index(query, key, scale)
        return vertical_slash_mask(query.shape[0], cover, cols, BLOCK)

    def prefill(self, query, key, value, *, layer_index: int, scale: float) -> AttentionResult | None:
        cols, cover = self.index(query, key, scale)
        out = run_index(query, key, value, scale, cols, cover)
        return AttentionResult(out, index_density(cover, cols, query.shape[0]))

    # -- calibration: target sparsity -> the subclass's table parameters (``table_params``, in the
    # order ``select_raw`` takes them), looked up per (model, length), else fitted on the call
    def mean_density(self, samples, *params) -> float:
        """Mean over ``(vert, slash)`` score pairs of the density of the index these parameters select."""
        total = 0.0
        for vert, slash in samples:
            cols, cover = self.select_raw(vert, slash, *params)
            total += index_density(cover, cols, vert.shape[1]).mean().item()
        return total / len(samples)

    def tabulated(self, t: int, vert=None, slash=None) -> tuple:
        """The table's parameters for this target at length ``t``, else fitted on these scores."""
        found = calibration.lookup(self.model, self.name, t, self.sparsity, self.calibration_key())
        if found is not None:
            return tuple(found[name] for name in self.table_params)
        return calibration.online(
            lambda: self.fit(lambda *params: self.mean_density([(vert, slash)], *params), 1.0 - self.sparsity, t),
            what=f"{self.name} for model {self.model!r} at T={t}",
        )

    def calibrate(self, samples, length: int, sparsities) -> list[dict]:
        """Calibration points (see :func:`sparse_frontier.attention.calibration.calibrate`): per target,
        :meth:`fit` on the mean density over ``samples`` (``(vert, slash)`` pairs at ``length``)."""
        samples = list(samples)
        density = lambda *params: self.mean_density(samples, *params)  # noqa: E731
        return calibration.fit_points(
            sparsities, lambda target: self.fit(density, target, length), density, self.table_params
        )


@register_method
@dataclass
class VerticalSlash(_VerticalSlashBase):
    """Top ``vertical_size`` columns and ``slash_size`` diagonals per head (uniform budget).

    Knob: ``sparsity`` (target) -> ``vertical_size = slash_size`` from the calibration table for
    (model, length), else calibrated on the call itself; explicit sizes (> 0) win over ``sparsity``.
    Sparsity 0 with no sizes keeps everything (dense).
    """

    name = "vertical_slash"
    table_params = ("vertical_size", "slash_size")
    display_name = "Vertical-Slash"
    unit = "verticals and slashes"
    budget_allocation = "uniform"
    kv_cache = "untouched"
    sparsity: float = 0.0
    vertical_size: int = 0
    slash_size: int = 0
    approximation_size: int = 256
    sink_tokens: int = 4
    local_window: int = 64

    def __post_init__(self):
        self._check_common()
        self.check(self.vertical_size >= 0, "vertical_size", "an integer >= 0 (0: from sparsity)")
        self.check(self.slash_size >= 0, "slash_size", "an integer >= 0 (0: from sparsity)")
        self.check(
            (self.vertical_size > 0) == (self.slash_size > 0),
            "slash_size",
            f"given together with vertical_size (vertical_size={self.vertical_size})",
        )
        self.check(
            self.vertical_size == 0 or self.sparsity == 0.0,
            "sparsity",
            "0 when vertical_size/slash_size are given (give a target or the sizes, not both)",
        )

    def sizes(self, t: int, vert=None, slash=None) -> tuple[int, int]:
        if self.vertical_size:
            return self.vertical_size, self.slash_size
        if self.sparsity == 0.0:
            return t, t
        return self.tabulated(t, vert, slash)

    def fit(self, density, target: float, t: int) -> tuple[int, int]:
        """Equal sizes whose ``density(n_vert, n_slash)`` is closest to ``target``."""
        n = calibration.search_int(lambda n: density(n, n), target, 1, t)
        return n, n

    def calibration_key(self) -> dict:
        return {
            "approximation_size": self.approximation_size,
            "sink_tokens": self.sink_tokens,
            "local_window": self.local_window,
        }

    def select_raw(self, vert, slash, n_vert, n_slash):
        return select(vert, slash, n_vert, n_slash, self.sink_tokens, self.local_window)

    def select_from_scores(self, vert, slash, layer_key=None):
        nv, ns = self.sizes(vert.shape[1], vert, slash)
        return self.select_raw(vert, slash, nv, ns)


@register_method
@dataclass
class FlexPrefill(_VerticalSlashBase):
    """Per-head budget: columns (and diagonals) in descending score until their mass reaches ``alpha``.

    Never fewer than ``min_budget`` of each. The paper's setting: query-aware switch off (tau = 0),
    so every head uses the vertical-slash pattern; that is the only mode implemented. Knob:
    ``sparsity`` -> (``alpha``, ``min_budget``) from the calibration table, else calibrated on the
    call (alpha searched; when alpha = 0 is still too dense, min_budget is lowered, as the paper's
    table does). ``alpha = -1`` / ``min_budget = 0`` mean "from sparsity"; explicit values win.
    Sinks and the local window are kept as in Vertical-Slash.
    """

    name = "flexprefill"
    table_params = ("alpha", "min_budget")
    display_name = "FlexPrefill"
    unit = "verticals and slashes"
    budget_allocation = "threshold (cumulative mass)"
    kv_cache = "untouched"
    sparsity: float = 0.0
    alpha: float = -1.0
    min_budget: int = 0
    approximation_size: int = 512
    sink_tokens: int = 4
    local_window: int = 64

    def __post_init__(self):
        self._check_common()
        self.check(self.alpha == -1.0 or 0.0 <= self.alpha <= 1.0, "alpha", "in [0, 1], or -1 (from sparsity)")
        self.check(self.min_budget >= 0, "min_budget", "an integer >= 0 (0: from sparsity, else 512)")
        self.check(
            self.alpha == -1.0 or self.sparsity == 0.0,
            "sparsity",
            "0 when alpha is given (give a target or alpha, not both)",
        )

    def calibration_key(self) -> dict:
        return {"approximation_size": self.approximation_size, "min_budget": self.min_budget}

    def select_raw(self, vert, slash, alpha: float, min_budget: int):
        return select(
            vert,
            slash,
            mass_counts(vert, alpha, min_budget),
            mass_counts(slash, alpha, min_budget),
            self.sink_tokens,
            self.local_window,
        )

    def settings(self, t: int, vert=None, slash=None) -> tuple[float, int]:
        if self.alpha >= 0.0:
            return self.alpha, self.min_budget or 512
        if self.sparsity == 0.0:
            return 1.0, t
        return self.tabulated(t, vert, slash)

    def fit(self, density, target: float, t: int) -> tuple[float, int]:
        """``alpha`` whose ``density(alpha, min_budget)`` meets ``target`` at this ``min_budget`` (512
        when 0); when alpha 0 is still too dense at 512, the smaller min_budget that meets it."""
        if self.min_budget:
            return calibration.search_float(lambda a: density(a, self.min_budget), target), self.min_budget
        if density(0.0, 512) <= target:
            return calibration.search_float(lambda a: density(a, 512), target), 512
        return 0.0, calibration.search_int(lambda n: density(0.0, n), target, 1, 512)

    def select_from_scores(self, vert, slash, layer_key=None):
        alpha, mb = self.settings(vert.shape[1], vert, slash)
        return self.select_raw(vert, slash, alpha, mb)
