"""Snakemake script: score one run's predictions with its task's metric."""

from sparse_frontier.logs import setup_logging
from sparse_frontier.scoring import score_run

setup_logging(snakemake.log[0])
score_run(
    run=snakemake.params.run,
    dataset_path=snakemake.input.dataset,
    predictions_path=snakemake.input.predictions,
    scores_path=snakemake.output.scores,
    summary_path=snakemake.output.summary,
)
