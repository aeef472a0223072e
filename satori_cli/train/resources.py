"""Roughly what a recipe will need of the GPUs found (`satori_cli.gpus`).

The memory estimate is deliberately coarse: it exists to stop a run
that cannot fit before minutes of model loading, not to predict the peak to the gigabyte.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from satori_cli.gpus import Gpu

GIB = 1024**3


def model_params_billion(model: str) -> float | None:
    """Parameter count in billions: from a local folder's weights, else from a `3B`-style name."""
    path = Path(model)
    if path.is_dir():
        index = next(iter(path.glob("*.safetensors.index.json")), None)
        config = _read_json(path / "config.json")
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
        width = 4 if "32" in dtype else 2
        if index is not None:
            total = _read_json(index).get("metadata", {}).get("total_size")
            if total:
                return float(total) / width / 1e9
        size = sum(f.stat().st_size for f in path.glob("*.safetensors"))
        return size / width / 1e9 if size else None
    match = re.search(r"(\d+(?:\.\d+)?)\s*[Bb](?![a-zA-Z])", model.split("/")[-1])
    return float(match.group(1)) if match else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def estimate_gpu_memory_gib(params_b: float, swift: dict[str, Any], gpus_per_node: int) -> float:
    """Rough peak GiB per GPU for GRPO with this recipe.

    Terms: bf16 policy weights (2 B/param), a reference copy when beta > 0 and the run is a
    full fine-tune, gradients (2 B) and AdamW fp32 state (12 B) for the trained parameters,
    sharded by ZeRO-2/3 over the GPUs of a node, plus activations (a few GiB, less with
    gradient checkpointing) and, for colocated vLLM, its share of the GPU.
    """
    p = params_b * 1e9
    full = str(swift.get("tuner_type", "lora")) == "full"
    dtype_bytes = 4 if str(swift.get("torch_dtype", "bfloat16")) == "float32" else 2
    trained = p if full else p * 0.01
    shards = max(gpus_per_node, 1) if str(swift.get("deepspeed", "")).startswith(("zero2", "zero3")) else 1
    weights = p * dtype_bytes
    if str(swift.get("deepspeed", "")).startswith("zero3"):
        weights /= shards
    reference = weights if full and float(swift.get("beta", 0.04) or 0) > 0 else 0.0
    grads_and_optimizer = trained * (dtype_bytes + 12) / shards
    if _flag(swift.get("offload_optimizer", False)):
        grads_and_optimizer = trained * dtype_bytes / shards
    activations = (
        (2.0 if _flag(swift.get("gradient_checkpointing", True)) else 6.0) * GIB * max(params_b / 3, 0.5)
    )
    total = weights + reference + grads_and_optimizer + activations
    return total / GIB


def vllm_share(swift: dict[str, Any]) -> float:
    """Fraction of each GPU a colocated vLLM engine reserves (0 without vLLM)."""
    if not _flag(swift.get("use_vllm", False)) or str(swift.get("vllm_mode")) != "colocate":
        return 0.0
    return float(swift.get("vllm_gpu_memory_utilization", 0.9))


def memory_shortfall(
    params_b: float, swift: dict[str, Any], gpus: list[Gpu], gpus_per_node: int
) -> str | None:
    """A one-line reason the recipe will not fit the smallest GPU, or None when it should."""
    if not gpus:
        return None
    smallest = min(gpus, key=lambda g: g.memory_gib)
    need = estimate_gpu_memory_gib(params_b, swift, gpus_per_node)
    share = vllm_share(swift)
    # With sleep_level >= 1 and the policy offloaded, training and vLLM take turns on the GPU.
    takes_turns = int(swift.get("sleep_level", 0) or 0) >= 1 and _flag(swift.get("offload_model", False))
    room = smallest.memory_gib * (1.0 if takes_turns else 1.0 - share)
    if need > room:
        vllm_note = f" after vLLM's {share:.0%}" if share and not takes_turns else ""
        return (
            f"this recipe needs about {need:.0f} GiB per GPU for a {params_b:.1f}B model, "
            f"but {smallest.name} has {smallest.memory_gib:.0f} GiB{vllm_note}"
        )
    return None
