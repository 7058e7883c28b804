"""Pattern visualisation (v3 Fig 1): the query-key pairs each method keeps, computed by the method's
own code (its mask builder, page selection or KV selection; :mod:`sparse_frontier.analysis.masks`)
on a small example with the structure real heads have, at several sparsities. Prefill panels show
queries x keys, decode panels decode steps x context keys; each pixel is the share of pairs kept in
its bin (the example's 1024 tokens pooled to 128 bins a side).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparse_frontier.analysis.figures.common import Inputs, Output, fixed, grid

SPARSITIES = (0.5, 0.7, 0.9)
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

    rows = []
    for m in pattern_masks(SPARSITIES):
        image = pooled(m.mask)
        q, k = np.nonzero(image)
        rows.append(pd.DataFrame({"method": m.method, "phase": m.phase, "target_sparsity": m.target_sparsity,
                                  "measured_sparsity": m.measured_sparsity, "row_bin": q, "key_bin": k,
                                  "kept_share": image[q, k], "bins_rows": image.shape[0], "bins_keys": image.shape[1],
                                  "rows": m.mask.shape[0], "keys": m.mask.shape[1]}))
    return Output(pd.concat(rows, ignore_index=True))


def draw(out: Output, inputs: Inputs):
    d = out.data
    methods = list(dict.fromkeys(d["method"]))
    targets = sorted(d["target_sparsity"].unique())
    fig, axes = grid(len(methods), len(targets), 2.3, 2.3)
    for r, method in enumerate(methods):
        for c, target in enumerate(targets):
            ax = axes[r][c]
            g = d[(d["method"] == method) & (d["target_sparsity"] == target)]
            if g.empty:
                ax.axis("off")
                continue
            image = np.zeros((int(g["bins_rows"].iloc[0]), int(g["bins_keys"].iloc[0])))
            image[g["row_bin"].to_numpy(), g["key_bin"].to_numpy()] = g["kept_share"].to_numpy()
            ax.imshow(image, cmap="Greys", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"{method} · target {target:g} (kept {1 - g['measured_sparsity'].iloc[0]:.2f})", fontsize=6)
        phase = d.loc[d["method"] == method, "phase"].iloc[0]
        axes[r][0].set_ylabel("decode step" if phase == "decode" else "query", fontsize=7)
    return fig
