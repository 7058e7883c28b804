"""The notebook runs top to bottom on a small SYNTHETIC results table and redraws its figure."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from test_analysis_figures import synthetic  # pytest puts tests/ on sys.path

REPO = Path(__file__).resolve().parent.parent


def test_notebook_reproduces_task_comparison(tmp_path, monkeypatch):
    table, _ = synthetic(samples=10)
    table_path = tmp_path / "scores.csv"
    table.to_csv(table_path, index=False)
    monkeypatch.setenv("SCORES_TABLE", str(table_path))
    monkeypatch.setenv("SPARSE_FRONTIER_CONFIG", str(REPO / "config/config.yaml"))
    nb = nbformat.read(REPO / "notebooks/explore_results.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure was drawn
