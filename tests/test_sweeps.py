"""Grouped prediction (engine.methods_per_job): runs differing only in their method share one engine.

Chunking (pure), the DAG it gives (dry run), a killed sweep resuming under another chunking (one
engine start each on the tiny model), and, slow, a grouped run equal to an ungrouped one.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import write_tiny_config

from sparse_frontier import paths
from sparse_frontier.config import expand_runs, load_config
from sparse_frontier.sweeps import SweepIndex, plan_sweeps, sweep_resources

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
METHODS = {
    "dense": {"method": "dense"},
    "quest": {"method": "quest", "params": {"sparsity": 0.8, "page_size": 16}},
    "vs": {"method": "vertical_slash", "params": {"sparsity": 0.7}},
}


def grouped_config(directory, model, methods_per_job, methods=METHODS, experiments=None, **kwargs):
    """The tiny config of tests/helpers.py with several methods and engine.methods_per_job (its
    experiment takes every method not named snap; ``experiments`` are added)."""
    path = write_tiny_config(directory, model, **kwargs)
    config = yaml.safe_load(path.read_text())
    config["engine"]["methods_per_job"] = methods_per_job
    config["methods"] = methods
    config["experiments"]["tiny"]["methods"] = [m for m in methods if m != "snap"]
    config["experiments"].update(experiments or {})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def chunks(config_path):
    config = load_config(config_path)
    return SweepIndex(expand_runs(config), config["engine"]["methods_per_job"])


def names(sweep):
    return [(r.key.method, r.key.method_args) for r in sweep.runs]


# -- chunking ------------------------------------------------------------------------------------
SIX = {
    "dense": {"method": "dense"},
    "q1": {"method": "quest", "params": {"sparsity": 0.5}},
    "q2": {"method": "quest", "params": {"sparsity": 0.7}},
    "q3": {"method": "quest", "params": {"sparsity": 0.9}},
    "vs": {"method": "vertical_slash", "params": {"sparsity": 0.7}},
    "snap": {"method": "snapkv", "params": {"sparsity": 0.7}},
}
SHORT = {
    "models": ["tiny-llama"],
    "tasks": ["niah"],
    "methods": ["q2", "dense", "snap"],
    "lengths": [512],
    "samples": 3,
    "seeds": [43],
    "max_output_tokens": 8,
}


def test_chunks_follow_the_config_method_order_and_cover_every_run_once(tmp_path):
    config = grouped_config(tmp_path, "model", 2, methods=SIX, experiments={"short": SHORT})
    index = chunks(config)
    runs = expand_runs(load_config(config))
    assert sorted(r.key.predictions for s in index.sweeps for r in s.runs) == sorted(r.key.predictions for r in runs)
    by_length = {}
    for sweep in index.sweeps:
        assert 1 <= len(sweep.runs) <= 2 and len({r.key.group_key() for r in sweep.runs}) == 1
        by_length.setdefault(sweep.runs[0].key.length, []).append([r.key.method for r in sweep.runs])
    # experiment tiny's order (dense q1 q2 q3 vs), then what experiment short adds (snap) at 512
    assert by_length[1024] == [["dense", "quest"], ["quest", "quest"], ["vertical_slash"]]
    assert by_length[512] == [["dense", "quest"], ["quest", "quest"], ["vertical_slash", "snapkv"]]
    first_512 = [s for s in index.sweeps if s.runs[0].key.length == 512]
    assert [r.method_params.get("sparsity") for s in first_512 for r in s.runs][1:4] == [0.5, 0.7, 0.9]
    # the manifest's wildcards lead back to the sweep; each run knows its sweep
    for sweep in index.sweeps:
        assert index.sweep(paths.parse_path(paths.SWEEP, sweep.manifest)) is sweep
        assert all(index.of_run(r.key) is sweep for r in sweep.runs)
    # stable: planning again gives the same chunks and ids
    assert [s.manifest for s in chunks(config).sweeps] == [s.manifest for s in index.sweeps]
    # one method per job: one sweep per run
    assert len(plan_sweeps(runs, 1)) == len(runs)


def test_chunk_keys_do_not_depend_on_unrelated_runs(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    alone = grouped_config(tmp_path / "a", "model", 2, methods=SIX, lengths=[1024])
    crowded = grouped_config(
        tmp_path / "b",
        "model",
        2,
        methods=SIX,
        lengths=[1024],
        experiments={"short": SHORT, "other": dict(SHORT, lengths=[2048], methods=["vs"])},
    )
    before = {s.manifest: names(s) for s in chunks(alone).sweeps}
    after = {s.manifest: names(s) for s in chunks(crowded).sweeps}
    assert before and all(after[m] == methods for m, methods in before.items())


def test_methods_per_job_is_scheduling_not_part_of_the_run(tmp_path):
    one = grouped_config(tmp_path, "model", 1)
    runs = expand_runs(load_config(one))
    assert all("methods_per_job" not in r.as_dict()["engine"] for r in runs)
    config = load_config(grouped_config(tmp_path, "model", 3))
    assert [r.as_dict() for r in expand_runs(config)] == [r.as_dict() for r in runs]
    with pytest.raises(ValueError, match="methods_per_job"):
        plan_sweeps(runs, 0)


def test_sweep_resources_add_up_the_runs(tmp_path):
    from sparse_frontier.planning.resources import predict_resources

    (sweep, *_) = chunks(grouped_config(tmp_path, "model", 3, lengths=[512])).sweeps
    per_run = [predict_resources(r.as_dict(), 2) for r in sweep.runs]
    assert [r.key.method for r in sweep.runs] == ["dense", "quest", "vertical_slash"]  # one engine for all three
    assert sweep_resources(sweep, 2) == {
        "mem_mb": max(r["mem_mb"] for r in per_run),
        "runtime": sum(r["runtime"] for r in per_run),
        "threads": max(r["threads"] for r in per_run),
    }


# -- the workflow --------------------------------------------------------------------------------
def snakemake(*args, cwd=REPO, timeout=900):
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    return result.stdout + result.stderr


def job_counts(out):
    """The job table of a dry run: rule -> count."""
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


# 3 methods x 2 lengths; dense and Quest (which share cached prompts) first in each dataset's chunks
@pytest.mark.parametrize("methods_per_job, sweeps", [(1, 0), (2, 4), (3, 2)])
def test_dry_run_groups_methods_into_sweep_jobs(tmp_path, methods_per_job, sweeps):
    config = grouped_config(tmp_path, tmp_path / "model", methods_per_job)  # 2 lengths x 3 methods
    counts = job_counts(snakemake("-n", "--directory", str(tmp_path), "--configfile", str(config)))
    assert counts["score"] == 6 and counts["generate_dataset"] == 2
    if methods_per_job == 1:
        assert counts["predict"] == 6 and "predict_sweep" not in counts
    else:
        # one engine job per chunk; no per-run engine job, only local copies
        assert "predict" not in counts
        assert counts["predict_sweep"] == sweeps and counts["copy_sweep_predictions"] == 6


def test_lint_with_grouping(tmp_path):
    overlay = tmp_path / "grouped.yaml"
    overlay.write_text("engine:\n  methods_per_job: 8\n")
    lint = subprocess.run(
        [str(BIN / "snakemake"), "--lint", "-n", "--configfile", "config/config.yaml", str(overlay)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert "Congratulations" in lint.stdout + lint.stderr, lint.stdout[-3000:] + lint.stderr[-3000:]


# -- a real sweep on the vLLM CPU engine ---------------------------------------------------------
SAMPLES = 8


def cli(*args, cwd, **kwargs):
    return subprocess.Popen(
        [str(BIN / "sparse-frontier"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


SHARING = {
    "dense": {"method": "dense"},
    "quest": METHODS["quest"],
    "quest_half": {"method": "quest", "params": {"sparsity": 0.5, "page_size": 16}},
}


@pytest.mark.slow  # engines killed and restarted, ~25 s
def test_killed_sweep_resumes_under_another_chunking(tmp_path, tiny_model):
    """Kill a sweep of three dense-prefill methods (prefix caching on: run by run, the samples' prompts
    held in the cache) midway through its second run; rerun as a 2-method chunk: what was done is
    kept, nothing is recomputed or written twice."""
    kwargs = dict(lengths=[512], samples=SAMPLES, max_output_tokens=24, batch_size=1)
    config3 = grouped_config(tmp_path, tiny_model, 3, methods=SHARING, **kwargs)
    (sweep,) = chunks(config3).sweeps
    dense, quest, half = sweep.runs
    prepare = cli("prepare", "--config", str(config3), dense.key.dataset, cwd=tmp_path)
    assert prepare.wait(timeout=300) == 0, prepare.stdout.read()

    partials = [tmp_path / (r.key.sweep_predictions + ".partial") for r in sweep.runs]
    finals = [tmp_path / r.key.sweep_predictions for r in sweep.runs]
    job = cli("sweep", "--config", str(config3), sweep.manifest, cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:
        if partials[1].exists() and len(partials[1].read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert job.poll() is None, "the sweep ended before it could be killed:\n" + job.stdout.read()[-3000:]
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()

    assert not (tmp_path / sweep.manifest).exists()
    # run by run: the first run is final, the second part-done, the third not begun
    assert finals[0].exists() and not finals[1].exists() and not finals[2].exists()
    dense_rows, quest_rows = rows(finals[0]), rows(partials[1])
    assert [r["id"] for r in dense_rows] == list(range(SAMPLES)) and 2 <= len(quest_rows) < SAMPLES
    assert not partials[2].exists() or not partials[2].read_text().strip()
    with open(partials[1], "a") as f:
        f.write('{"id": 999, "predic')  # what a kill in the middle of a write leaves

    # Re-chunked: two methods per job, so dense + quest are one (new) sweep, quest_half another.
    (tmp_path / "two").mkdir()
    config2 = grouped_config(tmp_path / "two", tiny_model, 2, methods=SHARING, **kwargs)
    first, second = chunks(config2).sweeps
    assert names(first) == names(sweep)[:2] and first.manifest != sweep.manifest
    rerun = cli("sweep", "--config", str(config2), first.manifest, cwd=tmp_path)
    log = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, log[-3000:]
    assert f"{dense.key.sweep_predictions}: finished earlier" in log
    assert f"{quest.key.sweep_predictions}: {SAMPLES} samples, {len(quest_rows)} already done" in log
    assert log.count("starting vLLM") == 1

    assert rows(finals[0]) == dense_rows, "a finished run is not touched"
    done = rows(finals[1])
    assert [r["id"] for r in done] == list(range(SAMPLES))
    assert all(done[r["id"]] == r for r in quest_rows), "rows done before the kill are kept as they were"
    manifest = json.loads((tmp_path / first.manifest).read_text())
    assert [e["predictions"] for e in manifest["runs"]] == [dense.key.sweep_predictions, quest.key.sweep_predictions]
    assert not finals[2].exists()


@pytest.mark.slow
def test_grouped_run_equals_ungrouped_and_starts_one_engine(tmp_path, tiny_model):
    """Three methods, batches of 2 mixing them: the same texts and sparsity as one job per run. Dense,
    Quest and Vertical-Slash form one sweep: dense and Quest share cached prompts (prefix caching),
    while Vertical-Slash's requests, salted apart, compute their whole prompts (the handler refuses a
    sparse prefill on cached tokens, so a leak would fail the job)."""
    grouped_dir, plain_dir = tmp_path / "grouped", tmp_path / "plain"
    grouped_dir.mkdir(), plain_dir.mkdir()
    grouped = grouped_config(grouped_dir, tiny_model, 3, lengths=[512])
    plain = grouped_config(plain_dir, tiny_model, 1, lengths=[512])
    runs = expand_runs(load_config(grouped))
    targets = [r.key.predictions for r in runs]

    snakemake(
        "results/tables/scores.csv", "--cores", "2", "--directory", str(grouped_dir), "--configfile", str(grouped)
    )
    sweeps = chunks(grouped).sweeps
    assert [[r.key.method for r in s.runs] for s in sweeps] == [["dense", "quest", "vertical_slash"]]
    sweep_log = (grouped_dir / paths.log_path(paths.SWEEP).format(**sweeps[0].wildcards())).read_text()
    assert sweep_log.count("starting vLLM") == 1 and "'enable_prefix_caching': True" in sweep_log
    assert not list((grouped_dir / "logs/predictions").rglob("*.log")) or all(
        "starting vLLM" not in p.read_text() for p in (grouped_dir / "logs/predictions").rglob("*.log")
    )
    snakemake(*targets, "--cores", "2", "--directory", str(plain_dir), "--configfile", str(plain))

    for run in runs:
        ours, theirs = rows(grouped_dir / run.key.predictions), rows(plain_dir / run.key.predictions)
        assert [r["id"] for r in ours] == [0, 1, 2]
        for a, b in zip(ours, theirs):
            for field in ("prediction", "output_tokens", "sparsity", "prefill_sparsity", "decode_sparsity"):
                assert a[field] == b[field], (run.key.method, a["id"], field)
        provenance = json.loads((grouped_dir / paths.provenance_path(run.key.predictions)).read_text())
        sweep = next(s for s in sweeps if run.key in [r.key for r in s.runs])
        assert provenance["copied_from"] == run.key.sweep_predictions and provenance["sweep"] == sweep.manifest
    assert any(
        r["sparsity"] > 0 for run in runs if run.key.method != "dense" for r in rows(grouped_dir / run.key.predictions)
    )
    assert "Nothing to be done" in snakemake(
        "results/tables/scores.csv", "-n", "--directory", str(grouped_dir), "--configfile", str(grouped)
    )

    # Grouping switched on over finished per-run files: the sweep adopts them, no engine starts.
    regrouped = grouped_config(plain_dir, tiny_model, 3, lengths=[512])
    before = {t: (plain_dir / t).read_text() for t in targets}
    snakemake(*targets, "--cores", "2", "--directory", str(plain_dir), "--configfile", str(regrouped))
    logs = [(plain_dir / paths.log_path(paths.SWEEP).format(**s.wildcards())).read_text() for s in sweeps]
    assert not any("starting vLLM" in text for text in logs) and sum(t.count("adopted the finished") for t in logs) == 3
    assert {t: (plain_dir / t).read_text() for t in targets} == before


def test_shared_prompt_order_goes_run_by_run_in_windows_of_cached_samples():
    from sparse_frontier.predict import shared_prompt_order

    samples = [{"id": i} for i in (7, 3, 5, 1)]  # the dataset's order, not the ids' order
    todo = [(run, s) for s in samples for run in range(3)]  # as a sample-by-sample feed would come
    order = lambda window: [(run, s["id"]) for run, s in shared_prompt_order(todo, samples, window)]  # noqa: E731
    assert order(4) == [(r, i) for r in range(3) for i in (7, 3, 5, 1)]  # every sample cached: run by run
    assert order(2) == [(r, i) for r in range(3) for i in (7, 3)] + [(r, i) for r in range(3) for i in (5, 1)]
    assert order(1) == [(r, i) for i in (7, 3, 5, 1) for r in range(3)]  # one prompt at a time: sample by sample


def test_prompt_window_is_what_half_the_kv_cache_holds_beside_a_batch():
    from types import SimpleNamespace

    from sparse_frontier.vllm_plugin.engine import Engine

    def engine(blocks, seqs=8):
        cache = SimpleNamespace(num_gpu_blocks=blocks, block_size=16)
        config = SimpleNamespace(cache_config=cache)
        stub = Engine.__new__(Engine)  # no vLLM: only the cache's size is read
        stub.llm, stub.max_num_seqs = SimpleNamespace(llm_engine=SimpleNamespace(vllm_config=config)), seqs
        return stub

    # 2 x 100,000 tokens of cache: 100,000 - 8 x (1,000 + 48) = 91,616 spare -> 91 prompts of 1,000
    assert engine(12_500).prompts_cached_beside_batch(1000, 48) == 91
    assert engine(100).prompts_cached_beside_batch(1000, 48) == 1  # a batch fills it: one sample at a time
    assert engine(None).prompts_cached_beside_batch(1000, 48) == 1  # size unknown
