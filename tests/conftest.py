"""Shared fixtures: a tiny random-weight model, the SmolLM2 tokenizer, tiny workflow configs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# vLLM CPU settings that were fastest on small machines; set before anything imports vLLM.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton kernels run in the interpreter on CPU machines; decided before any module decorates them
# (the order test modules are imported in must not matter). GPU runs compile them for the device.
if not os.environ.get("CUDA_VISIBLE_DEVICES") and not Path("/dev/nvidia0").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Folder of a 2-layer random-weight Llama with its own BPE tokenizer and chat template."""
    from helpers import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's tokenizer, read straight from the embedded GGUF (no conversion needed)."""
    from transformers import AutoTokenizer

    from sparse_frontier.models import embedded_gguf

    gguf = embedded_gguf("smollm2-135m-instruct")
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="session")
def paper():
    """config/config.yaml validated as Snakemake validates it (schema defaults filled in)."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    return config


@pytest.fixture(scope="session")
def runs(paper):
    """Every run of the paper grid."""
    from sparse_frontier.config import expand_runs

    return expand_runs(paper)
