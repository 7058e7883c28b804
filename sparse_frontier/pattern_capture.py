"""One real attention head for the pattern figure: a model's queries, keys and values on a prompt.

The pattern figure (``pattern_masks``) shows the query-key pairs each sparse method keeps, computed
by the method's own code (:mod:`sparse_frontier.analysis.masks`). With ``figures.patterns`` set in
the config, it draws them on a real head: rule ``capture_attention_head`` runs one prompt of a
dataset through vLLM with the ``capture_qkv`` method (attention stays dense), which records one
layer's queries, keys and values after rotary embedding, exactly as the attention backend receives
them, and this module keeps one query head with its kv head. A tensor-parallel engine's ranks hold
slices of the heads; their records are joined in rank order first.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sparse_frontier import paths
from sparse_frontier.io import read_jsonl

log = logging.getLogger(__name__)


def pattern_source(config: Mapping[str, Any], runs) -> dict[str, Any] | None:
    """Where the pattern figure's real head comes from (``figures.patterns``), or None (toy head):
    ``{"wildcards": the capture's path wildcards, "path": its file, "run": a run of that dataset}``.
    The dataset must be one the grid generates (that task at that length for that model)."""
    from sparse_frontier.config import ConfigError, resolve_task

    wanted = (config.get("figures") or {}).get("patterns")
    if not wanted:
        return None
    where = "figures.patterns"
    if wanted["task"] not in config["tasks"]:
        raise ConfigError(
            f"{where}.task {wanted['task']!r} is not a task of the config; valid: {', '.join(sorted(config['tasks']))}"
        )
    task, task_params = resolve_task(config["tasks"][wanted["task"]])
    task_args = paths.format_args(task_params)
    of_task = [r for r in runs if r.key.task == task and r.key.task_args == task_args]
    matching = [r for r in of_task if r.key.model == wanted["model"] and r.key.length == wanted["length"]]
    if not matching:
        have = sorted({(r.key.model, r.key.length) for r in of_task})
        valid = ", ".join(f"{m} at {n}" for m, n in have) or "none (the task is in no experiment)"
        raise ConfigError(
            f"{where}: no run of task {wanted['task']!r} for model {wanted['model']!r} at length "
            f"{wanted['length']}; the grid has it for: {valid}"
        )
    run = matching[0]
    if wanted.get("sample", 0) >= run.key.samples:
        raise ConfigError(
            f"{where}.sample {wanted['sample']} is not a sample of that dataset: valid are 0..{run.key.samples - 1}"
        )
    wildcards = run.key.dataset_wildcards()
    wildcards |= {"layer": wanted["layer"], "head": wanted.get("head", 0), "sample": wanted.get("sample", 0)}
    return {"wildcards": wildcards, "path": paths.ATTENTION_HEAD.format(**wildcards), "run": run}


def join_ranks(records: list[dict]) -> dict[str, Any]:
    """One layer's captured query / key / value of every rank, heads joined in rank order."""
    import torch

    if not records:
        raise ValueError("nothing was captured")
    records = sorted(records, key=lambda r: r["rank"])
    return {name: torch.cat([r[name] for r in records], dim=1) for name in ("query", "key", "value")} | {
        "scale": records[0]["scale"],
        "layer": records[0]["layer"],
    }


def select_head(captured: Mapping[str, Any], head: int) -> dict[str, Any]:
    """Query head ``head`` and the kv head it reads (grouped-query attention: ``head // group``)."""
    hq, hkv = captured["query"].shape[1], captured["key"].shape[1]
    if not 0 <= head < hq:
        raise ValueError(
            f"figures.patterns.head {head} is not a query head of layer {captured['layer']}: valid are 0..{hq - 1}"
        )
    kv = head // (hq // hkv)
    return {
        "query": captured["query"][:, head : head + 1].clone(),
        "key": captured["key"][:, kv : kv + 1].clone(),
        "value": captured["value"][:, kv : kv + 1].clone(),
        "scale": float(captured["scale"]),
        "layer": int(captured["layer"]),
        "head": head,
        "kv_head": kv,
        "query_heads": hq,
        "kv_heads": hkv,
    }


def capture_head(
    model_location: str,
    dataset_path: str,
    output: str,
    engine: Mapping[str, Any],
    *,
    layer: int,
    head: int,
    sample: int = 0,
    max_model_len: int,
    tensor_parallel_size: int = 1,
    yarn_original: int | None = None,
    seed: int = 0,
    model_name: str = "",
) -> None:
    """Capture layer ``layer`` on sample ``sample`` of ``dataset_path`` and write query head ``head``
    with its kv head (``[tokens, 1, head_dim]`` each) and provenance to ``output`` (atomically)."""
    import torch

    from sparse_frontier.vllm_plugin.engine import Engine

    samples = read_jsonl(dataset_path)
    if not 0 <= sample < len(samples):
        raise ValueError(f"figures.patterns.sample {sample} is not in {dataset_path} ({len(samples)} samples)")
    prompt = samples[sample]["input_ids"]
    with tempfile.TemporaryDirectory(prefix="sf-qkv-") as folder:
        eng = Engine(
            model_location,
            max_model_len=max_model_len,
            engine=engine,
            method={"method": "dense", "params": {}},
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            yarn_original=yarn_original,
        )
        spec = {"method": "capture_qkv", "params": {"out_dir": folder, "layer": layer, "tag": "qkv"}}
        eng.generate([prompt], 1, seed, method=spec)
        files = sorted(Path(folder).glob("qkv-layer*.pt"))
        if not files:
            raise ValueError(
                f"figures.patterns.layer {layer} was not captured: it is not a global attention "
                "layer of the model (layers count from 0; sliding-window layers are not handed to the plugin)"
            )
        captured = join_ranks([torch.load(f) for f in files])
    if captured["query"].shape[0] != len(prompt):
        raise RuntimeError(
            f"captured {captured['query'].shape[0]} tokens for a prompt of {len(prompt)}: "
            "the prefill was split (prefix caching or chunked prefill on?)"
        )
    record = select_head(captured, head) | {
        "model": model_name or model_location,
        "dataset": dataset_path,
        "sample_id": samples[sample]["id"],
        "prompt_tokens": len(prompt),
    }
    tmp = Path(output + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, tmp)
    tmp.replace(output)
    log.info(
        "captured layer %d head %d (kv head %d) on %d tokens of %s -> %s",
        layer,
        head,
        record["kv_head"],
        len(prompt),
        dataset_path,
        output,
    )
