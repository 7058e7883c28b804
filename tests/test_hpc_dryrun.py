"""The full paper grid dry-runs with the expected jobs and per-job resources; the sbatch line of a 2-GPU job."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from sparse_frontier import paths
from sparse_frontier.config import RunIndex, expand_runs, load_config
from sparse_frontier.planning.resources import predict_resources

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.slow  # a dry run of the paper grid, 1.5 min on 2 cores
def test_full_grid_dry_run_lists_every_job_with_its_resources(tmp_path):
    cmd = [
        str(BIN / "snakemake"),
        "-n",
        "all_figures",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "config/config.yaml"),
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    runs = expand_runs(load_config(REPO / "config/config.yaml"))
    index = RunIndex(runs)
    stats = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}
    assert stats["predict"] == stats["score"] == len(runs) > 10_000
    assert stats["generate_dataset"] == len({r.key.dataset for r in runs})
    assert stats["total"] == sum(v for k, v in stats.items() if k != "total")
    assert stats["plot_accuracy_vs_length"] == 1  # the paper's figures are targets of the grid
    # each predict job asks for its model's tensor-parallel GPUs and the estimated memory and time
    seen = Counter()
    for block in out.split("rule predict:")[1:]:
        output = re.search(r"^\s+output: (\S+)", block, re.M).group(1)
        resources = dict(
            kv.split("=", 1) for kv in re.search(r"^\s+resources: (.+)$", block, re.M).group(1).split(", ")
        )
        run = index.run(paths.parse_path(paths.PREDICTIONS, output))
        expected = predict_resources(run.as_dict(), attempt=1)
        assert int(resources["gpu"]) == run.model["tensor_parallel_size"]
        assert int(resources["mem_mb"]) == expected["mem_mb"] and int(resources["runtime"]) == expected["runtime"]
        seen[run.key.model] += 1
    assert sum(seen.values()) == len(runs)
    assert seen == Counter(r.key.model for r in runs)


class _Resources(dict):
    __getattr__ = dict.__getitem__


def _sbatch_line(resources: dict) -> str:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=_Resources(resources), threads=1, name="predict")
    params = dict(
        run_uuid="ID",
        slurm_logfile="LOG",
        comment_str="rule_predict",
        account=" -A ACCOUNT",
        partition=" -p gpu",
        workdir="/work",
    )
    return get_submit_command(job, params) + set_gres_string(job)


def test_sbatch_line_of_a_two_gpu_predict_job():
    """What profiles/slurm makes of qwen2.5-32b (tensor_parallel_size 2) at 128k: docs/hpc.md shows it."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    config = load_config(REPO / "config/config.yaml")
    run = next(r for r in expand_runs(config) if r.key.model == "qwen2.5-32b" and r.key.length == 128000)
    resources = dict(predict_resources(run.as_dict(), attempt=1), gpu=run.gpus, **profile["set-resources"]["predict"])
    line = _sbatch_line(dict(resources, gpu_model="h100"))
    assert run.gpus == 2 and "--gpus=h100:2" in line
    assert f"--mem {resources['mem_mb']}" in line and f"-t {resources['runtime']}" in line
    assert "--cpus-per-gpu=8" in line and "--ntasks" not in line  # one task; vLLM spawns the TP workers
    line = _sbatch_line(dict(resources, gpu=None, gres="gpu:h100:2"))  # sites that want --gres instead
    assert "--gres=gpu:h100:2" in line and "--gpus" not in line
