"""The kernels' torch paths: what the methods run on CPU, and the kernels' references. No Triton here,
so a method imports this module at load time and a kernel module (which imports Triton) only on
first use of the kernel."""

from __future__ import annotations

import torch


def page_summaries(key: torch.Tensor, page: int, lengths: torch.Tensor | None = None):
    """Element-wise min and max of the keys of each page: ``[B, Hkv, P, D]`` each (tokens past ``lengths`` ignored)."""
    b, hkv, s, d = key.shape
    p = -(-s // page)
    pad = p * page - s
    k = key
    valid = torch.arange(p * page, device=key.device)
    if lengths is not None or pad:
        lens = lengths if lengths is not None else torch.full((b, hkv), s, device=key.device)
        ok = (valid[None, None, :] < lens[..., None])[..., None]
        k = torch.nn.functional.pad(key, (0, 0, 0, pad))
        big = torch.finfo(key.dtype).max
        kmin = torch.where(ok, k, big).reshape(b, hkv, p, page, d).amin(3)
        kmax = torch.where(ok, k, -big).reshape(b, hkv, p, page, d).amax(3)
        return kmin, kmax
    k = k.reshape(b, hkv, p, page, d)
    return k.amin(3), k.amax(3)


def page_scores_torch(query, pmin, pmax, npages, share: bool, block_table=None) -> torch.Tensor:
    """:func:`~sparse_frontier.kernels.quest.page_scores` in torch: ``[B, Hsel, P]`` float32, -inf past
    each head's pages (pools ``[num_blocks, Hkv, D]`` with ``block_table`` are gathered first)."""
    b, hq, d = query.shape
    if block_table is not None:  # gather the pools into the contiguous layout
        blocks = block_table.long().clamp(min=0)
        pmin, pmax = (x[blocks].transpose(1, 2) for x in (pmin, pmax))  # [B, Hkv, P, D]
    hkv, p = pmin.shape[1], pmin.shape[2]
    g = hq // hkv
    q = query.float().reshape(b, hkv, g, 1, d)
    s = torch.maximum(q * pmin.float()[:, :, None], q * pmax.float()[:, :, None]).sum(-1)  # [B, Hkv, G, P]
    s = s.sum(2) if share else s.reshape(b, hq, p)
    ok = torch.arange(p, device=query.device) < npages.repeat_interleave(1 if share else g, 1)[..., None]
    return s.masked_fill(~ok, float("-inf"))


def select_pages_torch(scores: torch.Tensor, current: torch.Tensor, n_select: int) -> torch.Tensor:
    """:func:`~sparse_frontier.kernels.quest.select_pages` in torch (one budget for all requests;
    pages in ``topk`` order)."""
    if torch.is_tensor(n_select):
        raise ValueError("per-request page budgets need the kernel (use_kernel=True)")
    k = min(n_select + 1, scores.shape[2])
    s = scores.scatter(2, current[..., None].long(), float("inf"))
    val, idx = s.topk(k, -1)
    return torch.where(val > float("-inf"), idx, -1).int()


def window_scores_torch(q_win: torch.Tensor, key: torch.Tensor, scale: float, reduce: str) -> torch.Tensor:
    """SnapKV importance ``[Hkv, T]`` as :func:`~sparse_frontier.kernels.snapkv.window_scores` computes it, in plain torch."""
    w, hq, d = q_win.shape
    t, hkv = key.shape[:2]
    g = hq // hkv
    causal = torch.arange(t, device=key.device)[None, :] <= torch.arange(t - w, t, device=key.device)[:, None]
    out = torch.empty(hkv, t, dtype=torch.float32, device=key.device)
    for h in range(hkv):  # one group at a time: g * W * T floats
        logits = torch.einsum("wgd,td->gwt", q_win[:, h * g : (h + 1) * g].float(), key[:, h].float()) * scale
        p = torch.softmax(logits.masked_fill(~causal, float("-inf")), -1)
        out[h] = p.sum(1).mean(0) if reduce == "sum" else p.amax(1).amax(0)
    return out
