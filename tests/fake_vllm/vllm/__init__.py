"""A stand-in for the `vllm` package in tests (vLLM is CUDA-only and not installed here).

It keeps the part of vLLM's offline API that `satori eval --backend vllm` uses: `LLM(**kwargs)`
and `LLM.generate(requests, sampling_params=..., use_tqdm=...)` returning outputs in request
order, each with `prompt_token_ids` (the prompt after multimodal processing, image placeholders
expanded, computed with the checkpoint's HF processor under the engine's `mm_processor_kwargs`,
as vLLM does) and `outputs[0].text`. The answer is a good SATORI model's on the sample bench:
the option that names the image's colour.

Every engine and every generate call is appended to `$FAKE_VLLM_LOG` (JSON lines), so tests
can count engines, processes and calls.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

__version__ = "0.0.0-fake"

# Engine arguments of vLLM 0.33's EngineArgs that satori may pass; anything else is a TypeError there.
ENGINE_ARGS = {
    "tensor_parallel_size",
    "max_model_len",
    "limit_mm_per_prompt",
    "mm_processor_kwargs",
    "gpu_memory_utilization",
    "seed",
    "generation_config",
    "max_num_seqs",
    "dtype",
}
NAMES = {(255, 0, 0): "red", (0, 160, 0): "green", (0, 0, 255): "blue"}


def _log(row: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_VLLM_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_tokens: int | None = 16


@dataclass
class CompletionOutput:
    text: str


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]


def _colour(image: Any) -> str:
    rgb = image.convert("RGB").getpixel((0, 0))
    return min(NAMES.items(), key=lambda kv: sum((a - b) ** 2 for a, b in zip(kv[0], rgb, strict=True)))[1]


class LLM:
    def __init__(self, model: str, **kwargs: Any) -> None:
        from transformers import AutoProcessor

        unknown = set(kwargs) - ENGINE_ARGS
        if unknown:
            raise TypeError(f"unexpected engine arguments {sorted(unknown)}")
        self.model = model
        self.kwargs = kwargs
        self.processor = AutoProcessor.from_pretrained(model, **kwargs.get("mm_processor_kwargs", {}))
        _log({"event": "engine", "pid": os.getpid(), "model": model, "kwargs": kwargs})

    def generate(self, requests: Any, sampling_params: SamplingParams | None = None, use_tqdm: bool = True):
        requests = requests if isinstance(requests, list) else [requests]
        outputs = []
        for request in requests:
            images = (request.get("multi_modal_data") or {}).get("image") or []
            images = images if isinstance(images, list) else [images]
            ids = self.processor(text=[request["prompt"]], images=images or None, return_tensors="np")
            text = request["prompt"]
            colour = _colour(images[0]) if images else "none"
            letter = re.search(rf"^([A-Z])\. {colour}$", text, re.M)
            answer = letter.group(1) if letter else "?"
            reply = f"<caption>a {colour} square</caption> <bbox>[[0,0,28,28]]</bbox> "
            reply += f"<answer>{answer}</answer>"
            outputs.append(RequestOutput([int(t) for t in ids["input_ids"][0]], [CompletionOutput(reply)]))
        params = vars(sampling_params) if sampling_params is not None else None
        _log({"event": "generate", "pid": os.getpid(), "prompts": len(requests), "sampling": params})
        return outputs
