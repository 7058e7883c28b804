"""Dense decode attention the handler runs itself (over compacted or selected tokens), float32 compute.

Unlike the oracle in :mod:`reference` (which repeats K/V for clarity), GQA is handled by viewing
query heads as ``[kv_heads, group, ...]``: this runs on the GPU inside the handler, so K/V are
never repeated.
"""

from __future__ import annotations

import torch


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
