"""How the grid's runs become GPU jobs, as the estimate counts them: each run's share of an engine
start, and how many runs share each of its prompts' prefill.

One job per run, or with ``engine.methods_per_job`` N > 1 one job per chunk of at most N runs that
differ only in their method (``sweeps.plan_sweeps``): the chunk starts one engine, and where its
dense-prefill methods share cached prompts (``attention.chunk_shares_prompts``, vLLM's prefix
caching) each prompt's prefill is paid once for those runs of the chunk.
"""

from __future__ import annotations


def prediction_jobs(runs: list, methods_per_job: int = 1) -> dict:
    """Per run key: (its share of an engine start, how many runs share each of its prompts' prefill).
    One job per run: (1, 1). With ``methods_per_job`` N > 1, chunks of k <= N runs: 1/k of the chunk's
    start, and for the chunk's j runs of prompt-sharing settings j each where j >= 2 (one prefill
    for all j), else 1."""
    if methods_per_job <= 1:
        return {r.key: (1.0, 1) for r in runs}
    from sparse_frontier.attention import shares_prompts
    from sparse_frontier.sweeps import plan_sweeps

    jobs = {}
    for sweep in plan_sweeps(runs, methods_per_job):
        k = len(sweep.runs)  # the runs of a chunk are distinct settings of one dataset
        sharing = {r.key for r in sweep.runs if shares_prompts([r.key.method])}
        j = len(sharing)
        jobs.update({r.key: (1.0 / k, j if j > 1 and r.key in sharing else 1) for r in sweep.runs})
    return jobs


def engine_starts(runs: list, methods_per_job: int = 1) -> dict:
    """Engine starts per run key (see :func:`prediction_jobs`)."""
    return {key: start for key, (start, _) in prediction_jobs(runs, methods_per_job).items()}
