"""Calibrate Vertical-Slash / FlexPrefill on a real model: capture its estimation scores, fit the table.

For each length, a few prompts of a dataset generated for the model go through vLLM once (prefill
only, one output token) with the ``capture_estimation`` method, which writes every global layer's
estimation scores (the ones the methods select from). :func:`calibration.calibrate` then picks, per
target sparsity, the sizes (Vertical-Slash) or alpha/min_budget (FlexPrefill) whose *measured*
density averaged over those prompts and layers is closest to the target -- how the paper's table
was made -- and the entries are written, keyed by (model, method, length, fixed parameters), to a
table that predict jobs read (``SPARSE_FRONTIER_CALIBRATION``), so no run recalibrates.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from sparse_frontier.io import read_jsonl

log = logging.getLogger(__name__)

#: the paper's compression levels (20x ... 1.43x) as target sparsities
PAPER_SPARSITIES = [0.95, 1 - 1 / 15, 0.9, 1 - 1 / 7.5, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
CALIBRATED_METHODS = ("vertical_slash", "flexprefill")


def load_captured(folder: Path, tag: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(vert, slash)`` pairs of every captured (prompt, layer) with this tag (rank 0 of a TP engine
    holds the heads of its shard; every rank's files are used: each is a set of heads)."""
    files = sorted(folder.glob(f"{tag}-layer*.pt"))
    out = []
    for f in files:
        rec = torch.load(f)
        out.append((rec["vert"], rec["slash"]))
    return out


def calibrate_model(
    model_location: str,
    model_name: str,
    datasets: Mapping[int, str],
    output: str,
    engine: Mapping[str, Any],
    *,
    prompts_per_length: int = 4,
    methods: Sequence[str] = CALIBRATED_METHODS,
    sparsities: Sequence[float] = PAPER_SPARSITIES,
    tensor_parallel_size: int = 1,
    yarn_original: int | None = None,
    seed: int = 0,
    work_dir: str | None = None,
) -> list[dict]:
    """Capture on ``prompts_per_length`` prompts of each ``datasets[length]`` and write the entries
    for ``model_name`` to ``output`` (merged with what it holds). Returns the new entries."""
    from sparse_frontier.attention import calibration, get_method_class
    from sparse_frontier.vllm_plugin.engine import Engine

    unknown = [m for m in methods if m not in CALIBRATED_METHODS]
    if unknown:
        raise ValueError(f"cannot calibrate {unknown}: valid are {list(CALIBRATED_METHODS)} (others use a formula)")
    if prompts_per_length < 1:
        raise ValueError(f"prompts_per_length must be >= 1, got {prompts_per_length}")
    probes = {m: get_method_class(m)() for m in methods}  # defaults: the fixed parameters of the grid
    prompts = {}
    for length, path in sorted(datasets.items()):
        samples = read_jsonl(path)[:prompts_per_length]
        if not samples:
            raise ValueError(f"dataset {path} for length {length} has no samples")
        prompts[length] = [s["input_ids"] for s in samples]
    longest = max(len(p) for ps in prompts.values() for p in ps)
    scratch = Path(work_dir or tempfile.mkdtemp(prefix="sf-capture-"))
    scratch.mkdir(parents=True, exist_ok=True)
    eng = Engine(model_location, max_model_len=longest + 1, engine=engine, method={"method": "dense", "params": {}},
                 tensor_parallel_size=tensor_parallel_size, seed=seed, yarn_original=yarn_original)
    entries = []
    try:
        for length, batch in prompts.items():
            sizes = sorted({p.approximation_size for p in probes.values()})
            for size in sizes:
                tag = f"L{length}-a{size}"
                spec = {"method": "capture_estimation",
                        "params": {"out_dir": str(scratch), "approximation_size": size, "tag": tag}}
                eng.generate(batch, 1, seed, method=spec)
            for name, probe in probes.items():
                tag = f"L{length}-a{probe.approximation_size}"
                captured = load_captured(scratch, tag)
                if not captured:
                    raise RuntimeError(f"no estimation scores captured for {tag} in {scratch}: was the plugin active?")
                points = calibration.calibrate(probe, captured, length, sparsities)
                layers = len(captured) // len(batch)
                entries.append({
                    "model": model_name, "method": name, "length": length, "fixed": probe.calibration_key(),
                    "source": f"captured: {len(batch)} prompts x {layers} layer(s) of {model_name} "
                              f"(prompt tokens {min(map(len, batch))}-{max(map(len, batch))})",
                    "points": points,
                })
                log.info("%s %s at %d: %s", model_name, name, length,
                         ", ".join(f"{p['sparsity']:.3f}->{p['params']}" for p in points))
    finally:
        if work_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    calibration.write_entries(entries, Path(output))
    return entries
