"""Quest (decode): query-aware page selection over the full KV cache.

Prefill is dense. Each page of ``page_size`` tokens keeps the element-wise min/max of its keys;
at each step a page scores ``sum_d max(q_d min_d, q_d max_d)`` (an upper bound of q.k on the page),
and the query attends to the top ``token_budget / page_size`` pages plus the current (last,
partial) page. With ``share_pages`` the scores of a GQA group are summed and the group reads the
same pages (one K/V load per group).

Knob: ``sparsity`` -> ``token_budget = (1 - sparsity) * S`` rounded to whole pages (S = valid
cached tokens at this step); an explicit ``token_budget`` (> 0) wins. Density per query head =
tokens read / valid tokens (the current page's tokens included, so slightly above 1 - sparsity).
Torch on CPU, Triton on CUDA (page scores, exact top-k selection, split-page decode, merge). The page summaries are recomputed
from the contiguous cache each call (the hook contract hands the cache, not summaries);
``benchmarks/kernels.py`` times them apart, as a paged cache would maintain them incrementally.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparse_frontier.attention.base import AttentionMethod, AttentionResult
from sparse_frontier.attention.reference import masked_decode, page_keep_mask
from sparse_frontier.attention.registry import register_method
from sparse_frontier.kernels import use_triton
from sparse_frontier.kernels.torch_paths import page_scores_torch, page_summaries, select_pages_torch


def budget_pages(sparsity: float, token_budget: int, s: int, page: int) -> int:
    """Pages selected besides the current one: token budget / page size (at least one page)."""
    tokens = token_budget or (1.0 - sparsity) * s
    return max(1, int(round(tokens / page)))


def page_scores(query, pmin, pmax, npages, share: bool) -> torch.Tensor:
    """Page scores ``[B, Hsel, P]``: the Triton kernel on CUDA (imported on first use), torch on CPU."""
    if use_triton(query):
        from sparse_frontier.kernels import quest as kernels

        return kernels.page_scores(query, pmin, pmax, npages, share, True)
    return page_scores_torch(query, pmin, pmax, npages, share)


def select_pages(scores, current, n_select: int) -> torch.Tensor:
    """Top ``n_select`` pages plus the current one ``[B, Hsel, N]`` (-1 = none): kernel on CUDA, torch on CPU."""
    if use_triton(scores):
        from sparse_frontier.kernels import quest as kernels

        return kernels.select_pages(scores, current, n_select, True)
    return select_pages_torch(scores, current, n_select)


@register_method
@dataclass
class Quest(AttentionMethod):
    name = "quest"
    display_name = "Quest"
    unit = "pages"
    budget_allocation = "uniform"
    kv_cache = "full cache kept, pages selected per step"
    phase = "decode"
    sparsity: float = 0.0
    token_budget: int = 0
    page_size: int = 16
    share_pages: bool = True

    def __post_init__(self):
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "a target sparsity in [0, 1)")
        self.check(self.token_budget >= 0, "token_budget", "an integer >= 0 (0: from sparsity)")
        self.check(self.page_size in (16, 32, 64, 128), "page_size", "one of 16, 32, 64, 128")
        self.check(self.token_budget == 0 or self.sparsity == 0.0, "sparsity", "0 when token_budget is given")
        self.check(isinstance(self.share_pages, bool), "share_pages", "true or false")

    def page_selector(self) -> Quest:
        return self  # the handler's page-reading decode (summaries + selected pages only)

    def pages_to_select(self, s: int) -> int:
        """Pages selected besides the current one when ``s`` tokens are cached."""
        return budget_pages(self.sparsity, self.token_budget, s, self.page_size)

    def select(self, query, key, lengths):
        """Selected pages ``[B, Hsel, N]`` (-1 = none) for query ``[B, Hq, D]``, key ``[B, Hkv, S, D]``."""
        b, hkv, s, _ = key.shape
        page = self.page_size
        pmin, pmax = page_summaries(key, page, lengths)
        npages = (lengths + page - 1) // page
        scores = page_scores(query, pmin, pmax, npages, self.share_pages)
        group = query.shape[1] // hkv
        current = npages - 1 if self.share_pages else (npages - 1).repeat_interleave(group, 1)
        return select_pages(scores, current, self.pages_to_select(s))

    def select_from_summaries(self, query, pmin, pmax, s: int):
        """Pages ``[Hsel, N]`` (-1 = none) for ``query [Hq, D]`` from page summaries ``[Hkv, >=P, D]``.

        The vLLM handler keeps the summaries per request and layer (built at prefill, updated with
        each new key), so a decode step reads the summaries plus the selected pages only.
        """
        page, hkv = self.page_size, pmin.shape[0]
        npages = -(-s // page)
        counts = torch.full((1, hkv), npages, device=query.device)
        scores = page_scores(query[None], pmin[None, :, :npages], pmax[None, :, :npages], counts, self.share_pages)
        current = counts - 1 if self.share_pages else (counts - 1).repeat_interleave(query.shape[0] // hkv, 1)
        return select_pages(scores, current, self.pages_to_select(s))[0]

    def decode(self, query, key, value, *, layer_index: int, scale: float, lengths=None) -> AttentionResult | None:
        hkv, s, _ = key.shape
        hq = query.shape[0]
        group = hq // hkv
        lens = (lengths.to(key.device) if lengths is not None else torch.full((hkv,), s, device=key.device)).long()
        pages = self.select(query[None], key[None], lens[None])[0]  # [Hsel, N]
        rep = group if self.share_pages else 1
        if use_triton(query):
            from sparse_frontier.kernels.quest import sparse_decode

            out = sparse_decode(
                query[None], key[None], value[None], pages[None], lens[None], self.page_size, scale, self.share_pages
            )[0]
        else:
            keep = page_keep_mask(pages, s, self.page_size, rep)
            keep &= torch.arange(s, device=key.device)[None, :] < lens.repeat_interleave(group)[:, None]
            out = masked_decode(query, key, value, keep, scale).to(query.dtype)
        page_tokens = (
            lens.repeat_interleave(group)[:, None] - pages.repeat_interleave(rep, 0).long() * self.page_size
        ).clamp(0, self.page_size)
        read = torch.where(pages.repeat_interleave(rep, 0) >= 0, page_tokens, 0).sum(-1)
        return AttentionResult(out, read.float() / lens.repeat_interleave(group).float())
