"""Small query-key masks of each method family, for the pattern-visualisation figure.

Self-contained torch builders on a toy example (the methods' reference mask functions in
sparse_frontier/attention are not committed yet); each picks the smallest budget whose kept
fraction of causal pairs reaches the target density, so masks at several sparsities compare.
"""

from __future__ import annotations

import math

import torch

PREFILL = ("vertical_slash", "block_sparse")
DECODE = ("snapkv", "quest")


def toy_qk(tokens: int, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random queries/keys with a few 'sink' keys and periodic strong keys, as real heads have."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(tokens, dim, generator=g), torch.randn(tokens, dim, generator=g)
    direction = torch.randn(dim, generator=g)
    q += 0.8 * direction
    k[:2] += 2.0 * direction
    k[:: max(tokens // 6, 1)] += 1.5 * direction
    return q, k


def _causal(t: int) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool).tril()


def _probs(q, k) -> torch.Tensor:
    s = (q @ k.T) / math.sqrt(q.shape[-1])
    s = s.masked_fill(~_causal(q.shape[0])[-s.shape[0]:], float("-inf")) if s.shape[0] == s.shape[1] else s
    return s.softmax(-1)


def vertical_slash(q, k, budget: int, window: int = 16) -> torch.Tensor:
    t = q.shape[0]
    p = _probs(q, k)[-window:]  # the last queries estimate the pattern
    causal = _causal(t)
    cols = p.sum(0)
    diag = torch.zeros(t)
    for i, row in enumerate(p):
        qi = t - window + i
        diag[: qi + 1] += row[: qi + 1].flip(0)  # offset = qi - key
    keep_cols = cols.topk(min(budget, t)).indices
    keep_diag = diag.topk(min(budget, t)).indices
    mask = torch.zeros(t, t, dtype=torch.bool)
    mask[:, keep_cols] = True
    offsets = torch.arange(t)[:, None] - torch.arange(t)[None, :]
    mask |= torch.isin(offsets, keep_diag)
    return mask & causal


def block_sparse(q, k, budget: int, block: int = 4) -> torch.Tensor:
    t = q.shape[0]
    nb = t // block
    qb, kb = q[: nb * block].view(nb, block, -1).mean(1), k[: nb * block].view(nb, block, -1).mean(1)
    s = (qb @ kb.T).masked_fill(~_causal(nb), float("-inf"))
    s[:, 0] = float("inf")  # sink block
    idx = torch.arange(nb)
    s[idx, idx] = float("inf")  # diagonal and the block below it
    s[idx[1:], idx[:-1]] = float("inf")
    keep = torch.zeros(nb, nb, dtype=torch.bool)
    top = s.topk(min(budget, nb), dim=1).indices
    keep.scatter_(1, top, True)
    keep &= _causal(nb)
    return keep.repeat_interleave(block, 0).repeat_interleave(block, 1) & _causal(t)


def snapkv(q, k, budget: int, steps: int, window: int = 8, kernel: int = 5) -> torch.Tensor:
    """Decode steps (rows) x context keys (columns): one kept set, fixed after prefill."""
    t = k.shape[0]
    score = _probs(q, k)[-window:].sum(0)
    score = torch.nn.functional.avg_pool1d(score[None, None], kernel, 1, kernel // 2)[0, 0]
    score[:2] = score[-window:] = float("inf")  # prefix and local window always kept
    keep = torch.zeros(t, dtype=torch.bool)
    keep[score.topk(min(max(budget, 2 + window), t)).indices] = True
    return keep.expand(steps, t).clone()


def quest(q, k, budget: int, steps: int, page: int = 4, seed: int = 1) -> torch.Tensor:
    """Decode steps x context keys: the top pages by the min/max bound, chosen anew each step."""
    t = k.shape[0]
    pages = k[: t // page * page].view(t // page, page, -1)
    kmin, kmax = pages.min(1).values, pages.max(1).values
    g = torch.Generator().manual_seed(seed)
    new_q = torch.randn(steps, q.shape[1], generator=g) + q[-1]
    bound = torch.maximum(new_q[:, None] * kmin[None], new_q[:, None] * kmax[None]).sum(-1)
    top = bound.topk(min(max(budget // page, 1), t // page), dim=1).indices
    keep_pages = torch.zeros(steps, t // page, dtype=torch.bool).scatter_(1, top, True)
    keep_pages[:, -1] = True  # the current page
    return keep_pages.repeat_interleave(page, 1)


def density(mask: torch.Tensor, method: str) -> float:
    if method in PREFILL:
        return float(mask.sum() / _causal(mask.shape[0]).sum())
    return float(mask.float().mean())


def mask_at_sparsity(method: str, sparsity: float, tokens: int = 128, steps: int = 32, seed: int = 0) -> torch.Tensor:
    """The method's mask whose density is the smallest reaching 1 - sparsity (budget searched)."""
    builders = {
        "vertical_slash": lambda b: vertical_slash(q, k, b),
        "block_sparse": lambda b: block_sparse(q, k, b),
        "snapkv": lambda b: snapkv(q, k, b, steps),
        "quest": lambda b: quest(q, k, b, steps),
    }
    if method not in builders:
        raise ValueError(f"no mask builder for {method!r}; valid: {', '.join(builders)}")
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    q, k = toy_qk(tokens, seed=seed)
    for budget in range(1, tokens + 1):
        mask = builders[method](budget)
        if density(mask, method) >= 1 - sparsity:
            return mask
    return mask
