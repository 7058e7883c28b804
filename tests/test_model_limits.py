"""Context length and architecture read from the model's own checkpoint (issue #15, item 6).

Checkpoints are config.json files written here (shapes of the paper's models) or the embedded GGUF's
header: no download, no conversion."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from sparse_frontier.config import expand_runs

REPO = Path(__file__).resolve().parent.parent
SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")
SMOLLM2 = {"layers": 30, "hidden": 576, "heads": 9, "kv_heads": 3, "head_dim": 64, "mlp": 1536, "vocabulary": 49152}

# The checkpoints' config.json as published (the keys that matter here).
QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "sliding_window": 131072,
    "use_sliding_window": False,
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "tie_word_embeddings": False,
}
LLAMA31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
}
# Gemma 3 nests the language model in text_config and leaves Gemma3TextConfig's defaults out
# (heads 8, kv heads 4, head dim 256, vocabulary 262208, 131072 positions, 5 of 6 layers sliding).
GEMMA3_4B = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "text_config": {
        "model_type": "gemma3_text",
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_hidden_layers": 34,
        "sliding_window": 1024,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    },
    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152},
}


def load(name: str) -> dict:
    config = yaml.safe_load((REPO / "config" / name).read_text())
    validate(config, SCHEMA)  # fills defaults, as the Snakefile does
    return config


def checkpoint(folder: Path, cfg: dict, tokenizer_max: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if tokenizer_max is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": tokenizer_max}))
    return folder


def tiny_llama(max_position_embeddings: int = 2048) -> dict:
    return {
        "model_type": "llama",
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "vocab_size": 512,
        "max_position_embeddings": max_position_embeddings,
        "tie_word_embeddings": True,
    }


def grid(model: dict, lengths, max_output_tokens: int = 64) -> dict:
    """The demo config with one model ``tiny`` and one experiment over ``lengths``."""
    config = load("demo.yaml")
    config["models"] = {"tiny": dict(model)}
    config["experiments"] = {
        "e": {
            "models": ["tiny"],
            "tasks": ["niah"],
            "methods": ["dense"],
            "lengths": list(lengths),
            "samples": 1,
            "seeds": [43],
            "max_output_tokens": max_output_tokens,
        }
    }
    return config


@pytest.fixture(autouse=True)
def no_converted_model(tmp_path, monkeypatch):
    """Run where no embedded model was converted (its GGUF is then read) and no HF cache exists."""
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_a_length_beyond_the_checkpoint_is_refused_naming_model_file_and_valid_lengths(tmp_path):
    folder = checkpoint(tmp_path / "tiny", tiny_llama(2048))
    config = grid({"source": str(folder)}, [1024, 4096])  # no max_position_embeddings in the config
    with pytest.raises(ValueError) as err:
        expand_runs(config)
    message = str(err.value)
    assert "length 4096 + max_output_tokens 64 = 4160 tokens exceeds model 'tiny'" in message
    assert f"max_position_embeddings in {folder / 'config.json'}" in message
    assert "use lengths up to 1984 (of the lengths asked for, 1024 fit)" in message
    assert "yarn_original_max_position_embeddings: 2048" in message  # the fix, for a plain-rope model
    assert "VLLM_ALLOW_LONG_MAX_MODEL_LEN" not in message
    assert {r.key.length for r in expand_runs(grid({"source": str(folder)}, [1024, 1984]))} == {1024, 1984}


def test_the_yarn_override_allows_up_to_four_times_the_native_context(tmp_path):
    folder = checkpoint(tmp_path / "tiny", tiny_llama(2048))
    model = {"source": str(folder), "yarn_original_max_position_embeddings": 2048}
    assert {r.key.length for r in expand_runs(grid(model, [4096, 8128]))} == {4096, 8128}
    with pytest.raises(
        ValueError,
        match=r"8192 \+ max_output_tokens 64 .*exceeds model 'tiny' \(context 8192 "
        r"tokens: YaRN up to 4 x yarn_original_max_position_embeddings 2048\)",
    ):
        expand_runs(grid(model, [8192]))
    # the override names the native context: another value would scale the rope wrongly
    with pytest.raises(
        ValueError,
        match=r"yarn_original_max_position_embeddings 1024 must be the model's native "
        r"context, 2048 \(max_position_embeddings in .*config.json\)",
    ):
        expand_runs(grid(dict(model, yarn_original_max_position_embeddings=1024), [1024]))


def test_config_max_position_embeddings_is_the_fallback_and_must_agree_with_the_checkpoint(tmp_path):
    folder = checkpoint(tmp_path / "tiny", tiny_llama(2048))
    with pytest.raises(
        ValueError,
        match=r"max_position_embeddings 4096 in the config disagrees with the "
        r"checkpoint's 2048 .*delete the key",
    ):
        expand_runs(grid({"source": str(folder), "max_position_embeddings": 4096}, [1024]))
    # a hub model not on this machine: the config's value is the limit (no download at planning)
    absent = {"source": "someone/not-downloaded", "max_position_embeddings": 2048}
    with pytest.raises(
        ValueError,
        match=r"exceeds model 'tiny' \(context 2048 tokens: "
        r"models.tiny.max_position_embeddings in the config\)",
    ):
        expand_runs(grid(absent, [4096]))
    # ... and without it the length is left to the dataset job
    assert len(expand_runs(grid({"source": "someone/not-downloaded"}, [4096]))) == 1


def test_a_hub_model_is_read_from_the_local_cache(tmp_path):
    snapshot = tmp_path / "hf-cache/models--org--tiny/snapshots/0123abc"
    checkpoint(snapshot, tiny_llama(2048))
    (tmp_path / "hf-cache/models--org--tiny/refs").mkdir(parents=True)
    (tmp_path / "hf-cache/models--org--tiny/refs/main").write_text("0123abc")
    with pytest.raises(ValueError, match=f"context 2048 tokens: max_position_embeddings in {snapshot}/config.json"):
        expand_runs(grid({"source": "org/tiny"}, [4096]))


def test_the_tokenizers_model_max_length_also_bounds_the_context(tmp_path):
    folder = checkpoint(tmp_path / "tiny", tiny_llama(4096), tokenizer_max=2048)  # vLLM takes the smaller
    with pytest.raises(ValueError, match=r"context 2048 tokens: model_max_length in .*tokenizer_config.json"):
        expand_runs(grid({"source": str(folder)}, [4096]))


def test_a_drifting_architecture_block_is_refused_naming_model_field_and_both_values(tmp_path):
    from sparse_frontier.models import checkpoint_limits

    folder = checkpoint(tmp_path / "tiny", tiny_llama(2048))
    block = dict(checkpoint_limits({"source": str(folder)}).architecture)
    assert block == {
        "layers": 2,
        "hidden": 128,
        "heads": 2,
        "kv_heads": 1,
        "head_dim": 64,
        "mlp": 256,
        "vocabulary": 512,
        "params": 2 * (128 * (2 * 128 + 2 * 64) + 3 * 128 * 256 + 2 * 128) + 512 * 128 + 128,
    }
    assert len(expand_runs(grid({"source": str(folder), "architecture": block}, [1024]))) == 1
    drift = dict(block, kv_heads=2, layers=3)
    with pytest.raises(ValueError) as err:
        expand_runs(grid({"source": str(folder), "architecture": drift}, [1024]))
    assert str(err.value) == (
        f"model 'tiny': the config's architecture block disagrees with the checkpoint {folder / 'config.json'}: "
        "layers: config 3, checkpoint 2 (num_hidden_layers); kv_heads: config 2, checkpoint 1 "
        "(num_key_value_heads). Correct the block or delete it (the checkpoint's numbers are then used)"
    )
    with pytest.raises(ValueError, match=r"sliding_window: config 64, checkpoint \(none\)"):
        expand_runs(
            grid({"source": str(folder), "architecture": dict(block, sliding_window=64, global_every=2)}, [1024])
        )


def test_a_missing_block_is_taken_from_the_checkpoint_for_resource_planning(tmp_path):
    from sparse_frontier.models import model_architecture
    from sparse_frontier.planning.resources import predict_resources

    folder = checkpoint(tmp_path / "qwen", QWEN25_7B)
    paper = load("config.yaml")
    given = paper["models"]["qwen2.5-7b"]
    model = {k: v for k, v in given.items() if k != "architecture"} | {"source": str(folder), "name": "q"}
    arch = model_architecture(model)
    # the paper's hand-written block, params computed from the shapes (7.6B, Qwen's q/k/v biases included)
    assert arch.get("sliding_window") is None and given["architecture"]["global_every"] == 1  # all layers global
    assert {k: arch[k] for k in arch if k != "params"} == {
        k: v for k, v in given["architecture"].items() if k not in ("params", "global_every")
    }
    assert arch["params"] == pytest.approx(given["architecture"]["params"], rel=0.002)
    run = {
        "key": {"length": 16384, "max_tokens": 1024, "samples": 100},
        "engine": dict(paper["engine"]),
        "model": model,
    }
    assert predict_resources(run, 1) == predict_resources(dict(run, model=dict(model, architecture=arch)), 1)
    # not on this machine and no block: no numbers (resources fall back to a flat estimate)
    assert model_architecture({"source": "someone/not-downloaded"}) is None


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma3_text"])
def test_params_computed_from_the_shapes_equal_the_models_own_count(kind):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sparse_frontier.models import limits_from_config

    shapes = dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=300,
        tie_word_embeddings=kind != "llama",
    )
    config = AutoConfig.for_model(kind, **shapes)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    limits = limits_from_config(json.loads(config.to_json_string()), "config.json")
    assert limits.architecture["params"] == sum(p.numel() for p in model.parameters())


def test_paper_checkpoints_agree_with_the_paper_config_and_its_lengths(tmp_path):
    paper = load("config.yaml")
    for name, cfg in (("qwen2.5-7b", QWEN25_7B), ("llama3.1-8b", LLAMA31_8B), ("gemma3-4b", GEMMA3_4B)):
        paper["models"][name]["source"] = str(checkpoint(tmp_path / name, cfg))
    assert expand_runs(paper)  # blocks, max_position_embeddings and the YaRN key all agree; 128k fits
    qwen = paper["models"]["qwen2.5-7b"]
    # 128000 + 1024 tokens need YaRN factor 3.94 <= 4; a 131072-token prompt would need more
    with pytest.raises(
        ValueError,
        match=r"131072 \+ max_output_tokens 1024 = 132096 tokens exceeds model 'tiny' "
        r"\(context 131072 tokens: YaRN up to 4 x",
    ):
        expand_runs(grid(qwen, [131072], 1024))
    # Llama 3.1's rope is already scaled (llama3): 131072 positions as they are, no YaRN on top
    llama = paper["models"]["llama3.1-8b"]
    with pytest.raises(
        ValueError,
        match=r"exceeds model 'tiny' \(context 131072 tokens: max_position_embeddings "
        r"in .*llama3.1-8b/config.json\); use lengths up to 130048 \(none of the lengths asked for fits\)$",
    ):
        expand_runs(grid(llama, [131072], 1024))
    with pytest.raises(ValueError, match=r"already scales its rope \(llama3"):
        expand_runs(grid(dict(llama, yarn_original_max_position_embeddings=131072), [1024]))
    # Gemma 3: text_config with its defaults; 5 of 6 layers slide over 1024 tokens
    from sparse_frontier.models import checkpoint_limits

    gemma = checkpoint_limits(paper["models"]["gemma3-4b"])
    assert gemma.context_length == 131072 and gemma.rope_type == "linear"
    assert {k: v for k, v in gemma.architecture.items() if k != "params"} == {
        k: v for k, v in paper["models"]["gemma3-4b"]["architecture"].items() if k != "params"
    }
    wrong = copy.deepcopy(paper["models"]["gemma3-4b"])
    wrong["architecture"]["global_every"] = 4
    with pytest.raises(ValueError, match=r"global_every: config 4, checkpoint 6 \(layer_types\)"):
        expand_runs(grid(wrong, [1024]))


def test_the_embedded_gguf_gives_smollm2s_context_and_architecture_without_conversion():
    from sparse_frontier.models import checkpoint_limits, embedded_gguf

    limits = checkpoint_limits({"source": "embedded:smollm2-135m-instruct"})
    assert limits.source == str(embedded_gguf("smollm2-135m-instruct"))
    assert (limits.context_length, limits.positions_key, limits.rope_type) == (8192, "llama.context_length", "default")
    assert {k: v for k, v in limits.architecture.items() if k != "params"} == SMOLLM2
    assert limits.architecture["params"] == 134_515_008  # tied embeddings: no output.weight in the GGUF
    demo = load("demo.yaml")
    assert "max_position_embeddings" not in demo["models"]["smollm2-135m"]  # the checkpoint says it
    assert expand_runs(demo)
    demo["experiments"]["demo"]["lengths"] = [2048, 8192]
    with pytest.raises(
        ValueError,
        match=r"exceeds model 'smollm2-135m' \(context 8192 tokens: llama.context_length "
        r"in .*SmolLM2-135M-Instruct.Q4_1.gguf\); use lengths up to 8144 \(of the "
        r"lengths asked for, 2048 fit\)",
    ):
        expand_runs(demo)


def test_the_gguf_header_reads_as_the_converted_config_json_will():
    """Conversion saves transformers' config of the GGUF: the same numbers, so planning before and
    after conversion agree."""
    from transformers import AutoConfig

    from sparse_frontier.models import checkpoint_limits, embedded_gguf, limits_from_config

    gguf = embedded_gguf("smollm2-135m-instruct")
    converted = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).to_dict()
    ours = checkpoint_limits({"source": "embedded:smollm2-135m-instruct"})
    theirs = limits_from_config(converted, "config.json")
    assert (theirs.positions, theirs.rope_type, dict(theirs.architecture)) == (
        ours.positions,
        ours.rope_type,
        dict(ours.architecture),
    )


def test_dataset_generation_refuses_a_length_the_model_cannot_hold_before_generating(tmp_path):
    from sparse_frontier.tasks.generate import generate_dataset

    folder = checkpoint(tmp_path / "tiny", tiny_llama(2048))
    output = tmp_path / "dataset.jsonl"
    model = {"source": str(folder), "name": "tiny"}
    args = dict(task_name="ruler_niah", task_params={}, tokenizer=None, samples=1, seed=43, output=str(output))
    with pytest.raises(
        ValueError,
        match=r"dataset of model 'tiny': length 4096 \+ max_output_tokens 0 = 4096 "
        rf"tokens exceeds model 'tiny' \(context 2048 tokens: max_position_embeddings "
        rf"in {folder}/config.json\); use lengths up to 2048",
    ):
        generate_dataset(length=4096, provenance={"model": model}, **args)  # the model as the script passes it
    with pytest.raises(ValueError, match=r"2000 \+ max_output_tokens 64 = 2064 tokens exceeds"):
        generate_dataset(length=2000, model=model, max_tokens=64, **args)
    assert not output.exists()
