"""The paper's compression levels as target sparsities (defined here only): the levels its grid runs
and the calibration fits (:mod:`sparse_frontier.attention.calibration`, :mod:`sparse_frontier.calibrate`).
No imports, so planning code reads them without loading torch."""

from __future__ import annotations

#: the paper's compression levels (20x ... 1.43x) as target sparsities (Vertical-Slash's ten)
PAPER_SPARSITIES = [0.95, 1 - 1 / 15, 0.9, 1 - 1 / 7.5, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
#: FlexPrefill's (and Block-Sparse's) seven (v1 Table 6): the five sparsest, then 3x and 2x (not 0.7 / 0.6)
FLEXPREFILL_SPARSITIES = PAPER_SPARSITIES[:5] + [1 - 1 / 3, 0.5]
#: what a model's calibration fits for each method: every level of either (a target between two fitted
#: points is interpolated linearly, one outside them calibrates on each call: ``calibration.lookup``)
CALIBRATION_SPARSITIES = sorted(set(PAPER_SPARSITIES) | set(FLEXPREFILL_SPARSITIES), reverse=True)
