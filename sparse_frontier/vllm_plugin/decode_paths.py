"""Decode paths: each says which decode steps it computes, and computes them after the backend ran.

The router (:mod:`.router`) offers every decode step of a request its method touches to the paths
in turn; the first that claims it computes it, the backend none of it. This module holds the base
class and the generic path (gather the tokens a request may read, run the method's ``decode`` hook
or dense attention over them); Quest's page-reading paths are in :mod:`.quest_paths`, the batched
decode of compacted caches in :mod:`.compacted`.
"""

from __future__ import annotations

import torch

from sparse_frontier.attention.ops import decode_attention
from sparse_frontier.vllm_plugin.layer_call import DecodeRow, LayerCall
from sparse_frontier.vllm_plugin.state import RequestState


class DecodePath:
    """One way of computing decode rows."""

    def claims(self, call: LayerCall, state: RequestState) -> bool:
        """Whether this path computes ``state``'s decode step on ``call``'s layer (asked before the backend runs)."""
        raise NotImplementedError

    def run(self, call: LayerCall, rows: list[DecodeRow]) -> None:
        """Write the claimed requests' output rows and record their densities."""
        raise NotImplementedError


class PerRequestPath(DecodePath):
    """A path that computes its requests one at a time (in PyTorch, on tensors gathered from the cache)."""

    def run(self, call: LayerCall, rows: list[DecodeRow]) -> None:
        for row in rows:
            self.decode_one(call, row)

    def decode_one(self, call: LayerCall, decode: DecodeRow) -> None:
        raise NotImplementedError


class GatherDecode(PerRequestPath):
    """Per request: the tokens it may read (the whole cache, or a compacted cache's kept prefix plus
    every token generated since, never the evicted ones) gathered into contiguous tensors, then the
    method's ``decode`` hook, or dense attention over them where it has none (or returns None)."""

    def claims(self, call: LayerCall, state: RequestState) -> bool:
        return state.compacted(call.index) or state.computes_decode

    def decode_one(self, call: LayerCall, decode: DecodeRow) -> None:
        state, index, token, seq_len = decode.state, call.index, decode.span.start, decode.span.seq_len
        cache, device = call.adapter.cache, call.kv_cache.device
        lengths = state.kv_lengths.get(index)
        block_row = call.block_row(decode.row)
        if lengths is None:
            positions = torch.arange(seq_len, device=device)
            keys, values = cache.gather(call.kv_cache, block_row, positions, call.layer)
            valid = None
        else:
            # The compacted prefix of each head, then every token generated since the prefill.
            recent = torch.arange(state.prompt_len, seq_len, device=device)
            positions = [torch.cat([torch.arange(int(n), device=device), recent]) for n in lengths]
            keys, values = cache.gather_per_head(call.kv_cache, block_row, positions, call.layer)
            valid = (lengths + len(recent)).to(device)
        density = 1.0 if valid is None else float(valid.float().mean()) / seq_len
        q, out, scale = call.q[token], call.out, call.impl.scale
        res = None
        if state.computes_decode:
            res = state.method.decode(q, keys, values, layer_index=index, scale=scale, lengths=valid)
        if res is not None:
            out[token] = res.output.to(out.dtype)
            density *= float(res.density.float().mean())
        else:
            out[token] = decode_attention(q, keys, values, scale, valid).to(out.dtype)
        state.record_decode(index, density)


def token_rows(rows: list[int], device):
    """Query rows of a batch of decode requests: a slice when they are consecutive (the usual case:
    a view, so reading and writing them costs no gather), else an index tensor."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return slice(rows[0], rows[0] + len(rows))
    return torch.tensor(rows, device=device)


def write_rows(out: torch.Tensor, rows, compute) -> None:
    """``out[rows] = compute(into)``: consecutive rows of the right dtype are computed in place (the
    kernel writes the layer's output rows), others through a buffer."""
    if isinstance(rows, slice) and out[rows].is_contiguous():
        compute(out[rows])
    else:
        out[rows] = compute(None).to(out.dtype)
