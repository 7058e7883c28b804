"""Shared fixtures: a tiny random-weight model, the SmolLM2 tokenizer, tiny workflow configs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# vLLM CPU settings that were fastest on small machines; set before anything imports vLLM.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton kernels run in the interpreter where no CUDA device is visible; decided here, before any test
# module decorates them (the order test modules are imported in must not matter). Triton reads the
# variable at decoration, so on a GPU machine the kernels stay compiled (test_kernels_gpu.py checks).
# device_count asks NVML, not the CUDA runtime, so forking (vLLM's workers) stays safe.
if torch.cuda.device_count() == 0:
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


@pytest.fixture(autouse=True)
def _registries_restored():
    """Methods and tasks a test registers (the docs' example, the plugin's test methods) are dropped
    after it, so a test that lists every registered method passes in any order."""
    from sparse_frontier.attention.registry import METHODS
    from sparse_frontier.tasks.registry import TASKS

    saved = [(registry, registry.snapshot()) for registry in (METHODS, TASKS)]
    yield
    for registry, snapshot in saved:
        registry.restore(snapshot)
