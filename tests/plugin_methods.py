"""Simple reference methods, one per hook, used to test the handler (registered on import)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

import torch

from sparse_frontier.attention import AttentionMethod, register_method
from sparse_frontier.attention.base import AttentionResult, KVSelection
from sparse_frontier.attention.ops import decode_attention
from sparse_frontier.attention.quest import Quest
from sparse_frontier.attention.reference import dense_attention, masked_attention


@register_method
@dataclass
class TorchDense(AttentionMethod):
    """Dense attention computed by the handler itself (checks gathering from the paged cache)."""

    name = "test_torch_dense"
    phase = "prefill+decode"

    def prefill(self, query, key, value, *, layer_index, scale):
        return AttentionResult(dense_attention(query, key, value, scale), torch.ones(query.shape[1]))

    def decode(self, query, key, value, *, layer_index, scale, lengths=None):
        return AttentionResult(decode_attention(query, key, value, scale, lengths), torch.ones(query.shape[0]))


@register_method
@dataclass
class LocalWindowPrefill(AttentionMethod):
    """Prefill sees only the last `window` keys (a simple mask)."""

    name = "test_local_window"
    phase = "prefill"
    window: int = 8

    def prefill(self, query, key, value, *, layer_index, scale):
        t = query.shape[0]
        i = torch.arange(t, device=query.device)
        mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - self.window)
        kept = mask.sum().float() / (t * (t + 1) / 2)
        out = masked_attention(query, key, value, mask.expand(query.shape[1], t, t), scale)
        return AttentionResult(out, kept.repeat(query.shape[1]))


@register_method
@dataclass
class DecodeTopK(AttentionMethod):
    """Each decode step attends to its `k` highest-scoring keys per kv head (group-summed scores)."""

    name = "test_decode_topk"
    phase = "decode"
    k: int = 4

    def decode(self, query, key, value, *, layer_index, scale, lengths=None):
        hq, d = query.shape
        hkv, s, _ = key.shape
        scores = torch.einsum("hgd,hsd->hs", query.float().reshape(hkv, hq // hkv, d), key.float())
        top = scores.topk(min(self.k, s), dim=-1).indices
        keep = torch.zeros(hkv, s, dtype=torch.bool, device=key.device).scatter_(1, top, True)
        keep[:, -1] = True  # the current token
        picked_k = [key[h, keep[h]] for h in range(hkv)]
        picked_v = [value[h, keep[h]] for h in range(hkv)]
        n = keep.sum(1)
        k_pad = torch.nn.utils.rnn.pad_sequence(picked_k, batch_first=True)
        v_pad = torch.nn.utils.rnn.pad_sequence(picked_v, batch_first=True)
        out = decode_attention(query, k_pad, v_pad, scale, n)
        return AttentionResult(out, (n.float() / s).repeat_interleave(hq // hkv))


@register_method
@dataclass
class KeepRecent(AttentionMethod):
    """After prefill keep the first 4 tokens and the last `recent * (h + 1)` tokens of kv head h."""

    name = "test_keep_recent"
    phase = "kv"
    recent: int = 16

    def compress_kv(self, query, key, value, *, layer_index, scale):
        t, hkv = key.shape[0], key.shape[1]
        kept = []
        for h in range(hkv):
            start = max(4, t - self.recent * (h + 1))
            kept.append(torch.cat([torch.arange(min(4, t)), torch.arange(start, t)]))
        return KVSelection(kept)


@register_method
@dataclass
class KeepAll(AttentionMethod):
    """A KV 'compression' keeping every token: compaction is a no-op, decode runs in the handler."""

    name = "test_keep_all"
    phase = "kv"

    def compress_kv(self, query, key, value, *, layer_index, scale):
        return KVSelection([torch.arange(key.shape[0]) for _ in range(key.shape[1])])


@register_method
@dataclass
class KeepRecentMask(AttentionMethod):
    """Decode over the full cache masked to exactly what `test_keep_recent` keeps (+ new tokens)."""

    name = "test_keep_recent_mask"
    phase = "decode"
    recent: int = 16
    prompt_len: int = 0  # set by the test: the compression happened at this length

    def decode(self, query, key, value, *, layer_index, scale, lengths=None):
        hkv, s, d = key.shape
        prompt_len = min(self.prompt_len, s)  # only meaningful for the prompt of that length
        kept = (
            KeepRecent(recent=self.recent)
            .compress_kv(None, key[:, :prompt_len].transpose(0, 1), None, layer_index=layer_index, scale=scale)
            .indices
        )
        rows = [torch.cat([k, torch.arange(prompt_len, s)]) for k in kept]
        n = torch.tensor([len(r) for r in rows])
        k_pad = torch.nn.utils.rnn.pad_sequence([key[h, r] for h, r in enumerate(rows)], batch_first=True)
        v_pad = torch.nn.utils.rnn.pad_sequence([value[h, r] for h, r in enumerate(rows)], batch_first=True)
        out = decode_attention(query, k_pad, v_pad, scale, n)
        return AttentionResult(out, torch.ones(query.shape[0]))


@register_method
@dataclass
class QuestFullRead(Quest):
    """Quest through its plain decode hook: the handler hands it the whole cache (the oracle for
    the handler's page-reading path, which must select and attend the same tokens)."""

    name = "test_quest_full_read"

    def page_selector(self):
        return None  # no page-reading decode: its decode hook gets the whole cache


@register_method
@dataclass
class RecordLayers(AttentionMethod):
    """Every hook overridden, each recording the layer it was called on and changing nothing (decode
    is then computed densely by the handler); ``CALLS`` maps hook -> layer indices (per process)."""

    name = "test_record_layers"
    phase = "prefill+decode"
    CALLS: ClassVar[dict[str, set[int]]] = defaultdict(set)

    def prefill(self, query, key, value, *, layer_index, scale):
        self.CALLS["prefill"].add(layer_index)

    def decode(self, query, key, value, *, layer_index, scale, lengths=None):
        self.CALLS["decode"].add(layer_index)

    def compress_kv(self, query, key, value, *, layer_index, scale):
        self.CALLS["compress_kv"].add(layer_index)
