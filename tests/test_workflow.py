"""The workflow as users run it: dry runs of the shipped configs, lint, format, and a real run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import write_tiny_config

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def snakemake(*args, cwd=REPO, timeout=900):
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    return result.stdout + result.stderr


def expected_jobs(config_name: str) -> dict[str, int]:
    """Job counts a full run of a shipped config must schedule, from the package's own grid."""
    from sparse_frontier.config import expand_runs, load_config
    from sparse_frontier.sweeps import SweepIndex

    config = load_config(REPO / "config" / config_name)
    runs = expand_runs(config)
    jobs = {"generate_dataset": len({r.key.dataset for r in runs}), "predict": len(runs), "score": len(runs)}
    if config["engine"]["methods_per_job"] > 1:  # grouped: a job per chunk, each run's file copied from it
        del jobs["predict"]
        jobs |= {
            "predict_sweep": len(SweepIndex(runs, config["engine"]["methods_per_job"]).sweeps),
            "copy_sweep_predictions": len(runs),
        }
    return jobs


@pytest.mark.parametrize(
    "args, config",
    [
        (["demo", "--configfile", "config/demo.yaml"], "demo.yaml"),
        # the paper grid through the SLURM profile: 1.5-2 min, so in the slow tier (its plain dry run,
        # job by job with resources: tests/test_hpc_dryrun.py)
        pytest.param(
            ["--profile", "profiles/slurm", "all_figures", "--configfile", "config/config.yaml"],
            "config.yaml",
            marks=pytest.mark.slow,
        ),
        (["--profile", "profiles/local", "accuracy_vs_length", "--configfile", "config/demo.yaml"], "demo.yaml"),
    ],
)
def test_dry_runs_of_shipped_configs_and_profiles(tmp_path, args, config):
    out = snakemake(
        "-n",
        "--directory",
        str(tmp_path),
        *[str(REPO / a) if a.startswith(("config/", "profiles/")) else a for a in args],
    )
    jobs = expected_jobs(config)
    assert jobs["score"] > 0
    for rule, count in jobs.items():
        assert any(line.split()[:2] == [rule, str(count)] for line in out.splitlines()), (rule, count, out[-3000:])
    # the demo opens with the frontier (accuracy vs compression per method and task)
    assert ("plot_task_comparison" if "demo" in args else "plot_accuracy_vs_length") in out


def test_demo_target_refuses_the_paper_config(tmp_path):
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "-n",
        "--directory",
        str(tmp_path),
        "demo",
        "--configfile",
        str(REPO / "config/config.yaml"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "config/demo.yaml" in result.stdout + result.stderr


def test_predict_resources_for_slurm(tmp_path):
    """GPUs from tensor parallelism; memory and runtime grow with the attempt."""
    from sparse_frontier.config import expand_runs, load_config
    from sparse_frontier.planning.resources import predict_resources

    runs = {r.key.model: r for r in expand_runs(load_config(REPO / "config/config.yaml"))}
    assert runs["qwen2.5-72b"].gpus == 4 and runs["qwen2.5-7b"].gpus == 1
    first = predict_resources(runs["qwen2.5-32b"].as_dict(), attempt=1)
    second = predict_resources(runs["qwen2.5-32b"].as_dict(), attempt=2)
    assert second["mem_mb"] == 2 * first["mem_mb"] and second["runtime"] == 2 * first["runtime"]


def test_lint_and_format_are_clean():
    lint = subprocess.run([str(BIN / "snakemake"), "--lint", "-n"], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Congratulations" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    for check in (["check", "."], ["format", "--check", "."]):  # configured in pyproject.toml
        ruff = subprocess.run([str(BIN / "ruff"), *check], cwd=REPO, capture_output=True, text=True)
        assert ruff.returncode == 0, f"ruff {' '.join(check)}:\n" + ruff.stdout[-3000:] + ruff.stderr


def test_end_to_end_on_the_vllm_cpu_engine(tmp_path, tiny_model):
    """generate_dataset -> predict (vLLM + plugin) -> score -> collect_scores -> figure, for real."""
    config = write_tiny_config(tmp_path, tiny_model)
    # A dense-only grid on a model without architecture numbers: the table and the figure it supports
    # (the sparse-vs-dense and cost figures are built from synthetic tables in test_analysis_*).
    targets = ["results/tables/scores.csv", "accuracy_vs_length"]
    snakemake(*targets, "--cores", "2", "--directory", str(tmp_path), "--configfile", str(config))
    table = pd.read_csv(tmp_path / "results/tables/scores.csv")
    assert sorted(table["length"]) == [512, 1024]
    assert (table["samples"] == 3).all() and (table["method"] == "dense").all()
    assert table["score"].between(0, 1).all()
    assert (table["sparsity"] == 0).all()
    for pred_file in (tmp_path / "results/predictions").rglob("predictions.jsonl"):
        rows = [json.loads(line) for line in pred_file.read_text().splitlines()]
        assert [r["id"] for r in rows] == [0, 1, 2]
        # The route through the handler was exercised: both layers of the model were seen.
        assert all(r["attention_layers"] == 2 and r["output_tokens"] >= 1 for r in rows)
        assert (pred_file.parent / "predictions.provenance.json").exists()
    for figure in ("accuracy_vs_length.pdf", "accuracy_vs_length.png", "accuracy_vs_length.csv"):
        assert (tmp_path / "results/figures" / figure).stat().st_size > 0
    plotted = pd.read_csv(tmp_path / "results/figures/accuracy_vs_length.csv")
    assert sorted(plotted["length"]) == [512, 1024]
    assert list((tmp_path / "benchmarks/runs/predictions").rglob("*.tsv"))
    assert list((tmp_path / "logs/predictions").rglob("*.log"))
    # Nothing left to do on a second invocation.
    assert "Nothing to be done" in snakemake(*targets, "-n", "--directory", str(tmp_path), "--configfile", str(config))
    # Each figure reads only its runs: a static table plans no run; a run whose summary changed
    # redraws the figures that read it (and reruns nothing upstream), never the static tables; a
    # summary touched with the same content redraws nothing (Snakemake compares checksums).
    where = ("--directory", str(tmp_path), "--configfile", str(config))
    snakemake("table_taxonomy", "--cores", "1", *where)
    summary = next((tmp_path / "results/scores").rglob("summary.json"))
    later = summary.stat().st_mtime + 60
    os.utime(summary, (later, later))
    assert "Nothing to be done" in snakemake("accuracy_vs_length", "-n", *where)
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "score": 1.0}))
    assert "Nothing to be done" in snakemake("table_taxonomy", "-n", *where)
    dry = snakemake("accuracy_vs_length", "-n", *where)
    assert "rule plot_accuracy_vs_length:" in dry
    assert "rule score:" not in dry and "rule predict:" not in dry


@pytest.mark.slow  # a tiny-model engine through Snakemake, then redrawing, ~2 min
def test_a_partial_drawing_is_redrawn_by_a_complete_run(tmp_path, tiny_model):
    """Drawn with figures.allow_missing while a run is unscored, the table and figure record it beside
    them; a later complete run takes the records as inputs, so it scores the run and draws both again
    (an existing output would otherwise hide the unscored run from Snakemake for good)."""
    config = write_tiny_config(tmp_path, tiny_model)
    targets = ["results/tables/scores.csv", "accuracy_vs_length"]
    where = ("--directory", str(tmp_path), "--configfile", str(config))
    snakemake(*targets, "--cores", "2", *where)
    unscored = next((tmp_path / "results/scores").rglob("summary.json")).parent
    shutil.rmtree(unscored)
    partial = (*where, str(REPO / "config/allow-missing.yaml"))
    snakemake(*targets, "--cores", "1", *partial)
    records = [
        tmp_path / "results/tables/scores.missing_runs.json",
        tmp_path / "results/figures/accuracy_vs_length.missing_runs.json",
    ]
    for record in records:
        listed = json.loads(record.read_text())["missing"]
        assert [str(unscored.relative_to(tmp_path) / "summary.json")] == listed
    assert "Nothing to be done" in snakemake(*targets, "-n", *partial)  # the partial drawing stands for itself
    dry = snakemake(*targets, "-n", *where)
    for rule in ("score", "collect_scores", "plot_accuracy_vs_length"):
        assert f"rule {rule}:" in dry, rule
    snakemake(*targets, "--cores", "1", *where)
    assert all(json.loads(record.read_text())["missing"] == [] for record in records)
    assert len(pd.read_csv(tmp_path / "results/tables/scores.csv")) == 2
    assert "Nothing to be done" in snakemake(*targets, "-n", *where)


@pytest.mark.slow  # two tiny-model engines through Snakemake, ~50 s
def test_captured_calibration_feeds_the_sparse_runs(tmp_path, tiny_model):
    """calibration.capture: rule calibrate_attention fits the model's own attention, and the
    Vertical-Slash run reads that table (no per-call calibration); dense runs do not wait for it."""
    import yaml

    config_path = write_tiny_config(tmp_path, tiny_model, lengths=(1024,), samples=2, max_output_tokens=4)
    config = yaml.safe_load(config_path.read_text())
    config["methods"]["vs"] = {"method": "vertical_slash", "params": {"sparsity": 0.5}}
    config["experiments"]["tiny"]["methods"] = ["dense", "vs"]
    config["calibration"] = {"capture": True, "task": "niah", "prompts": 2}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    dry = snakemake("results/tables/scores.csv", "-n", "--directory", str(tmp_path), "--configfile", str(config_path))
    assert any(line.split()[:2] == ["calibrate_attention", "1"] for line in dry.splitlines()), dry[-2000:]
    snakemake(
        "results/tables/scores.csv", "--cores", "2", "--directory", str(tmp_path), "--configfile", str(config_path)
    )
    table = json.loads((tmp_path / "results/calibration/tiny-llama.json").read_text())["entries"]
    # only what the grid's runs look up: no FlexPrefill run here, so no FlexPrefill fit
    assert {(e["method"], e["length"]) for e in table} == {("vertical_slash", 1024)}
    assert all(e["source"].startswith("captured: 2 prompts") for e in table)
    vs_log = next(p.read_text() for p in (tmp_path / "logs/predictions").rglob("*.log") if "/vertical_slash/" in str(p))
    assert "calibrating on each call" not in vs_log  # the table had the model's entry
    scores = pd.read_csv(tmp_path / "results/tables/scores.csv")
    vs = scores[scores["method"] == "vertical_slash"]
    assert len(vs) == 1 and 0.2 < float(vs["sparsity"].iloc[0]) < 0.8  # measured, near the 0.5 target


ENGINE_STARTERS = {"run_predictions", "run_sweep", "capture_head", "calibrate_model"}


def test_scripts_that_start_vllm_run_their_body_only_as_main():
    """vLLM's CUDA engine core is a spawned process that re-imports the job's script as __mp_main__,
    where the snakemake object does not exist: such scripts keep their body under a main guard."""
    import ast

    checked = []
    for path in sorted((REPO / "workflow/scripts").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {a.name for node in tree.body if isinstance(node, ast.ImportFrom) for a in node.names}
        if not imported & ENGINE_STARTERS:
            continue
        checked.append(path.name)
        for node in tree.body:
            guarded = isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
            uses = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert guarded or "snakemake" not in uses, (
                f"{path.name}:{node.lineno} uses snakemake outside the main guard"
            )
    assert set(checked) == {"predict.py", "predict_sweep.py", "capture_attention_head.py", "calibrate_attention.py"}
