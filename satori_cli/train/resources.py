"""Roughly what a recipe will need of the GPUs found (`satori_cli.gpus`).

The estimate is deliberately coarse: it exists to stop a run that cannot fit before minutes of
model loading, not to predict the peak to the gigabyte. Its inputs are read, not guessed: the
parameter count and shapes come from the model's `config.json` (a local folder, or a hub id's
cached or downloaded config), and the recipe's batch, sequence and completion lengths set the
activations, the logits and the generation's KV cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satori_cli.errors import SatoriError
from satori_cli.gpus import Gpu

GIB = 1024**3
QWEN2_VOCAB = 151936  # the vocabulary of every Qwen2 / Qwen2.5(-VL) checkpoint


@dataclass(frozen=True)
class ModelSize:
    """Parameter counts and the shapes the memory estimate needs (0 = unknown)."""

    total: int  # every parameter, vision tower included
    language: int  # the language model: what a full fine-tune trains (ms-swift freezes the ViT)
    vocab: int = QWEN2_VOCAB
    hidden: int = 0
    layers: int = 0
    intermediate: int = 0
    kv_dim: int = 0  # key/value heads x head size

    @property
    def billions(self) -> float:
        return self.total / 1e9

    @property
    def known_shape(self) -> bool:
        return self.hidden > 0 and self.layers > 0


def _int(config: dict[str, Any], *keys: str, default: int = 0) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return default


def _vision_params(vision: dict[str, Any]) -> int:
    """A Qwen2.5-VL vision tower (patch embedding, gated-MLP blocks, 2x2 merger) or a Qwen2-VL one."""
    depth, dim = _int(vision, "depth"), _int(vision, "embed_dim", "hidden_size")
    if not depth or not dim:
        return 0
    channels = _int(vision, "in_chans", "in_channels", default=3)
    patch, temporal = _int(vision, "patch_size", default=14), _int(vision, "temporal_patch_size", default=2)
    merge = _int(vision, "spatial_merge_size", default=2)
    out = _int(vision, "out_hidden_size", default=_int(vision, "hidden_size"))
    patch_embed = channels * temporal * patch * patch * dim
    attention = dim * 3 * dim + 3 * dim + dim * dim + dim  # qkv and proj, with biases
    if "embed_dim" in vision:  # Qwen2-VL: LayerNorms with bias, fc1/fc2 MLP
        inner = int(dim * float(vision.get("mlp_ratio", 4)))
        block = 4 * dim + attention + 2 * dim * inner + inner + dim
        merger_norm = 2 * dim
    else:  # Qwen2.5-VL: RMSNorms, gate/up/down MLP with biases
        inner = _int(vision, "intermediate_size", default=4 * dim)
        block = 2 * dim + attention + 3 * dim * inner + 2 * inner + dim
        merger_norm = dim
    merged = dim * merge * merge
    merger = merger_norm + merged * merged + merged + merged * out + out
    return patch_embed + depth * block + merger


def size_from_config(config: dict[str, Any]) -> ModelSize | None:
    """Count the parameters from a (Qwen2-family) `config.json`; None without the needed sizes.

    Reads the text sizes from `text_config` (transformers 5) or the top level (the published
    Qwen2.5-VL files), the vision tower from `vision_config`. Qwen2.5-VL-3B-Instruct: 3.75 B.
    """
    text = {**config, **(config.get("text_config") or {})}
    vocab, hidden, layers = (
        _int(text, "vocab_size"),
        _int(text, "hidden_size"),
        _int(text, "num_hidden_layers"),
    )
    inter, heads = _int(text, "intermediate_size"), _int(text, "num_attention_heads")
    if not (vocab and hidden and layers and inter and heads):
        return None
    head_dim = _int(text, "head_dim", default=hidden // heads)
    kv_dim = _int(text, "num_key_value_heads", default=heads) * head_dim
    attention = hidden * heads * head_dim + heads * head_dim  # q with bias
    attention += 2 * (hidden * kv_dim + kv_dim)  # k, v with biases
    attention += heads * head_dim * hidden  # o
    layer = attention + 3 * hidden * inter + 2 * hidden  # gated MLP, two RMSNorms
    tied = config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
    language = vocab * hidden * (1 if tied else 2) + layers * layer + hidden
    vision = _vision_params(config.get("vision_config") or {})
    return ModelSize(language + vision, language, vocab, hidden, layers, inter, kv_dim)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON file through the one reader (`satori_cli.models`); {} when unreadable: the estimate
    then falls back to the weights' bytes or the name, and the model's own checks speak for it."""
    from satori_cli.models import read_json

    try:
        return read_json(path)
    except SatoriError:
        return {}


def _hub_config(repo_id: str) -> dict[str, Any]:
    """A hub model's config.json: cached, else downloaded (a few KB) unless HF_HUB_OFFLINE."""
    from satori_cli.models import cached_config, hub_offline

    try:
        cached = cached_config(repo_id)
        if cached is not None:
            return _read_json(cached)
        if hub_offline():
            return {}
        from huggingface_hub import hf_hub_download

        return _read_json(Path(hf_hub_download(repo_id, "config.json", etag_timeout=5)))
    except Exception:  # any hub failure: fall back to the weights or the name
        return {}


def model_config(model: str) -> dict[str, Any]:
    """A model's `config.json` (local folder, or a hub id's cached or downloaded one); {} if unknown."""
    path = Path(model)
    if path.is_dir():
        return _read_json(path / "config.json")
    return _hub_config(model) if model.count("/") == 1 else {}


def model_size(model: str) -> ModelSize | None:
    """Sizes from the config (local folder or hub id), else the weights' bytes, else a `3B`-style name."""
    path = Path(model)
    config = model_config(model)
    size = size_from_config(config)
    if size is not None:
        return size
    if path.is_dir():
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
        width = 4 if "32" in dtype else 2
        index = next(iter(path.glob("*.safetensors.index.json")), None)
        total = _read_json(index).get("metadata", {}).get("total_size") if index else None
        total = total or sum(f.stat().st_size for f in path.glob("*.safetensors"))
        return ModelSize(int(total / width), int(total / width)) if total else None
    match = re.search(r"(\d+(?:\.\d+)?)\s*[Bb](?![a-zA-Z])", model.split("/")[-1])
    return ModelSize(int(float(match.group(1)) * 1e9), int(float(match.group(1)) * 1e9)) if match else None


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _num(swift: dict[str, Any], key: str, default: float) -> float:
    value = swift.get(key)
    return default if value is None else float(value)


def estimate_parts(
    size: ModelSize, swift: dict[str, Any], gpus_per_node: int, stage: str = "grpo"
) -> dict[str, float]:
    """Bytes per GPU of each term, for GRPO (or, with `stage="sft"`, SFT) with this recipe.

    Resident: bf16 weights (2 B/param), a reference copy for a full fine-tune with beta > 0,
    gradients (2 B) and AdamW state for the trained parameters (fp32 master 4 B + two moments
    8 B under DeepSpeed; moments in the weights' dtype without it), sharded by ZeRO-2/3 over the
    GPUs of a node; `offload_optimizer` moves only the moments off the GPU under ZeRO-2.
    Transient: activations of a micro-batch (per_device_train_batch_size x max_length, one layer
    input per layer with gradient checkpointing), the completion's logits (ms-swift asks the model
    for `logits_to_keep` = max_completion_length + 1 positions; each is held in the weights' dtype,
    upcast to fp32 for the log-softmax, and again as a gradient), and, without vLLM, the KV cache
    of the HF `generate` that produces a step's completions. SFT has no reference copy and no
    generation, and its logits are those of the labelled tokens (at most max_length).
    """
    sft = stage == "sft"
    dtype = 4 if str(swift.get("torch_dtype", "bfloat16")) == "float32" else 2
    full = str(swift.get("tuner_type", "lora")) == "full"
    deepspeed = str(swift.get("deepspeed") or "")
    zero3 = deepspeed.startswith("zero3")
    shards = max(gpus_per_node, 1) if deepspeed.startswith(("zero2", "zero3")) else 1
    if full:
        trained = float(size.language)
    elif size.known_shape:  # LoRA on every linear layer of the language model
        rank = _num(swift, "lora_rank", 8)
        trained = rank * size.layers * (9 * size.hidden + 2 * size.kv_dim + 3 * size.intermediate)
    else:
        trained = size.total * 0.01
    parts: dict[str, float] = {"weights": size.total * dtype / (shards if zero3 else 1)}
    parts["reference"] = parts["weights"] if full and not sft and _num(swift, "beta", 0.04) > 0 else 0.0
    parts["gradients"] = trained * dtype / shards
    master, moments = (4.0, 8.0) if deepspeed else (0.0, 2.0 * dtype)
    if _flag(swift.get("offload_optimizer", False)):
        moments = 0.0
    parts["optimizer"] = trained * (master + moments) / shards

    batch = _num(swift, "per_device_train_batch_size", 1)
    length = _num(swift, "max_length", 2048)
    completion = _num(swift, "max_length", 2048) - 1 if sft else _num(swift, "max_completion_length", 512)
    checkpointing = _flag(swift.get("gradient_checkpointing", True))
    if size.known_shape:
        per_layer_token = 34 * size.hidden * dtype / 2  # full activations of one layer, one token
        kept = size.layers * size.hidden * dtype if checkpointing else size.layers * per_layer_token
        parts["activations"] = batch * length * (kept + (per_layer_token if checkpointing else 0))
    else:
        parts["activations"] = (2.0 if checkpointing else 6.0) * GIB * max(size.billions / 3, 0.5)
    parts["logits"] = batch * (completion + 1) * size.vocab * (dtype + 4 + dtype)
    parts["generation"] = 0.0
    if not sft and not _flag(swift.get("use_vllm", False)) and size.known_shape:
        accumulation = _num(swift, "gradient_accumulation_steps", 1)
        sequences = batch * _num(swift, "steps_per_generation", accumulation)
        parts["generation"] = sequences * length * size.layers * 2 * size.kv_dim * dtype
    return parts


def resident_and_transient(parts: dict[str, float]) -> tuple[float, float]:
    resident = parts["weights"] + parts["reference"] + parts["gradients"] + parts["optimizer"]
    transient = max(parts["activations"] + parts["logits"], parts["generation"])
    return resident, transient


def memory_shortfall(
    size: ModelSize, swift: dict[str, Any], gpus: list[Gpu], gpus_per_node: int, stage: str = "grpo"
) -> str | None:
    """A one-line reason the recipe will not fit the smallest GPU, or None when it should."""
    if not gpus:
        return None
    smallest = min(gpus, key=lambda g: g.memory_gib)
    parts = estimate_parts(size, swift, gpus_per_node, stage)
    resident, transient = resident_and_transient(parts)
    # A colocated vLLM engine reserves a fraction of each GPU.
    colocated = _flag(swift.get("use_vllm", False)) and str(swift.get("vllm_mode")) == "colocate"
    vllm = float(swift.get("vllm_gpu_memory_utilization", 0.9)) if colocated else 0.0
    vllm *= smallest.memory_gib * GIB
    # vLLM asleep (level >= 1) frees its KV cache and weights while the policy trains, so the
    # two take turns; awake, both sit on the GPU at once.
    sleeps = int(swift.get("sleep_level", 0) or 0) >= 1
    need = resident + (max(transient, vllm) if sleeps else transient + vllm)
    if need <= smallest.memory_gib * GIB:
        return None
    shown = {**parts, "vLLM": vllm} if vllm else parts
    detail = ", ".join(f"{name} {value / GIB:.0f}" for name, value in shown.items() if value >= GIB / 2)
    return (
        f"this recipe needs about {need / GIB:.0f} GiB per GPU for a {size.billions:.2f}B-parameter model "
        f"({detail}), but {smallest.name} has {smallest.memory_gib:.0f} GiB"
    )
