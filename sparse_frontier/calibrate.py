"""Calibrate Vertical-Slash / FlexPrefill on a real model: capture its estimation scores, fit the table.

For each length, a few prompts of a dataset generated for the model go through vLLM once (prefill
only, one output token) with the ``capture_estimation`` method, which writes every global layer's
estimation scores (the ones the methods select from). :func:`calibration.calibrate` then picks, per
target sparsity, the sizes (Vertical-Slash) or alpha/min_budget (FlexPrefill) whose *measured*
density averaged over those prompts and layers is closest to the target -- how the paper's table
was made -- and the entries are written, keyed by (model, method, length, fixed parameters), to a
table that predict jobs read (``SPARSE_FRONTIER_CALIBRATION``), so no run recalibrates.

The fixed parameters fitted are the methods' defaults and those the model's runs look up
(:func:`calibration_settings`): e.g. Vertical-Slash at ``approximation_size`` 256 and at the 512 that a
task's ``method_defaults`` give its runs, each from the scores captured with that many estimation
queries (one capture per size and length, shared by every setting of that size).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparse_frontier.io import read_jsonl
from sparse_frontier.levels import CALIBRATION_SPARSITIES

log = logging.getLogger(__name__)

CALIBRATED_METHODS = ("vertical_slash", "flexprefill")


def needs_calibration(method: str) -> bool:
    """Whether a method setting (``a`` or ``a+b``) includes a part calibrated from the table."""
    return any(part in CALIBRATED_METHODS for part in method.split("+"))


def table_lookups(method: str, params: Mapping[str, Any]) -> list[tuple[str, dict]]:
    """``(calibrated method, fixed parameters)`` of every calibration-table lookup a run of this
    method setting makes (``params``: its method parameters): each Vertical-Slash / FlexPrefill part
    set by a target sparsity, keyed as its :meth:`calibration_key`. Parts given explicit sizes /
    alpha, or sparsity 0 (dense), look nothing up."""
    from sparse_frontier.attention import get_method_class
    from sparse_frontier.attention.vertical_slash import FlexPrefill, VerticalSlash

    if not needs_calibration(method):
        return []
    inst = get_method_class(method).from_params(dict(params))
    parts = list(getattr(inst, "components", {}).values()) or [inst]
    out = []
    for part in parts:
        if part.name not in CALIBRATED_METHODS or part.sparsity == 0.0:
            continue
        if isinstance(part, VerticalSlash) and part.vertical_size or isinstance(part, FlexPrefill) and part.alpha >= 0:
            continue
        out.append((part.name, part.calibration_key()))
    return out


def calibration_settings(runs) -> dict[str, list[dict[str, Any]]]:
    """Per model, every calibrated setting its runs look up in the table (:func:`table_lookups`) and
    the lengths they run it at: ``{model: [{"method": name, "fixed": calibration_key, "lengths":
    [...]}, ...]}``, what :func:`calibrate_model` fits for it (e.g. Vertical-Slash at
    approximation_size 256, and at 512 where a task's ``method_defaults`` give it; an ablation's
    sizes only at its lengths). Models without such runs are left out."""
    memo: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    found: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for run in runs:
        k = run.key
        if not needs_calibration(k.method):
            continue
        if (k.method, k.method_args) not in memo:
            memo[k.method, k.method_args] = table_lookups(k.method, run.method_params)
        for name, fixed in memo[k.method, k.method_args]:
            setting = found.setdefault(k.model, {}).setdefault(
                (name, json.dumps(fixed, sort_keys=True)), {"method": name, "fixed": fixed, "lengths": set()}
            )
            setting["lengths"].add(k.length)
    return {
        model: [dict(settings[key], lengths=sorted(settings[key]["lengths"])) for key in sorted(settings)]
        for model, settings in found.items()
    }


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
            raise ValueError(
                f"calibration.task {name!r} has no dataset for model {model!r} at lengths {missing}: "
                "the grid must run that task there (or choose another calibration.task)"
            )
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

    # The fit evaluates each candidate setting on every (prompt, layer): thousands of small top-k and
    # index builds, minutes on a CPU at 8k (the capture engine has exited: the GPU is free for them).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    files = sorted(folder.glob(f"{tag}-layer*.pt"))
    out = []
    for f in files:
        rec = torch.load(f, map_location=device)
        out.append((rec["vert"], rec["slash"]))
    return out


def _capture(
    model_location, prompts, max_model_len, engine, tensor_parallel_size, yarn_original, seed, folder, sizes
) -> None:
    """One engine (in its own process: one per length, as the predict jobs size theirs) capturing the
    estimation scores of ``prompts`` for every approximation size in ``sizes`` (files tagged ``a{size}``)."""
    from sparse_frontier.vllm_plugin.engine import Engine

    eng = Engine(
        model_location,
        max_model_len=max_model_len,
        engine=engine,
        method={"method": "dense", "params": {}},
        tensor_parallel_size=tensor_parallel_size,
        seed=seed,
        yarn_original=yarn_original,
    )
    for size in sizes:
        spec = {
            "method": "capture_estimation",
            "params": {"out_dir": folder, "approximation_size": size, "tag": f"a{size}"},
        }
        eng.generate(prompts, 1, seed, method=spec)


def _run_capture(args_file: Path) -> int:
    """:func:`_capture` with the arguments in ``args_file``, in a fresh interpreter (not
    multiprocessing: a Snakemake script cannot be re-imported by a spawned child); its output goes
    to this job's log. Returns the exit code."""
    code = "import sys, json; from sparse_frontier.calibrate import _capture; _capture(**json.load(open(sys.argv[1])))"
    return subprocess.run([sys.executable, "-c", code, str(args_file)]).returncode


def _probes(methods: Sequence[str], settings: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, Any, Any]]:
    """``(method name, instance with the fixed parameters, lengths or None for all)`` to fit: each of
    ``methods`` at its defaults and each of ``settings``, one per table key (lengths joined), sorted by
    approximation size (one size's scores in memory at a time)."""
    from sparse_frontier.attention import get_method_class

    wanted = [{"method": m, "fixed": {}} for m in methods] + list(settings or [])
    unknown = sorted({s["method"] for s in wanted if s["method"] not in CALIBRATED_METHODS})
    if unknown:
        raise ValueError(f"cannot calibrate {unknown}: valid are {list(CALIBRATED_METHODS)} (others use a formula)")
    probes: dict[tuple[str, str], tuple[str, Any, Any]] = {}
    for s in wanted:
        name, fixed = s["method"], dict(s.get("fixed") or {})
        try:
            probe = get_method_class(name).from_params(fixed)
        except ValueError as err:
            raise ValueError(f"calibration setting {name} {fixed}: {err}") from None
        key = (name, json.dumps(probe.calibration_key(), sort_keys=True))
        lengths = None if s.get("lengths") is None else set(s["lengths"])
        if key in probes:
            before = probes[key][2]
            lengths = None if before is None or lengths is None else before | lengths
        probes[key] = (name, probe, lengths)
    return sorted(probes.values(), key=lambda item: item[1].approximation_size)


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
    settings: Sequence[Mapping[str, Any]] | None = None,
    sparsities: Sequence[float] = CALIBRATION_SPARSITIES,
    tensor_parallel_size: int = 1,
    yarn_original: int | None = None,
    seed: int = 0,
    work_dir: str | None = None,
) -> list[dict]:
    """Capture on ``prompts_per_length`` prompts of each ``datasets[length]`` and write the entries
    for ``model_name`` to ``output`` (merged with what it holds). Returns the new entries.

    Fitted: each of ``methods`` at its defaults, and each of ``settings``, ``{"method", "fixed"[,
    "lengths"]}`` (:func:`calibration_settings` of the model's runs: e.g. Vertical-Slash at the
    approximation_size 512 a task's method_defaults give), one entry per setting and length (the
    lengths of ``datasets`` in its ``lengths``; all without). At each length the scores are captured
    once per approximation size and shared by every setting of that size.
    Each length gets its own engine sized like that length's predict jobs (``max_new_tokens``: their
    output budget), so rope scaling (YaRN factor) and hence attention are the runs' own."""
    from sparse_frontier.attention import calibration

    all_probes = _probes(methods, settings)
    if prompts_per_length < 1:
        raise ValueError(f"prompts_per_length must be >= 1, got {prompts_per_length}")
    scratch = Path(work_dir or tempfile.mkdtemp(prefix="sf-capture-"))
    entries = []
    try:
        for length, path in sorted(datasets.items()):
            batch = [s["input_ids"] for s in read_jsonl(path)[:prompts_per_length]]
            if not batch:
                raise ValueError(f"dataset {path} for length {length} has no samples")
            probes = [(name, probe) for name, probe, lengths in all_probes if lengths is None or length in lengths]
            sizes = sorted({probe.approximation_size for _, probe in probes})
            folder = scratch / f"L{length}"
            # a rerun keeps the sizes an earlier attempt captured completely (marked done)
            todo = [size for size in sizes if not (folder / f"a{size}.done").exists()]
            captured, captured_size = None, None
            if todo:
                folder.mkdir(parents=True, exist_ok=True)
                for size in todo:  # a killed attempt's partial files
                    for f in folder.glob(f"a{size}-layer*.pt"):
                        f.unlink()
                args = dict(
                    model_location=model_location,
                    prompts=batch,
                    max_model_len=max(length, max(map(len, batch))) + max_new_tokens,
                    engine=dict(engine),
                    tensor_parallel_size=tensor_parallel_size,
                    yarn_original=yarn_original,
                    seed=seed,
                    folder=str(folder),
                    sizes=todo,
                )
                (folder / "args.json").write_text(json.dumps(args))
                code = _run_capture(folder / "args.json")  # one engine per length, in its own process
                if code != 0:
                    raise RuntimeError(f"capturing at length {length} failed (exit code {code}); see the log")
                for size in todo:
                    (folder / f"a{size}.done").touch()
            for name, probe in probes:
                if probe.approximation_size != captured_size:  # one size's scores in memory at a time
                    captured = None  # (probes are sorted by size)
                    captured, captured_size = (
                        load_captured(folder, f"a{probe.approximation_size}"),
                        probe.approximation_size,
                    )
                if not captured:
                    raise RuntimeError(f"no estimation scores captured in {folder}: was the plugin active?")
                points = calibration.calibrate(probe, captured, length, sparsities)
                layers = len(captured) // len(batch)
                entries.append(
                    {
                        "model": model_name,
                        "method": name,
                        "length": length,
                        "fixed": probe.calibration_key(),
                        "source": f"captured: {len(batch)} prompts x {layers} layer(s) of {model_name} "
                        f"(prompt tokens {min(map(len, batch))}-{max(map(len, batch))})",
                        "points": points,
                    }
                )
                log.info(
                    "%s %s %s at %d: %s",
                    model_name,
                    name,
                    probe.calibration_key(),
                    length,
                    ", ".join(f"{p['sparsity']:.3f}->{p['params']}" for p in points),
                )
    finally:
        if work_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    calibration.write_entries(entries, Path(output))
    return entries
