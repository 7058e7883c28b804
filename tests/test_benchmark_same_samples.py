"""benchmarks/same_samples.py: per-sample agreement of two runs on the samples they share."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASET = "ruler_niah/num_queries~1/length~1024/smollm2-135m"


def scored(results: Path, samples: int, method: str, scores: list[float]) -> None:
    run = results / "scores" / DATASET / f"samples~{samples}+seed~43" / method / "none" / "max_tokens~48"
    run.mkdir(parents=True)
    (run / "scores.jsonl").write_text("".join(json.dumps({"id": i, "score": s}) + "\n" for i, s in enumerate(scores)))


def test_counts_same_scores_on_shared_samples_only(tmp_path):
    """The GPU run's 6 samples against the CPU's first 4: one differs; a sample only one run has and a
    setting only one run scored are left out."""
    gpu, cpu = tmp_path / "gpu", tmp_path / "cpu"
    scored(gpu, 6, "dense", [1, 1, 0, 1, 0, 0])
    scored(gpu, 6, "quest", [1, 0, 0, 0, 0, 0])
    scored(cpu, 4, "dense", [1, 1, 1, 1])
    out = tmp_path / "same.md"
    cmd = [sys.executable, str(REPO / "benchmarks/same_samples.py"), gpu, cpu, "--length", "1024", "--out", out]
    subprocess.run(list(map(str, cmd)), check=True, capture_output=True, text=True)
    text = out.read_text()
    assert "| ruler_niah | num_queries~1 | dense | none | 4 | 3 | 0.750 | 1.000 |" in text
    assert "quest" not in text and "Same score: 3 of 4 shared sample-settings." in text
    none = subprocess.run(
        list(map(str, [sys.executable, REPO / "benchmarks/same_samples.py", gpu, cpu, "--length", "8000"])),
        capture_output=True,
        text=True,
    )
    assert none.returncode != 0 and "share no scored sample at length 8000" in none.stderr
