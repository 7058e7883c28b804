"""Pattern visualisation (v3 Fig 1): the query-key pairs each method keeps, computed by the method's
own code (its mask builder, page selection or KV selection; :mod:`sparse_frontier.analysis.masks`)
at several sparsities, on a real model's head where the config names one (``figures.patterns``:
captured by rule capture_attention_head; its last 64 tokens are the decode steps), else on a small
example with the structure real heads have. Prefill panels show queries x keys, decode panels decode
steps x context keys; each pixel is the share of pairs kept in its bin (pooled to at most 128 bins
a side). A real head's panels are drawn over its dense attention (log scale, in colour), so one sees
what each method keeps of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparse_frontier.analysis.figures.common import Inputs, Output, fixed, grid

SPARSITIES = (0.5, 0.7, 0.9)
#: decode steps of a real head: its last tokens, each reading the cache before it
STEPS = 64
#: masks are drawn (and their CSV written) pooled to at most this many bins a side: the kept share per bin
BINS = 128


def pooled(mask: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Share of kept pairs per bin of a (rows x keys) mask, at most ``bins`` a side."""
    r, k = mask.shape
    fr, fk = -(-r // bins), -(-k // bins)
    padded = np.zeros((fr * -(-r // fr), fk * -(-k // fk)), dtype=float)
    padded[:r, :k] = mask
    return padded.reshape(padded.shape[0] // fr, fr, padded.shape[1] // fk, fk).mean(axis=(1, 3))


@fixed
def data(inputs: Inputs) -> Output:
    from sparse_frontier.analysis.masks import pattern_masks

    head = inputs.attention
    notes = []
    if head:
        qkv = (head["query"], head["key"], head["value"])
        masks = pattern_masks(SPARSITIES, qkv=qkv, scale=head["scale"], steps=STEPS)
        notes.append(f"{describe(head)}; its last {STEPS} tokens are the decode steps")
    else:
        masks = pattern_masks(SPARSITIES)
        notes.append("toy head (sparse_frontier/analysis/masks.py); set figures.patterns for a real model's head")
    rows = []
    for m in masks:
        image = pooled(m.mask)
        q, k = np.nonzero(image)
        rows.append(
            pd.DataFrame(
                {
                    "method": m.method,
                    "phase": m.phase,
                    "target_sparsity": m.target_sparsity,
                    "measured_sparsity": m.measured_sparsity,
                    "row_bin": q,
                    "key_bin": k,
                    "kept_share": image[q, k],
                    "bins_rows": image.shape[0],
                    "bins_keys": image.shape[1],
                    "rows": m.mask.shape[0],
                    "keys": m.mask.shape[1],
                }
            )
        )
    if head:
        rows.append(attention_rows(head, STEPS))
    return Output(pd.concat(rows, ignore_index=True), notes=notes)


def describe(head: dict) -> str:
    return (
        f"{head.get('model', 'model')} layer {head['layer']} head {head['head']} (kv head {head['kv_head']}) "
        f"on {head['prompt_tokens']} tokens of {head['dataset']}"
    )


def dense_probabilities(q, k, scale: float) -> np.ndarray:
    """Causal softmax attention of one head, ``[n, n]`` (float32; the figure's lengths are short)."""
    import torch

    logits = (q[:, 0].float() @ k[:, 0].float().T) * scale
    n = logits.shape[0]
    logits = logits.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(logits, dim=-1).numpy()


def attention_rows(head: dict, steps: int) -> pd.DataFrame:
    """The head's dense attention, pooled as the masks are (mean probability per bin): rows
    ``method == "dense"`` for the prefill (queries x keys) and the decode steps (steps x keys)."""
    p = dense_probabilities(head["query"], head["key"], head["scale"])
    tokens = p.shape[0] - steps
    out = []
    for phase, block in (("prefill", p[:tokens, :tokens]), ("decode", p[tokens:, :])):
        image = pooled(block)
        r, c = np.nonzero(image)
        out.append(
            pd.DataFrame(
                {
                    "method": "dense",
                    "phase": phase,
                    "target_sparsity": 0.0,
                    "measured_sparsity": 0.0,
                    "row_bin": r,
                    "key_bin": c,
                    "kept_share": image[r, c],
                    "bins_rows": image.shape[0],
                    "bins_keys": image.shape[1],
                    "rows": block.shape[0],
                    "keys": block.shape[1],
                }
            )
        )
    return pd.concat(out, ignore_index=True)


def _image(g: pd.DataFrame) -> np.ndarray:
    image = np.zeros((int(g["bins_rows"].iloc[0]), int(g["bins_keys"].iloc[0])))
    image[g["row_bin"].to_numpy(), g["key_bin"].to_numpy()] = g["kept_share"].to_numpy()
    return image


def draw(out: Output, inputs: Inputs):
    from matplotlib.colors import LogNorm

    d = out.data
    dense = d[d["method"] == "dense"]
    d = d[d["method"] != "dense"]
    methods = list(dict.fromkeys(d["method"]))
    targets = sorted(d["target_sparsity"].unique())
    first = 1 if not dense.empty else 0  # a real head: its dense attention first in each row
    fig, axes = grid(len(methods), len(targets) + first, 2.3, 2.3)
    for r, method in enumerate(methods):
        phase = d.loc[d["method"] == method, "phase"].iloc[0]
        if first:
            ax = axes[r][0]
            image = _image(dense[dense["phase"] == phase])
            floor = max(image[image > 0].min(), image.max() * 1e-4)
            ax.imshow(
                np.maximum(image, floor),
                cmap="magma_r",
                norm=LogNorm(floor, image.max()),
                interpolation="nearest",
                aspect="auto",
            )
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"dense attention ({phase}, log scale)", fontsize=6)
        for c, target in enumerate(targets):
            ax = axes[r][c + first]
            g = d[(d["method"] == method) & (d["target_sparsity"] == target)]
            if g.empty:
                ax.axis("off")
                continue
            ax.imshow(_image(g), cmap="Greys", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"{method} · target {target:g} (kept {1 - g['measured_sparsity'].iloc[0]:.2f})", fontsize=6)
        axes[r][0].set_ylabel("decode step" if phase == "decode" else "query", fontsize=7)
    return fig
