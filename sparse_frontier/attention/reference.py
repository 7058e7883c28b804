"""Plain PyTorch references: the exact query-key pairs a method keeps, and dense masked attention.

These are the oracles of the tests and the source of the pattern-visualisation figure. Every mask
builder returns a boolean tensor; ``True`` = the pair is computed. Prefill masks are ``[Hq, T, T]``
(already causal), decode keep-masks ``[Hq, S]``. Nothing here is optimised: use small sizes.

- :func:`masked_attention` / :func:`masked_decode` run float32 softmax attention under a mask.
- :func:`vertical_slash_mask`, :func:`block_list_mask`, :func:`page_keep_mask`,
  :func:`kv_selection_mask` turn a method's index structures into masks.
- ``method.build_mask(query, key, value, scale=...)`` (prefill methods) returns the mask a method
  keeps for given inputs; :func:`build_mask` is the same by method name.
"""

from __future__ import annotations

import torch

from sparse_frontier.attention.registry import get_method_class


def causal_mask(t: int, device=None) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()


def masked_attention(query, key, value, mask, scale: float) -> torch.Tensor:
    """Softmax attention in float32 over ``mask [Hq, T, S]``; query ``[T, Hq, D]``, key/value ``[S, Hkv, D]``.

    Rows whose mask is empty give zeros. Returns ``[T, Hq, D]`` float32.
    """
    q = query.float().transpose(0, 1)  # [Hq, T, D]
    group = query.shape[1] // key.shape[1]
    k = key.float().transpose(0, 1).repeat_interleave(group, 0)  # fine in a reference: small sizes
    v = value.float().transpose(0, 1).repeat_interleave(group, 0)
    logits = (q @ k.transpose(1, 2)) * scale
    logits = logits.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(logits, -1).nan_to_num(0.0)
    return (probs @ v).transpose(0, 1)


def dense_attention(query, key, value, scale: float) -> torch.Tensor:
    t, hq = query.shape[:2]
    return masked_attention(query, key, value, causal_mask(t, query.device).expand(hq, t, t), scale)


def masked_decode(query, key, value, keep, scale: float) -> torch.Tensor:
    """One decode step: query ``[Hq, D]``, key/value ``[Hkv, S, D]``, ``keep [Hq, S]`` -> ``[Hq, D]`` float32."""
    group = query.shape[0] // key.shape[0]
    k = key.float().repeat_interleave(group, 0)
    v = value.float().repeat_interleave(group, 0)
    logits = torch.einsum("hd,hsd->hs", query.float(), k) * scale
    probs = torch.softmax(logits.masked_fill(~keep, float("-inf")), -1)
    return torch.einsum("hs,hsd->hd", probs, v)


def _rows(t: int, rows, device):
    r0, r1 = (0, t) if rows is None else rows
    return torch.arange(r0, r1, device=device)


def vertical_slash_mask(t: int, cover: torch.Tensor, cols: torch.Tensor, block: int, rows=None) -> torch.Tensor:
    """Mask of kept block diagonals + columns, ``[Hq, T, T]`` (or ``[Hq, r1 - r0, T]`` for ``rows=(r0, r1)``).

    ``cover [Hq, NB]`` bool: block diagonal d (key block = query block - d) is kept whole;
    ``cols [Hq, C]``: kept key columns (entries >= T are padding), kept for every row at or after them.
    """
    hq, nb = cover.shape
    qpos = _rows(t, rows, cover.device)
    kpos = torch.arange(t, device=cover.device)
    d = (qpos[:, None] // block) - (kpos[None, :] // block)  # block diagonal of each pair
    mask = cover[:, d.clamp(min=0)] & (d >= 0)
    colmask = torch.zeros(hq, t + 1, dtype=torch.bool, device=cover.device)
    colmask.scatter_(1, cols.long().clamp(max=t), True)
    mask |= colmask[:, None, :t]
    return mask & (kpos[None, :] <= qpos[:, None])


def block_list_mask(t: int, blocks: torch.Tensor, counts: torch.Tensor, block: int, rows=None) -> torch.Tensor:
    """Mask of per-query-block key-block lists: ``blocks [Hq, NB, K]`` with ``counts [Hq, NB]`` valid entries."""
    hq, nb, k = blocks.shape
    valid = torch.arange(k, device=blocks.device) < counts[..., None]
    bm = torch.zeros(hq, nb, nb + 1, dtype=torch.bool, device=blocks.device)
    bm.scatter_(2, torch.where(valid, blocks.long(), nb), True)
    qpos = _rows(t, rows, blocks.device)
    kpos = torch.arange(t, device=blocks.device)
    return bm[:, qpos // block][:, :, kpos // block] & (kpos[None, :] <= qpos[:, None])


def masked_attention_rows(query, key, value, scale: float, row_mask, chunk: int = 256) -> torch.Tensor:
    """Torch path for CPU: masked attention computed ``chunk`` query rows at a time.

    ``row_mask(r0, r1) -> [Hq, r1 - r0, T]``. Returns ``[T, Hq, D]`` in query's dtype.
    """
    t = query.shape[0]
    out = torch.empty_like(query)
    for r0 in range(0, t, chunk):
        r1 = min(t, r0 + chunk)
        m = row_mask(r0, r1)
        out[r0:r1] = masked_attention(query[r0:r1], key[:r1], value[:r1], m[:, :, :r1], scale).to(query.dtype)
    return out


def page_keep_mask(pages: torch.Tensor, s: int, page_size: int, repeat: int) -> torch.Tensor:
    """Quest: ``pages [Hsel, P]`` selected page ids (-1 = none) -> keep mask ``[Hsel * repeat, S]``.

    ``Hsel`` is Hkv when the query heads of a group share pages (``repeat`` = group size), else Hq
    (``repeat`` = 1).
    """
    hsel = pages.shape[0]
    pm = torch.zeros(hsel, s // page_size + 2, dtype=torch.bool, device=pages.device)
    pm.scatter_(1, torch.where(pages >= 0, pages.long(), pm.shape[1] - 1), True)
    pm[:, -1] = False
    keep = pm[:, torch.arange(s, device=pages.device) // page_size]
    return keep.repeat_interleave(repeat, 0)


def kv_selection_mask(indices: list[torch.Tensor], t: int, group: int) -> torch.Tensor:
    """KV compression: kept positions per kv head -> keep mask ``[Hq, T]`` for the next decode step."""
    keep = torch.zeros(len(indices), t, dtype=torch.bool, device=indices[0].device)
    for h, idx in enumerate(indices):
        keep[h, idx.long()] = True
    return keep.repeat_interleave(group, 0)


def build_mask(method_name: str, query, key, value, *, scale: float | None = None, **params) -> torch.Tensor:
    """The ``[Hq, T, T]`` mask a registered prefill method keeps (for figures and tests)."""
    method = get_method_class(method_name).from_params(params)
    if not hasattr(method, "build_mask"):
        raise ValueError(
            f"method {method_name!r} has no prefill mask; prefill methods: vertical_slash, flexprefill, block_sparse"
        )
    return method.build_mask(query, key, value, scale=scale or query.shape[-1] ** -0.5)
