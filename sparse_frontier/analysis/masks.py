"""The query-key pairs each sparse method keeps, computed by the method's own code on a small example
(the pattern-visualisation figure, v3 Fig 1).

Nothing here re-implements a method: every mask is what the registered method selects.

- Prefill (Vertical-Slash, FlexPrefill, Block-Sparse): the method's ``build_mask`` (the exact pairs
  its kernel evaluates, :mod:`sparse_frontier.attention.reference`), queries x keys.
- Quest: at each decode step ``Quest.select`` over the cache so far (prompt + tokens decoded before
  it + the new token), turned into tokens by :func:`~sparse_frontier.attention.reference.page_keep_mask`;
  decode steps x keys.
- SnapKV / Ada-SnapKV: ``compress_kv`` once after prefill
  (:func:`~sparse_frontier.attention.reference.kv_selection_mask`); every decode step reads the kept
  prompt tokens plus the tokens decoded since (decode is dense over the compressed cache).

The head: a real model's (``pattern_masks(qkv=...)``: one query head and its kv head captured
through vLLM, :mod:`sparse_frontier.pattern_capture`; its last ``steps`` tokens are the decode steps,
each reading the cache before it), or the toy example. The example (:func:`toy_qkv`): one query head and one kv head, head dim 128, with the structure real
heads have: attention sinks (the first keys), heavy periodic keys (verticals), a local diagonal
(rotary positions) and one distant diagonal (each query matches the key :data:`SLASH_OFFSET` tokens
back: a slash). The decode steps continue the same sequence.

**Size.** Default 1024 prompt tokens and 64 decode steps (prefill masks 1024 x 1024, decode masks
64 x 1088). Smaller examples cannot show the prefill methods at high sparsity: Vertical-Slash and
FlexPrefill compute whole 64 x 64 tiles (their kernel's block, not a parameter), and the diagonal
tiles alone are 65 / (T + 1) of the causal pairs (25% at T = 256, 6% at 1024), so a 0.9 target is out
of reach below about 650 tokens.

**Parameters passed explicitly at this size** (everything else is the method's default; each
:class:`PatternMask` records the parameters it was built with, ``params``):

- Vertical-Slash: ``local_window=1`` (the default 64 diagonals cover two block diagonals, 18% of the
  pairs at T = 1024, more than a 0.9 target allows) and explicit ``vertical_size`` / ``slash_size``:
  its ``sparsity`` knob needs a calibration table for (model, length), so the pair of sizes whose
  measured density (the method's :func:`~sparse_frontier.attention.vertical_slash.index_density`) is
  closest to the target is searched here on the example's own scores (sizes may differ: equal sizes
  jump past the target when one more slash adds a whole block diagonal).
- FlexPrefill: ``local_window=1`` as above, and explicit (``alpha``, ``min_budget``) found as its
  on-call calibration does (alpha searched at a fixed ``min_budget``; when alpha 0 is still too dense,
  ``min_budget`` lowered), with the base ``min_budget`` scaled from the paper's 512 at 16k to the
  example's length (32 at 1024). On the default example alpha 0 is too dense at 0.5-0.9 already (the
  sinks' slash mass is spread over hundreds of offsets), so ``min_budget`` sets the budget, as the
  paper's table does at high compression; its steps are coarse (one more slash may add a whole block
  diagonal), so the measured sparsity lands within about 0.06 of the target.
- Block-Sparse and Quest: the ``sparsity`` knob itself (formula; chunk 16, page 16).
- SnapKV / Ada-SnapKV: the ``sparsity`` knob and ``local_window=32`` (the default 128 plus the 4
  prefix tokens is a floor of 13% of 1024 tokens, above a 0.9 target's 10%). With one kv head
  Ada-SnapKV's sharing across heads has nothing to share: it differs from SnapKV by its max (not sum)
  over the window only.

**Measured sparsity** is counted as each method counts it: prefill 1 - kept causal pairs / (T (T+1) / 2)
(equals the density its ``prefill`` returns); Quest 1 - mean over steps of tokens read / valid tokens
(its ``decode`` density: the current page included); SnapKV / Ada-SnapKV 1 - kept / T (the KV density
after eviction, as the handler records it; the decoded tokens the mask rows also show are not counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

PREFILL = ("vertical_slash", "flexprefill", "block_sparse")
DECODE = ("snapkv", "ada_snapkv", "quest")
HEAD_DIM = 128
#: the toy example's structure: number of sink keys, period of the heavy keys, offset of the distant diagonal
SINKS, PERIOD, SLASH_OFFSET = 4, 97, 300


@dataclass
class PatternMask:
    method: str
    #: "prefill" or "decode" (KV compression is the paper's decode phase)
    phase: str
    target_sparsity: float
    measured_sparsity: float
    #: bool, queries x keys (prefill, causal) or decode steps x keys (decode: prompt + decoded tokens)
    mask: np.ndarray
    #: the parameters the method was built with (``get_method_class(method).from_params(params)``)
    params: dict = field(default_factory=dict)


def _rope(x: torch.Tensor, positions: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive dimension pairs of ``x [N, 2F]`` by ``position * freq``."""
    angle = positions[:, None].float() * freqs[None, :]
    cos, sin = angle.cos(), angle.sin()
    a, b = x[:, 0::2], x[:, 1::2]
    out = torch.empty_like(x)
    out[:, 0::2], out[:, 1::2] = a * cos - b * sin, a * sin + b * cos
    return out


def toy_qkv(n: int, seed: int = 0, dim: int = HEAD_DIM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values ``[n, 1, dim]`` (one head) whose attention has visible structure.

    Logit contributions at scale ``dim ** -0.5`` (the scale the methods are called with): sinks
    (the first :data:`SINKS` keys) +8; heavy keys every :data:`PERIOD` tokens +5 (verticals); a
    local diagonal from rotary positions (half the dimensions, 32 frequencies from 1 to 1/20 radian
    per token: +5 at distance 0, half of it by distance 4, within +-1.7 beyond 64); query i matching
    key i - :data:`SLASH_OFFSET` by content (+6, a distant slash); content cross-talk (std about 0.6)
    and query noise (std 0.3) on top. Deterministic in ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    scale = dim**-0.5
    pos = torch.arange(n)
    q = torch.zeros(n, dim)
    k = torch.zeros(n, dim)

    def amp(logit: float) -> float:  # q_d = k_d = amp gives q.k * scale = logit
        return math.sqrt(logit / scale)

    q[:, 0], k[:SINKS, 0] = amp(8.0), amp(8.0)
    q[:, 1], k[pos % PERIOD == PERIOD // 2, 1] = amp(5.0), amp(5.0)
    nrot = dim // 2
    freqs = 0.05 ** (torch.arange(nrot // 2).float() / (nrot // 2 - 1))
    r = torch.full((n, nrot), amp(5.0) / math.sqrt(nrot))
    rot = slice(2, 2 + nrot)
    q[:, rot], k[:, rot] = _rope(r, pos, freqs), _rope(r, pos, freqs)
    own = slice(2 + nrot, dim)  # per-token content; query i carries key i - SLASH_OFFSET's
    c = torch.randn(n, dim - 2 - nrot, generator=g)
    c = c / c.norm(dim=1, keepdim=True) * amp(6.0)
    k[:, own] = c
    back = pos - SLASH_OFFSET
    q[back >= 0, own] = c[back[back >= 0]]
    norm_k = k.norm(dim=1).mean()
    q += torch.randn(n, dim, generator=g) * 0.3 / (scale * norm_k)  # q.k * scale noise, std about 0.3
    v = torch.randn(n, dim, generator=g)
    return q[:, None], k[:, None], v[:, None]


SCALE = HEAD_DIM**-0.5
#: FlexPrefill's min_budget at the paper's shortest length (16k); scaled to the example's length
PAPER_MIN_BUDGET, PAPER_LENGTH = 512, 16384
VS_LOCAL_WINDOW = 1
SNAPKV_LOCAL_WINDOW = 32


def _method(name: str, params: dict):
    from sparse_frontier.attention import get_method_class

    return get_method_class(name).from_params(params)


def _vs_density(method, vert, slash, a, b) -> float:
    from sparse_frontier.attention.vertical_slash import index_density

    cols, cover = method.select_raw(vert, slash, a, b)
    return index_density(cover, cols, vert.shape[1]).mean().item()


def vertical_slash_params(q, k, target_density: float, scale: float = SCALE) -> dict:
    """Explicit ``vertical_size`` / ``slash_size`` whose measured density on (q, k) is closest to the target.

    The density depends on the slashes only through the block diagonals they cover, so for each
    distinct cover (the fewest slashes giving it) the number of verticals is searched (density grows
    with it); the closest pair wins, ties going to the most nearly equal sizes (the paper's
    convention is equal sizes).
    """
    from sparse_frontier.attention.calibration import search_int
    from sparse_frontier.attention.vertical_slash import estimate_scores

    t = q.shape[0]
    method = _method("vertical_slash", {"vertical_size": 1, "slash_size": 1, "local_window": VS_LOCAL_WINDOW})
    vert, slash = estimate_scores(q, k, method.approximation_size, scale)
    covers = {}
    for ns in range(1, t + 1):
        covers.setdefault(tuple(method.select_raw(vert, slash, 1, ns)[1][0].tolist()), ns)
    best = None
    for ns in covers.values():
        nv = search_int(lambda n: _vs_density(method, vert, slash, n, ns), target_density, 1, t)
        key = (round(abs(_vs_density(method, vert, slash, nv, ns) - target_density), 9), abs(nv - ns), nv + ns)
        if best is None or key < best[0]:
            best = (key, nv, ns)
    return {"vertical_size": best[1], "slash_size": best[2], "local_window": VS_LOCAL_WINDOW}


def flexprefill_params(q, k, target_density: float, scale: float = SCALE) -> dict:
    """Explicit (``alpha``, ``min_budget``) as FlexPrefill's own calibration finds them
    (:meth:`~sparse_frontier.attention.vertical_slash.FlexPrefill.fit`), with the base ``min_budget`` scaled
    to the example's length: alpha searched at that budget, or alpha 0 and a lower budget when alpha
    0 is still too dense."""
    from sparse_frontier.attention.calibration import search_float, search_int
    from sparse_frontier.attention.vertical_slash import estimate_scores

    t = q.shape[0]
    base = max(1, round(PAPER_MIN_BUDGET * t / PAPER_LENGTH))
    method = _method("flexprefill", {"alpha": 0.0, "min_budget": base, "local_window": VS_LOCAL_WINDOW})
    vert, slash = estimate_scores(q, k, method.approximation_size, scale)
    if _vs_density(method, vert, slash, 0.0, base) <= target_density:
        alpha, budget = search_float(lambda a: _vs_density(method, vert, slash, a, base), target_density), base
    else:
        alpha, budget = 0.0, search_int(lambda n: _vs_density(method, vert, slash, 0.0, n), target_density, 1, base)
    return {"alpha": alpha, "min_budget": budget, "local_window": VS_LOCAL_WINDOW}


def prefill_pattern(name: str, params: dict, q, k, v, scale: float = SCALE) -> tuple[np.ndarray, float]:
    """The method's own ``build_mask`` on the example (one head): mask ``[T, T]`` and its sparsity."""
    t = q.shape[0]
    mask = _method(name, params).build_mask(q, k, v, scale=scale)[0]
    return mask.numpy(), 1.0 - mask.sum().item() / (t * (t + 1) / 2)


def quest_pattern(params: dict, q, k, tokens: int, steps: int) -> tuple[np.ndarray, float]:
    """Quest's own page selection (``Quest.select``) at each decode step over the cache so far.

    Step s's query is token ``tokens + s``; the cache holds ``S = tokens + s + 1`` tokens (the new one
    included, as vLLM writes it before attention). Returns steps x (tokens + steps) and the sparsity
    Quest's decode reports (tokens of the selected pages, the current one included, / S).
    """
    from sparse_frontier.attention.reference import page_keep_mask

    quest = _method("quest", params)
    mask = np.zeros((steps, tokens + steps), dtype=bool)
    density = []
    for step in range(steps):
        s = tokens + step + 1
        pages = quest.select(q[s - 1][None], k[:s].transpose(0, 1)[None], torch.tensor([[s]]))[0]
        keep = page_keep_mask(pages, s, quest.page_size, q.shape[1] // k.shape[1])[0]
        mask[step, :s] = keep.numpy()
        density.append(keep.sum().item() / s)
    return mask, 1.0 - float(np.mean(density))


def kv_pattern(
    name: str, params: dict, q, k, v, tokens: int, steps: int, scale: float = SCALE
) -> tuple[np.ndarray, float]:
    """SnapKV / Ada-SnapKV: the method's ``compress_kv`` on the prompt, then each decode step reads
    the kept prompt tokens and every token decoded since. Sparsity = 1 - kept / tokens."""
    from sparse_frontier.attention.reference import kv_selection_mask

    sel = _method(name, params).compress_kv(q[:tokens], k[:tokens], v[:tokens], layer_index=0, scale=scale)
    kept = kv_selection_mask(sel.indices, tokens, q.shape[1] // k.shape[1])[0].numpy()
    mask = np.zeros((steps, tokens + steps), dtype=bool)
    mask[:, :tokens] = kept
    mask[:, tokens:] = np.tri(steps, dtype=bool)
    return mask, 1.0 - kept.sum() / tokens


def pattern_masks(
    sparsities=(0.5, 0.7, 0.9),
    tokens: int = 1024,
    seed: int = 0,
    steps: int = 64,
    methods=PREFILL + DECODE,
    qkv=None,
    scale: float | None = None,
) -> list[PatternMask]:
    """Every method's kept pairs at each target sparsity, by its own code (see the module docstring).

    ``qkv``: a real head's queries, keys and values ``[n, 1, D]`` (one query head and its kv head,
    e.g. captured from a model by the ``capture_qkv`` method) with its attention ``scale``, instead
    of the toy example: the first ``n - steps`` tokens are the prompt, the last ``steps`` its decode
    steps (each reads the cache before it, as a decode step of those tokens would); ``tokens`` and
    ``seed`` are then unused.

    One :class:`PatternMask` per (method, sparsity), methods in the order given (prefill first),
    sparsities ascending. Deterministic in ``seed`` (or in ``qkv``).
    """
    unknown = sorted(set(methods) - set(PREFILL + DECODE))
    if unknown:
        raise ValueError(f"no pattern for method(s) {', '.join(unknown)}; valid: {', '.join(PREFILL + DECODE)}")
    bad = [s for s in sparsities if not 0.0 < s < 1.0]
    if bad:
        raise ValueError(f"target sparsities must lie in (0, 1), got {bad}")
    if qkv is not None:
        q, k, v = (t.float() for t in qkv)
        if not (
            q.dim() == k.dim() == v.dim() == 3
            and q.shape[1] == k.shape[1] == v.shape[1] == 1
            and q.shape[0] == k.shape[0] == v.shape[0]
            and q.shape[2] == k.shape[2]
        ):
            raise ValueError(
                f"qkv must be one head's [n, 1, D] queries, keys and values of one length; got shapes "
                f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
            )
        tokens, scale = q.shape[0] - steps, q.shape[2] ** -0.5 if scale is None else scale
    else:
        q, k, v = toy_qkv(tokens + steps, seed)
        scale = SCALE
    if tokens < 256 or steps < 1:
        raise ValueError(f"the prompt must have >= 256 tokens and steps >= 1, got tokens={tokens}, steps={steps}")
    qp, kp, vp = q[:tokens], k[:tokens], v[:tokens]
    out = []
    for name in methods:
        for target in sorted(sparsities):
            if name == "vertical_slash":
                params = vertical_slash_params(qp, kp, 1.0 - target, scale)
            elif name == "flexprefill":
                params = flexprefill_params(qp, kp, 1.0 - target, scale)
            elif name in ("snapkv", "ada_snapkv"):
                params = {"sparsity": target, "local_window": SNAPKV_LOCAL_WINDOW}
            else:
                params = {"sparsity": target}
            if name in PREFILL:
                mask, measured = prefill_pattern(name, params, qp, kp, vp, scale)
            elif name == "quest":
                mask, measured = quest_pattern(params, q, k, tokens, steps)
            else:
                mask, measured = kv_pattern(name, params, q, k, v, tokens, steps, scale)
            phase = "prefill" if name in PREFILL else "decode"
            out.append(PatternMask(name, phase, float(target), float(measured), mask, params))
    return out
