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

import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from sparse_frontier.io import read_jsonl

log = logging.getLogger(__name__)

#: the paper's compression levels (20x ... 1.43x) as target sparsities (Vertical-Slash's ten)
PAPER_SPARSITIES = [0.95, 1 - 1 / 15, 0.9, 1 - 1 / 7.5, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
#: FlexPrefill's (and Block-Sparse's) seven (v1 Table 6): the five sparsest, then 3x and 2x
FLEXPREFILL_SPARSITIES = PAPER_SPARSITIES[:5] + [1 - 1 / 3, 0.5]
#: what calibrate_model fits for each method: every level of either (a target between two fitted
#: points is interpolated linearly, one outside them calibrates on each call: calibration.lookup)
CALIBRATION_SPARSITIES = sorted(set(PAPER_SPARSITIES) | set(FLEXPREFILL_SPARSITIES), reverse=True)
CALIBRATED_METHODS = ("vertical_slash", "flexprefill")


def needs_calibration(method: str) -> bool:
    """Whether a method setting (``a`` or ``a+b``) includes a part calibrated from the table."""
    return any(part in CALIBRATED_METHODS for part in method.split("+"))


def calibration_datasets(runs, config: Mapping[str, Any]) -> dict[str, dict[int, str]]:
    """Per model, the dataset of ``config["calibration"]["task"]`` at each length where the model has
    runs of a calibrated method: ``{model: {length: dataset path}}``."""
    name = config["calibration"]["task"]
    if name not in config["tasks"]:
        raise ValueError(f"calibration.task {name!r} is not a task of the config; valid: {sorted(config['tasks'])}")
    task = config["tasks"][name]["task"]
    wanted: dict[str, set[int]] = {}
    datasets: dict[tuple[str, int], str] = {}
    for run in runs:
        k = run.key
        if needs_calibration(k.method):
            wanted.setdefault(k.model, set()).add(k.length)
        if k.task == task:
            datasets.setdefault((k.model, k.length), k.dataset)
    plan = {}
    for model, lengths in wanted.items():
        missing = sorted(length for length in lengths if (model, length) not in datasets)
        if missing:
            raise ValueError(f"calibration.task {name!r} has no dataset for model {model!r} at lengths {missing}: "
                             "the grid must run that task there (or choose another calibration.task)")
        plan[model] = {length: datasets[(model, length)] for length in sorted(lengths)}
    return plan


def use_calibration_table(path) -> None:
    """Point this process and the engine workers it starts at a calibration table (no-op for none)."""
    import os

    if path:
        os.environ["SPARSE_FRONTIER_CALIBRATION"] = str(Path(path if isinstance(path, str) else path[0]).resolve())


def load_captured(folder: Path, tag: str) -> list[tuple[Any, Any]]:
    """``(vert, slash)`` pairs of every captured (prompt, layer) with this tag (rank 0 of a TP engine
    holds the heads of its shard; every rank's files are used: each is a set of heads)."""
    import torch

    files = sorted(folder.glob(f"{tag}-layer*.pt"))
    out = []
    for f in files:
        rec = torch.load(f)
        out.append((rec["vert"], rec["slash"]))
    return out


def _capture(model_location, prompts, max_model_len, engine, tensor_parallel_size, yarn_original, seed, folder,
             sizes) -> None:
    """One engine (in its own process: one per length, as the predict jobs size theirs) capturing the
    estimation scores of ``prompts`` for every approximation size in ``sizes``."""
    from sparse_frontier.vllm_plugin.engine import Engine

    eng = Engine(model_location, max_model_len=max_model_len, engine=engine, method={"method": "dense", "params": {}},
                 tensor_parallel_size=tensor_parallel_size, seed=seed, yarn_original=yarn_original)
    for size in sizes:
        spec = {"method": "capture_estimation", "params": {"out_dir": folder, "approximation_size": size,
                                                           "tag": f"a{size}"}}
        eng.generate(prompts, 1, seed, method=spec)


def calibrate_model(
    model_location: str,
    model_name: str,
    datasets: Mapping[int, str],
    output: str,
    engine: Mapping[str, Any],
    *,
    prompts_per_length: int = 4,
    max_new_tokens: int = 1,
    methods: Sequence[str] = CALIBRATED_METHODS,
    sparsities: Sequence[float] = CALIBRATION_SPARSITIES,
    tensor_parallel_size: int = 1,
    yarn_original: int | None = None,
    seed: int = 0,
    work_dir: str | None = None,
) -> list[dict]:
    """Capture on ``prompts_per_length`` prompts of each ``datasets[length]`` and write the entries
    for ``model_name`` to ``output`` (merged with what it holds). Returns the new entries.

    Each length gets its own engine sized like that length's predict jobs (``max_new_tokens``: their
    output budget), so rope scaling (YaRN factor) and hence attention are the runs' own."""
    from sparse_frontier.attention import calibration, get_method_class

    unknown = [m for m in methods if m not in CALIBRATED_METHODS]
    if unknown:
        raise ValueError(f"cannot calibrate {unknown}: valid are {list(CALIBRATED_METHODS)} (others use a formula)")
    if prompts_per_length < 1:
        raise ValueError(f"prompts_per_length must be >= 1, got {prompts_per_length}")
    probes = {m: get_method_class(m)() for m in methods}  # defaults: the fixed parameters of the grid
    sizes = sorted({p.approximation_size for p in probes.values()})
    scratch = Path(work_dir or tempfile.mkdtemp(prefix="sf-capture-"))
    entries = []
    try:
        for length, path in sorted(datasets.items()):
            batch = [s["input_ids"] for s in read_jsonl(path)[:prompts_per_length]]
            if not batch:
                raise ValueError(f"dataset {path} for length {length} has no samples")
            folder = scratch / f"L{length}"
            if not any(folder.glob("a*-layer*.pt")):  # a rerun keeps what an earlier attempt captured
                folder.mkdir(parents=True, exist_ok=True)
                args = dict(model_location=model_location, prompts=batch,
                            max_model_len=max(length, max(map(len, batch))) + max_new_tokens, engine=dict(engine),
                            tensor_parallel_size=tensor_parallel_size, yarn_original=yarn_original, seed=seed,
                            folder=str(folder), sizes=sizes)
                (folder / "args.json").write_text(json.dumps(args))
                # A fresh interpreter per length (not multiprocessing: a Snakemake script cannot be
                # re-imported by a spawned child); its output goes to this job's log.
                code = "import sys, json; from sparse_frontier.calibrate import _capture; _capture(**json.load(open(sys.argv[1])))"
                done = subprocess.run([sys.executable, "-c", code, str(folder / "args.json")])
                if done.returncode != 0:
                    raise RuntimeError(f"capturing at length {length} failed (exit code {done.returncode}); see the log")
            for name, probe in probes.items():
                captured = load_captured(folder, f"a{probe.approximation_size}")
                if not captured:
                    raise RuntimeError(f"no estimation scores captured in {folder}: was the plugin active?")
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
