"""Synthetic attention with the structure of long-context LLM heads, for calibration without a GPU.

Per head, the last ``n`` queries' logits over ``T`` keys are the sum of
- attention sinks: a large bonus on the first 4 keys;
- locality: ``-a log(1 + distance)`` (power-law decay, exponent ``a`` drawn per head);
- verticals: a few hundred heavy key columns (retrieval-like tokens), exponential weights;
- slashes: a few distant diagonals (periodic/positional heads), moderate weights;
- noise.
The knobs below were chosen to look like published Qwen/Llama attention maps (most mass on sinks
and the local window, a long tail of columns); they are a stand-in, not a measurement. Real
calibration captures the model's own estimation queries (same ``estimate_scores``) on a GPU.
"""

from __future__ import annotations

import torch

from sparse_frontier.attention import calibration
from sparse_frontier.attention.vertical_slash import FlexPrefill, VerticalSlash, scores_from_probs
from sparse_frontier.levels import FLEXPREFILL_SPARSITIES, PAPER_SPARSITIES


def synthetic_scores(t: int, n: int, heads: int, seed: int = 0):
    """``(vert [heads, T], slash [heads, T])`` as :func:`estimate_scores` would give on such heads."""
    g = torch.Generator().manual_seed(seed)
    n = min(n, t)
    qpos = torch.arange(t - n, t)[:, None]
    kpos = torch.arange(t)[None, :]
    dist = (qpos - kpos).clamp(min=0).float()
    causal = kpos <= qpos
    verts, slashes = [], []
    for _ in range(heads):
        a = 0.6 + 0.8 * torch.rand((), generator=g)
        logits = -a * torch.log1p(dist)
        logits[:, :4] += 6.0 + 3.0 * torch.rand((), generator=g)
        cols = torch.randint(4, t, (max(8, t // 64),), generator=g)
        logits[:, cols] += torch.empty(len(cols)).exponential_(1.0 / 1.5, generator=g)
        for o in torch.randint(64, t, (max(2, t // 2048),), generator=g).tolist():
            i = torch.arange(n)
            j = (t - n + i) - o
            ok = j >= 0
            logits[i[ok], j[ok]] += 1.0 + 2.0 * torch.rand((), generator=g)
        logits += 0.5 * torch.randn(logits.shape, generator=g)
        probs = torch.softmax(logits.masked_fill(~causal, float("-inf")), -1)
        v, s = scores_from_probs(probs[None], t)
        verts.append(v[0])
        slashes.append(s[0])
    return torch.stack(verts), torch.stack(slashes)


QWEN25_7B_HEADS = 28  # query heads per layer (4 kv heads, head dim 128)


def build_table(model: str, lengths, seeds=(0,), heads: int = QWEN25_7B_HEADS, path=None) -> list[dict]:
    """Calibrate Vertical-Slash and FlexPrefill on synthetic heads and write the entries (source: synthetic)."""
    entries = []
    for length in lengths:
        for method in (VerticalSlash(), FlexPrefill()):
            samples = [synthetic_scores(length, method.approximation_size, heads, seed) for seed in seeds]
            sparsities = PAPER_SPARSITIES if method.name == "vertical_slash" else FLEXPREFILL_SPARSITIES
            points = calibration.calibrate(method, samples, length, sparsities)
            entries.append(
                {
                    "model": model,
                    "method": method.name,
                    "length": length,
                    "fixed": method.calibration_key(),
                    "source": f"synthetic heads ({heads} per seed, seeds {list(seeds)})",
                    "points": points,
                }
            )
            calibration.write_entries(entries[-1:], path)
    return entries


if __name__ == "__main__":
    import sys

    build_table("synthetic-qwen2.5-7b", [int(x) for x in sys.argv[1:]] or [16384, 32768])
