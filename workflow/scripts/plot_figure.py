"""Snakemake script: draw one figure (PDF + PNG) and the CSV of exactly what it plots."""

from sparse_frontier.analysis.figures import draw_figure
from sparse_frontier.logs import setup_logging

setup_logging(snakemake.log[0])
draw_figure(
    snakemake.params.figure,
    table_path=snakemake.input.table,
    pdf_path=snakemake.output.pdf,
    png_path=snakemake.output.png,
    csv_path=snakemake.output.data,
)
