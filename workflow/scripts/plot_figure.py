"""Snakemake script: draw one figure (PDF + PNG) or table (markdown) and the CSV of what it shows."""

from sparse_frontier.analysis.figures import build, load_inputs, save
from sparse_frontier.logs import setup_logging

setup_logging(snakemake.log[0])
inputs = load_inputs(
    snakemake.config,
    table_path=snakemake.input.get("table"),
    samples_path=snakemake.input.get("samples"),
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
