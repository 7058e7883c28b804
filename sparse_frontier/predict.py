"""Prediction jobs: read a dataset, generate with vLLM through the plugin, append rows as they finish.

The engine reads prompts (token ids) from the dataset file and never imports task code. A killed
job resumes: finished samples are in the journal ``<output>.partial`` and are skipped on the rerun
(which also rebuilds a deleted final file without predicting again; io.ResumableJsonl). Every row
records the digest of its dataset file, so rows of a regenerated or foreign dataset are never reused
or scored. A job holds the journal's lock for its life: a job left running by a killed Snakemake and
its rerun never write one journal together.

``run_predictions`` is one run per engine (rule ``predict``); ``run_sweep`` serves several runs of
one dataset, differing only in their method, with one engine (rule ``predict_sweep``,
``engine.methods_per_job``; sparse_frontier/sweeps.py), each run in its own resumable file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sparse_frontier import paths
from sparse_frontier.io import (
    CorruptFileError,
    ResumableJsonl,
    file_digest,
    read_json,
    read_jsonl,
    write_json_atomic,
    write_provenance,
    write_text_atomic,
)

log = logging.getLogger(__name__)


def _read_samples(dataset_path: str, key: Mapping[str, Any]) -> tuple[list[dict], str]:
    """The dataset's samples and its digest (recorded in every row, checked by scoring)."""
    samples = read_jsonl(dataset_path)
    if len(samples) != key["samples"]:
        raise ValueError(
            f"{dataset_path} has {len(samples)} samples, the run expects {key['samples']}: the file is "
            "incomplete or from another config; delete it and rerun to regenerate it"
        )
    return samples, file_digest(dataset_path)


def method_spec(run: Mapping[str, Any]) -> dict[str, Any]:
    """The plugin's setting for a run (engine default or per-request ``extra_args``)."""
    key = run["key"]
    return {"method": key["method"], "params": dict(run["method_params"]), "model": key["model"]}


def _start_engine(run: Mapping[str, Any], samples: list[dict], model_location: str, others: Sequence[Mapping] = ()):
    """One engine for ``run``'s dataset (runs of one sweep share every argument but the method;
    ``others``: the sweep's other runs)."""
    from sparse_frontier.vllm_plugin.engine import Engine

    key = run["key"]
    longest = max(s["prompt_tokens"] for s in samples)
    return Engine(
        model_location,
        max_model_len=max(key["length"], longest) + key["max_tokens"],
        engine=run["engine"],
        method=method_spec(run),
        tensor_parallel_size=run["model"]["tensor_parallel_size"],
        seed=key["seed"],
        yarn_original=run["model"].get("yarn_original_max_position_embeddings"),
        request_methods=[method_spec(r) for r in others],
    )


def _row(sample: Mapping[str, Any], gen, concurrency: int, seconds: float, digest: str) -> dict[str, Any]:
    return {
        "id": sample["id"],
        # which dataset file the prompt came from: scoring refuses rows of another dataset
        "dataset_digest": digest,
        "prediction": gen.text,
        "output_tokens": gen.output_tokens,
        "finish_reason": gen.finish_reason,
        "prompt_tokens": sample["prompt_tokens"],
        # Measured by the attention handler for this request, averaged the paper's way
        # (over heads, then layers; decode also over steps).
        "sparsity": gen.attention["sparsity"],
        "prefill_sparsity": gen.attention["prefill_sparsity"],
        "decode_sparsity": gen.attention["decode_sparsity"],
        "kv_sparsity": gen.attention["kv_sparsity"],
        "attention_layers": gen.attention["layers"],
        # sequences vLLM ran at once (engine.batch_size) and when this answer came, counted from
        # the start of the job's generation (n answers / the n-th's time = the job's throughput)
        "concurrency": concurrency,
        "finished_after_s": round(seconds, 4),
    }


def run_predictions(
    run: Mapping[str, Any],
    dataset_path: str,
    model_location: str,
    output: str,
) -> None:
    """Predict every sample of ``dataset_path`` into ``output`` for ``run`` (see ``Run.as_dict``)."""
    key = run["key"]
    samples, digest = _read_samples(dataset_path, key)
    store = ResumableJsonl(output)
    with store.exclusive():  # one writer per journal, e.g. against a job a killed Snakemake left running
        done = store.load(digest)
        todo = [s for s in samples if s["id"] not in done]
        log.info("%s: %d samples, %d already done, %d to predict", output, len(samples), len(done), len(todo))
        if todo:
            engine = _start_engine(run, samples, model_location)
            progress = tqdm(total=len(todo), desc="predict", disable=None)
            start = time.perf_counter()
            # every answer is appended as it finishes: a killed job loses only the requests in flight
            requests = ((s["input_ids"], None) for s in todo)
            for index, gen in engine.stream(requests, key["max_tokens"], key["seed"]):
                seconds = time.perf_counter() - start
                store.append([_row(todo[index], gen, engine.max_num_seqs, seconds, digest)])
                progress.update(1)
            progress.close()
        write_provenance(output, dict(run))
        store.finalise([s["id"] for s in samples], digest)
    log.info("wrote %s", output)


def _adopt(run: Mapping[str, Any], store: ResumableJsonl, ids: list, digest: str) -> bool:
    """Take over the run's finished per-run predictions file (from before grouping was switched on)."""
    source = Path(paths.PREDICTIONS.format(**run["key"]))
    if not _is_final_for(source, ids, digest):
        return False
    source_provenance = Path(paths.provenance_path(str(source)))
    provenance = read_json(source_provenance) if source_provenance.exists() else {"config": dict(run)}
    _write_with_provenance(str(store.final), source.read_text(), dict(provenance, adopted_from=str(source)))
    log.info("%s: adopted the finished %s", store.final, source)
    return True


def _is_final_for(path: Path, ids: list, digest: str) -> bool:
    """Whether ``path`` is a finished predictions file of exactly these samples of this dataset."""
    if not path.exists():
        return False
    try:
        rows = read_jsonl(path)
    except CorruptFileError as err:
        log.warning("%s; predicting again", err)
        return False
    return [r.get("id") for r in rows] == ids and all(r.get("dataset_digest", digest) == digest for r in rows)


def run_sweep(runs: Sequence[Mapping[str, Any]], dataset_path: str, model_location: str, manifest: str) -> None:
    """Predict every sample for each of ``runs`` (one dataset, methods differing) with one engine.

    Each run's rows go to its ``paths.SWEEP_PREDICTIONS`` file (``.partial`` while incomplete), so
    what any earlier sweep finished, whatever its chunk, is skipped. Work is ordered run by run and
    batched across runs: a batch may mix methods, each request carrying its own. ``manifest`` (the
    job's declared output) lists the runs' files once all of them are final.
    """
    if not runs:
        raise ValueError("a sweep needs at least one run")
    first = runs[0]["key"]
    for run in runs[1:]:
        if any(run["key"][k] != first[k] for k in paths.RunKey.GROUP_FIELDS):
            raise ValueError(f"sweep runs must differ only in their method: {run['key']} vs {first}")
    samples, digest = _read_samples(dataset_path, first)
    ids = [s["id"] for s in samples]
    stores = [ResumableJsonl(paths.SWEEP_PREDICTIONS.format(**run["key"])) for run in runs]
    with ExitStack() as locks:
        # one writer per journal; taken in path order so two sweeps sharing runs cannot deadlock
        for store in sorted(stores, key=lambda s: str(s.final)):
            locks.enter_context(store.exclusive())
        _predict_sweep(runs, stores, samples, digest, model_location, manifest)
    listing = [
        {"key": dict(run["key"]), "predictions": str(store.final), "samples": len(ids)}
        for run, store in zip(runs, stores)
    ]
    write_provenance(manifest, {"runs": [dict(run) for run in runs]})
    write_json_atomic(manifest, {"runs": listing})
    log.info("wrote %s (%d runs)", manifest, len(runs))


def _predict_sweep(runs, stores, samples, digest: str, model_location: str, manifest: str) -> None:
    first = runs[0]["key"]
    ids = [s["id"] for s in samples]
    todo: list[tuple[int, dict]] = []  # (index of the run, sample)
    remaining = [0] * len(runs)
    for index, (run, store) in enumerate(zip(runs, stores)):
        if _is_final_for(store.final, ids, digest) or _adopt(run, store, ids, digest):
            log.info("%s: finished earlier", store.final)
            continue
        done = store.load(digest)
        missing = [s for s in samples if s["id"] not in done]
        log.info("%s: %d samples, %d already done, %d to predict", store.final, len(samples), len(done), len(missing))
        todo += [(index, s) for s in missing]
        remaining[index] = len(missing)
        if not missing:
            _finalise(run, store, ids, manifest, digest)
    if todo:
        engine = _start_engine(runs[0], samples, model_location, runs[1:])
        specs = [method_spec(run) for run in runs]
        if engine.shares_prompts:  # each prompt's KV computed once for every run sharing it
            longest = max(s["prompt_tokens"] for s in samples)
            window = engine.prompts_cached_beside_batch(longest, first["max_tokens"])
            log.info("shared prompts: windows of %d samples (prompts the KV cache holds beside a batch)", window)
            todo = shared_prompt_order(todo, samples, window)
        progress = tqdm(total=len(todo), desc="sweep", disable=None)
        start = time.perf_counter()
        requests = ((s["input_ids"], specs[i]) for i, s in todo)
        for position, gen in engine.stream(requests, first["max_tokens"], first["seed"]):
            index, sample = todo[position]
            stores[index].append([_row(sample, gen, engine.max_num_seqs, time.perf_counter() - start, digest)])
            remaining[index] -= 1
            if remaining[index] == 0:
                _finalise(runs[index], stores[index], ids, manifest, digest)
            progress.update(1)
        progress.close()


def shared_prompt_order(todo: list[tuple[int, dict]], samples: list[dict], window: int) -> list[tuple[int, dict]]:
    """The order of a sweep's ``(run index, sample)`` requests when its runs share cached prompts:
    windows of ``window`` samples, in each all of a run's requests, run by run (the sweep lists the
    prompt-sharing runs first). A window's prompts stay in vLLM's prefix cache while its runs pass over
    them, and a batch then holds few methods: the handler splits a batch into one backend call per
    contiguous run of requests it leaves to the backend, so requests interleaved sample by sample
    (every method of a sample in turn) cost tens of calls per layer. A killed job also leaves whole
    runs done rather than every run part-done."""
    order = {s["id"]: i for i, s in enumerate(samples)}
    return sorted(todo, key=lambda item: (order[item[1]["id"]] // window, item[0], order[item[1]["id"]]))


def _finalise(run: Mapping[str, Any], store: ResumableJsonl, ids: list, manifest: str, digest: str) -> None:
    write_provenance(store.final, dict(run, sweep=manifest))
    store.finalise(ids, digest)
    log.info("wrote %s", store.final)


def copy_sweep_predictions(source: str, output: str, manifest: str, log_file: str | None = None) -> None:
    """A grouped run's predictions file: the sweep's rows for the run, with their provenance
    (``log_file``: a line saying what was copied from where)."""
    listed = {entry["predictions"] for entry in read_json(manifest)["runs"]}
    if source not in listed or not Path(source).exists():
        raise FileNotFoundError(f"{source} is not a finished file of the sweep {manifest}")
    provenance = read_json(paths.provenance_path(source))
    _write_with_provenance(output, Path(source).read_text(), dict(provenance, copied_from=source, sweep=manifest))
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        Path(log_file).write_text(f"copied {source} (sweep {manifest}) -> {output}\n")


def _write_with_provenance(output: str, text: str, provenance: Mapping[str, Any]) -> None:
    """A predictions file copied from elsewhere: provenance first, then the rows (both atomic)."""
    write_json_atomic(paths.provenance_path(output), provenance)
    write_text_atomic(output, text)
