"""The target sparsities calibrated: the paper's compression levels (defined here only)."""

from __future__ import annotations

#: the paper's compression levels (20x ... 1.43x) as target sparsities (Vertical-Slash's ten)
PAPER_SPARSITIES = [0.95, 1 - 1 / 15, 0.9, 1 - 1 / 7.5, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
#: FlexPrefill's (and Block-Sparse's) seven (v1 Table 6): the five sparsest, then 3x and 2x (not 0.7 / 0.6)
FLEXPREFILL_SPARSITIES = PAPER_SPARSITIES[:5] + [1 - 1 / 3, 0.5]
#: what a model's calibration fits for each method: every level of either (a target between two fitted
#: points is interpolated linearly, one outside them calibrates on each call: ``table.lookup``)
CALIBRATION_SPARSITIES = sorted(set(PAPER_SPARSITIES) | set(FLEXPREFILL_SPARSITIES), reverse=True)
