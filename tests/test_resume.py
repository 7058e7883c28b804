"""A predict job killed midway resumes: done samples are kept, none is computed or written twice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_tiny_config

from sparse_frontier.config import expand_runs, load_config

BIN = Path(sys.executable).parent
SAMPLES = 40


def cli(*args, cwd, **kwargs):
    return subprocess.Popen(
        [str(BIN / "sparse-frontier"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


@pytest.mark.slow  # a tiny-model engine killed and restarted, ~30 s
def test_killed_predict_job_resumes_without_duplicates(tmp_path, tiny_model):
    config = write_tiny_config(tmp_path, tiny_model, lengths=[512], samples=SAMPLES, max_output_tokens=48, batch_size=1)
    (run,) = expand_runs(load_config(config))
    prepare = cli("prepare", "--config", str(config), run.key.dataset, cwd=tmp_path)
    assert prepare.wait(timeout=300) == 0, prepare.stdout.read()

    partial = tmp_path / (run.key.predictions + ".partial")
    final = tmp_path / run.key.predictions
    job = cli("predict", "--config", str(config), run.key.predictions, cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert job.poll() is None, "the job ended before it could be killed:\n" + job.stdout.read()[-3000:]
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()

    assert not final.exists(), "a final file must only appear when every sample is done"
    before = [json.loads(line) for line in partial.read_text().splitlines()]
    assert 3 <= len(before) < SAMPLES
    with open(partial, "a") as f:
        f.write('{"id": 999, "predic')  # what a kill in the middle of a write leaves

    rerun = cli("predict", "--config", str(config), run.key.predictions, cwd=tmp_path)
    log = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, log[-3000:]
    assert f"{len(before)} already done, {SAMPLES - len(before)} to predict" in log

    rows = [json.loads(line) for line in final.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(SAMPLES))
    # Rows done before the kill are kept exactly as they were (not recomputed: same timings).
    assert all(rows[row["id"]] == row for row in before)
    # The journal stays (a deleted final file is rebuilt from it), repaired: the torn line is gone.
    assert sorted(json.loads(line)["id"] for line in partial.read_text().splitlines()) == list(range(SAMPLES))
