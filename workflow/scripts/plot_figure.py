"""Snakemake script: draw one figure (PDF + PNG) or table (markdown) and the CSV of what it shows."""

from sparse_frontier import paths
from sparse_frontier.analysis.figures import build, load_inputs, save
from sparse_frontier.analysis.partial import record_missing_runs
from sparse_frontier.io import read_json
from sparse_frontier.logs import setup_logging

setup_logging(snakemake.log[0])
calibration = {
    paths.parse_path(paths.CALIBRATION, p)["model"]: read_json(p) for p in snakemake.input.get("calibration", [])
}
attention = None
if snakemake.input.get("attention"):  # the real head of figures.patterns (rule capture_attention_head)
    import torch

    attention = torch.load(snakemake.input.attention)
inputs = load_inputs(
    snakemake.config,
    summaries=snakemake.input.get("summaries", []),
    expected=snakemake.params.expected,
    samples=snakemake.params.samples,
    calibration=calibration,
    attention=attention,
)
out = build(snakemake.params.name, inputs)
save(
    out,
    snakemake.params.name,
    data_path=snakemake.output.data,
    pdf_path=snakemake.output.get("pdf"),
    png_path=snakemake.output.get("png"),
    md_path=snakemake.output.get("md"),
)
record_missing_runs(
    snakemake.output.get("pdf") or snakemake.output.data,
    snakemake.params.expected,
    snakemake.input.get("summaries", []),
)
