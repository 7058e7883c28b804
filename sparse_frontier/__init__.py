"""sparse_frontier: measure what training-free sparse attention does to real LLMs.

The package holds all logic (tasks, attention methods, the vLLM plugin, scoring, analysis);
the Snakemake workflow in the repository root only calls into it.
"""

__version__ = "0.1.0"
