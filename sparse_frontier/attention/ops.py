"""Plain PyTorch attention used as dense fallbacks inside the handler (float32 compute).

GQA is handled by viewing query heads as ``[kv_heads, group, ...]``: K/V are never repeated.
"""

from __future__ import annotations

import torch


def masked_attention(query, key, value, scale: float, mask=None):
    """``query [T, Hq, D]``, ``key/value [S, Hkv, D]``, ``mask [Hq or 1, T, S]`` (True = keep).

    Without a mask: causal with the queries at the end of the keys (T <= S).
    """
    t, hq, d = query.shape
    s, hkv, _ = key.shape
    group = hq // hkv
    q = query.float().reshape(t, hkv, group, d).permute(1, 2, 0, 3)  # [Hkv, g, T, D]
    k = key.float().permute(1, 0, 2)  # [Hkv, S, D]
    v = value.float().permute(1, 0, 2)
    scores = torch.einsum("hgtd,hsd->hgts", q, k) * scale
    if mask is None:
        mask = torch.ones(t, s, dtype=torch.bool, device=query.device).tril(diagonal=s - t)[None]
    mask = mask.reshape(-1, t, s)
    if mask.shape[0] == hq:
        mask = mask.reshape(hkv, group, t, s)
    scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # rows with nothing kept give 0
    out = torch.einsum("hgts,hsd->hgtd", probs, v)
    return out.permute(2, 0, 1, 3).reshape(t, hq, d).to(query.dtype)


def decode_attention(query, key, value, scale: float, lengths=None):
    """One token: ``query [Hq, D]`` over ``key/value [Hkv, S, D]``; ``lengths [Hkv]`` valid per head."""
    hq, d = query.shape
    hkv, s, _ = key.shape
    group = hq // hkv
    q = query.float().reshape(hkv, group, d)
    scores = torch.einsum("hgd,hsd->hgs", q, key.float()) * scale
    if lengths is not None:
        valid = torch.arange(s, device=key.device)[None, :] < lengths.to(key.device, torch.long)[:, None]
        scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.einsum("hgs,hsd->hgd", probs, value.float()).reshape(hq, d).to(query.dtype)
