"""Snakemake script: turn an embedded GGUF model into a Hugging Face checkpoint folder."""

from sparse_frontier.logs import setup_logging
from sparse_frontier.models import convert_gguf_to_hf, embedded_gguf

setup_logging(snakemake.log[0])
convert_gguf_to_hf(embedded_gguf(snakemake.wildcards.name), snakemake.output[0])
