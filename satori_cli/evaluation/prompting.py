"""How a SATORI model is asked and how its answer is read, shared by every backend.

Pure functions with no heavy imports, so they are unit-tested directly and the three backends
(transformers, vLLM, an OpenAI-compatible server) cannot drift apart.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from satori_cli.decoding import Decoding
from satori_cli.grammar import extract_answer
from satori_cli.pixels import PixelBudget


@dataclass(frozen=True)
class PromptStyle:
    """`satori`: an output grammar's system prompt plus its eval suffix (default grammar
    `satori`: SATORI's own); `stock`: the question as given."""

    system: str | None
    suffix: str

    @classmethod
    def satori(cls, grammar: str | None = None) -> PromptStyle:
        from satori_cli.prompts import load_prompt

        return cls(
            system=load_prompt("system", grammar=grammar), suffix=load_prompt("eval_suffix", grammar=grammar)
        )

    @classmethod
    def stock(cls) -> PromptStyle:
        return cls(system=None, suffix="")

    @classmethod
    def named(cls, name: str, grammar: str | None = None) -> PromptStyle:
        if name == "satori":
            return cls.satori(grammar)
        if name == "stock":
            return cls.stock()
        raise ValueError(f"unknown prompt style {name!r} (satori or stock)")


def split_items(message: Sequence[Mapping[str, str]]) -> tuple[list[str], list[str]]:
    """VLMEvalKit's `[{'type': 'image'|'text', 'value': ...}]` -> (image paths, texts)."""
    images = [m["value"] for m in message if m["type"] == "image"]
    texts = [m["value"] for m in message if m["type"] == "text"]
    return images, texts


def chat_messages(message: Sequence[Mapping[str, str]], style: PromptStyle) -> list[dict[str, Any]]:
    """Hugging Face chat messages with image placeholders, in VLMEvalKit's item order.

    The suffix goes on the last text item (the question), as the original SATORI evaluation
    appended it to the question of an `[image, question]` prompt.
    """
    last_text = max((i for i, m in enumerate(message) if m["type"] == "text"), default=None)
    content: list[dict[str, Any]] = []
    for i, item in enumerate(message):
        if item["type"] == "image":
            content.append({"type": "image"})
        elif item["type"] == "text":
            text = item["value"] + (style.suffix if i == last_text else "")
            content.append({"type": "text", "text": text})
        else:
            raise ValueError(f"unsupported message item type {item['type']!r} (images and text only)")
    if last_text is None and style.suffix:
        content.append({"type": "text", "text": style.suffix.lstrip()})
    messages: list[dict[str, Any]] = []
    if style.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": style.system}]})
    messages.append({"role": "user", "content": content})
    return messages


def prediction_record(raw: str) -> dict[str, str]:
    """What the model returns to VLMEvalKit: the answer to score, and the raw output kept.

    VLMEvalKit stores `prediction` (scored) and `extra_records` (kept verbatim) as columns of
    the predictions file. Scoring the raw text would fail: `<answer>B</answer>` is one token
    to VLMEvalKit's option matcher.
    """
    return {"prediction": extract_answer(raw), "extra_records": raw}


def data_url(path: str) -> str:
    """An image file as a `data:` URL (PNG), for OpenAI-compatible servers."""
    from PIL import Image

    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def api_payload(
    message: Sequence[Mapping[str, str]],
    style: PromptStyle,
    model: str,
    budget: PixelBudget,
    decoding: Decoding,
) -> dict[str, Any]:
    """An OpenAI chat-completions request for one VLMEvalKit item, every decoding field explicit.

    `mm_processor_kwargs` asks a vLLM server to resize with our pixel budget; servers that do
    not know the field ignore it (and `satori serve` applies the same budget itself).
    """
    messages = chat_messages(message, style)
    images = iter(split_items(message)[0])
    for msg in messages:
        for part in msg["content"]:
            if part["type"] == "image":
                part.clear()
                part.update({"type": "image_url", "image_url": {"url": data_url(next(images))}})
    standard, extra = decoding.openai_fields()
    return {
        "model": model,
        "messages": messages,
        **standard,
        **extra,
        "mm_processor_kwargs": budget.processor_kwargs(),
    }


def vllm_engine_kwargs(
    model_path: str, budget: PixelBudget, tensor_parallel: int = 1, max_model_len: int = 8192
) -> dict[str, Any]:
    """Arguments of `vllm.LLM` for a Qwen2.5-VL checkpoint under our pixel budget.

    `generation_config="vllm"`: the checkpoint's generation_config.json supplies no defaults
    (every request carries explicit SamplingParams anyway).
    """
    return {
        "model": model_path,
        "tensor_parallel_size": tensor_parallel,
        "max_model_len": max_model_len,
        "limit_mm_per_prompt": {"image": 8},
        "mm_processor_kwargs": budget.processor_kwargs(),
        "gpu_memory_utilization": 0.85,
        "seed": 0,
        "generation_config": "vllm",
    }
