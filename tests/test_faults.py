"""Faults on the real driver (issue #15): kill -9 the Snakemake process while `predict` runs, unlock as
Snakemake's message advises, rerun. The job the killed Snakemake left running and the rerun's job
never write one journal together: the rerun waits for the orphan, then finds its work done; the
final file is complete, each sample predicted once, and the scores equal an uninterrupted run's."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import write_tiny_config
from test_workflow import BIN, REPO, snakemake

from sparse_frontier.config import expand_runs, load_config

pytestmark = pytest.mark.slow
SAMPLES = 30
TIMINGS = ("finished_after_s",)  # wall-clock fields: the only ones two runs may differ in


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_orphan_writer_of_a_killed_snakemake(tmp_path):
    from helpers import build_tiny_llama

    model = build_tiny_llama(tmp_path / "model")
    directories = {}
    for name in ("killed", "uninterrupted"):
        directories[name] = tmp_path / name
        directories[name].mkdir()
        config = write_tiny_config(
            directories[name], model, lengths=[512], samples=SAMPLES, max_output_tokens=48, batch_size=1
        )
    (run,) = expand_runs(load_config(config))
    where = lambda name: ("--directory", str(directories[name]), "--configfile", str(directories[name] / "tiny.yaml"))  # noqa: E731

    snakemake(run.key.dataset, "--cores", "1", *where("killed"))
    journal = directories["killed"] / (run.key.predictions + ".partial")
    cmd = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        run.key.summary,
        "--cores",
        "1",
        *where("killed"),
    ]
    with open(tmp_path / "driver.log", "w") as out:  # a file, not a pipe: the orphan keeps writing to it
        driver = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline and driver.poll() is None:
            if journal.exists() and len(journal.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        assert driver.poll() is None, "the job ended before its driver could be killed"
        os.kill(driver.pid, signal.SIGKILL)  # the driver only: its predict job lives on, as on SLURM
        driver.wait()
    orphans = subprocess.run(["pgrep", "-f", r"\.predict\.py"], capture_output=True, text=True).stdout.split()
    assert orphans, "the predict job should outlive its killed driver"
    # Hold the orphan still until the rerun's job has started, so the two overlap however fast the
    # tiny model is (on a cluster the orphan has hours left).
    for pid in orphans:
        os.kill(int(pid), signal.SIGSTOP)

    snakemake("--unlock", *where("killed"))
    # --rerun-incomplete, as Snakemake advises for the file its killed run left marked incomplete
    rerun_cmd = [*cmd, "--rerun-incomplete"]
    rule_log = lambda: "".join(p.read_text() for p in (directories["killed"] / "logs/predictions").rglob("*.log"))  # noqa: E731
    with open(tmp_path / "rerun.log", "w") as out:
        rerun = subprocess.Popen(rerun_cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline and rerun.poll() is None and "is being written by another job" not in rule_log():
            time.sleep(0.2)
        for pid in orphans:
            os.kill(int(pid), signal.SIGCONT)
        assert rerun.wait(timeout=900) == 0, (tmp_path / "rerun.log").read_text()[-4000:]
    text = rule_log()
    assert "is being written by another job (pid" in text, text[-3000:]
    assert f"{SAMPLES} already done, 0 to predict" in text, text[-3000:]

    final = directories["killed"] / run.key.predictions
    predicted = rows(final)
    assert [r["id"] for r in predicted] == list(range(SAMPLES))
    written = [r["id"] for r in rows(journal)]
    assert sorted(written) == list(range(SAMPLES)), "every sample predicted exactly once, by one writer"

    snakemake(run.key.summary, "--cores", "1", *where("uninterrupted"))
    reference = rows(directories["uninterrupted"] / run.key.predictions)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMINGS} for r in rs]  # noqa: E731
    assert strip(predicted) == strip(reference)
    scores = [(directories[n] / run.key.scores).read_bytes() for n in ("killed", "uninterrupted")]
    assert scores[0] == scores[1]

    # A dataset cut mid-line (a copy interrupted): Snakemake reruns predict, deleting its output first.
    # The job fails naming the file and the line, in its rule log; the journal keeps every row, so
    # once the dataset is regenerated (byte-identical) nothing is predicted again.
    killed = directories["killed"]
    dataset = killed / run.key.dataset
    good = dataset.read_bytes()
    dataset.write_bytes(good[: len(good) * 2 // 3])
    failed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert failed.returncode != 0
    text = rule_log()
    assert "job failed: CorruptFileError" in text and f"{run.key.dataset}, line " in text, text[-3000:]
    assert "not valid JSON" in text and "delete it and rerun" in text
    assert sorted(r["id"] for r in rows(journal)) == list(range(SAMPLES))
    dataset.unlink()
    # the scores are intact, so the predictions file is asked for by name (Snakemake deleted it)
    snakemake(run.key.predictions, run.key.summary, "--cores", "1", *where("killed"))
    assert dataset.read_bytes() == good
    assert f"{SAMPLES} already done, 0 to predict" in rule_log()
    assert (killed / run.key.scores).read_bytes() == scores[1]
