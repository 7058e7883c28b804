"""Triton kernels. Each has a plain PyTorch reference in :mod:`sparse_frontier.attention.reference`.

Methods call the kernels on CUDA tensors and their torch paths on CPU (where Triton only runs in
the slow interpreter). ``SPARSE_FRONTIER_KERNELS=triton`` forces the kernels (tests set it with
``TRITON_INTERPRET=1``), ``=torch`` forces the torch paths.
"""

from __future__ import annotations

import os

_CHOICES = ("auto", "triton", "torch")


def use_triton(tensor) -> bool:
    mode = os.environ.get("SPARSE_FRONTIER_KERNELS", "auto")
    if mode not in _CHOICES:
        raise ValueError(f"SPARSE_FRONTIER_KERNELS={mode!r} is invalid; valid: {', '.join(_CHOICES)}")
    if mode == "auto":
        return tensor.is_cuda
    return mode == "triton"
