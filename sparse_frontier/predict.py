"""One predict job: read a dataset, generate with vLLM through the plugin, append rows as they finish.

The engine reads prompts (token ids) from the dataset file and never imports task code. A killed
job resumes: finished samples are in ``<output>.partial`` and are skipped on the rerun.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from tqdm import tqdm

from sparse_frontier.io import ResumableJsonl, iter_chunks, read_jsonl, write_provenance

log = logging.getLogger(__name__)


def run_predictions(
    run: Mapping[str, Any],
    dataset_path: str,
    model_location: str,
    output: str,
) -> None:
    """Predict every sample of ``dataset_path`` into ``output`` for ``run`` (see ``Run.as_dict``)."""
    key = run["key"]
    engine_cfg = run["engine"]
    samples = read_jsonl(dataset_path)
    if len(samples) != key["samples"]:
        raise ValueError(f"{dataset_path} has {len(samples)} samples, the run expects {key['samples']}")
    store = ResumableJsonl(output)
    done = store.load()
    todo = [s for s in samples if s["id"] not in done]
    log.info("%s: %d samples, %d already done, %d to predict", output, len(samples), len(done), len(todo))
    if todo:
        from sparse_frontier.vllm_plugin.engine import Engine

        longest = max(s["prompt_tokens"] for s in samples)
        engine = Engine(
            model_location,
            max_model_len=max(key["length"], longest) + key["max_tokens"],
            engine=engine_cfg,
            method={"method": key["method"], "params": run["method_params"], "model": key["model"]},
            tensor_parallel_size=run["model"]["tensor_parallel_size"],
            seed=key["seed"],
            yarn_original=run["model"].get("yarn_original_max_position_embeddings"),
        )
        progress = tqdm(total=len(todo), desc="predict", disable=None)
        for batch in iter_chunks(todo, engine_cfg["batch_size"]):
            start = time.perf_counter()
            generations = engine.generate([s["input_ids"] for s in batch], key["max_tokens"], key["seed"])
            elapsed = time.perf_counter() - start
            store.append(
                {
                    "id": sample["id"],
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
                    "batch_size": len(batch),
                    "batch_seconds": round(elapsed, 4),
                }
                for sample, gen in zip(batch, generations)
            )
            progress.update(len(batch))
        progress.close()
    write_provenance(output, dict(run))
    store.finalise([s["id"] for s in samples])
    log.info("wrote %s", output)
