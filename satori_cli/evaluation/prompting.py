"""How a SATORI model is asked and how its answer is read, shared by every backend.

Pure functions with no heavy imports, so they are unit-tested directly and the three backends
(transformers, vLLM, an OpenAI-compatible server) cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from satori_cli.decoding import Decoding, PreparedImage, chat_request, prepare_image
from satori_cli.grammar import extract_answer, load_prompt
from satori_cli.pixels import PixelBudget
from satori_cli.vllm_settings import engine_settings

EVAL_IMAGES = 8  # images one VLMEvalKit prompt may carry (vLLM's limit_mm_per_prompt)


@dataclass(frozen=True)
class PromptStyle:
    """`satori`: an output grammar's system prompt plus its eval suffix (default grammar
    `satori`: SATORI's own); `stock`: the question as given."""

    system: str | None
    suffix: str

    @classmethod
    def named(cls, name: str, grammar: str | None = None) -> PromptStyle:
        if name == "stock":
            return cls(system=None, suffix="")
        if name != "satori":
            raise ValueError(f"unknown prompt style {name!r} (satori or stock)")
        return cls(load_prompt("system", grammar=grammar), load_prompt("eval_suffix", grammar=grammar))


def image_paths(message: Sequence[Mapping[str, str]]) -> list[str]:
    """The images of VLMEvalKit's `[{'type': 'image'|'text', 'value': ...}]`, in order."""
    return [m["value"] for m in message if m["type"] == "image"]


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


def api_payload(
    message: Sequence[Mapping[str, str]],
    style: PromptStyle,
    model: str,
    budget: PixelBudget,
    decoding: Decoding,
) -> tuple[dict[str, Any], list[PreparedImage]]:
    """The chat request for one VLMEvalKit item (`satori_cli/decoding.py`, the one `satori serve` gets).

    Its images are resized to the budget before sending, as the demo does: whatever the server's
    settings, the model answers boxes in the budget's frame. Returns the body and the images sent.
    """
    from PIL import Image

    images = [prepare_image(Image.open(p).convert("RGB"), budget) for p in image_paths(message)]
    sent = iter(images)
    content: list[str | PreparedImage] = []
    for part in chat_messages(message, style)[-1]["content"]:
        content.append(next(sent) if part["type"] == "image" else part["text"])
    return chat_request(model, style.system, content, decoding, budget), images


def vllm_engine_kwargs(
    model_path: str, budget: PixelBudget, decoding: Decoding, tensor_parallel: int = 1
) -> dict[str, Any]:
    """Arguments of `vllm.LLM` (`satori_cli/vllm_settings.py`, as `satori serve` runs vLLM).

    Up to 8 images per prompt (VLMEvalKit benchmarks may interleave several), and a context that
    fits them with `max_new_tokens`; `seed` 0 makes sampled runs repeatable.
    """
    settings = engine_settings(
        model_path,
        budget,
        images=EVAL_IMAGES,
        max_new_tokens=decoding.max_new_tokens,
        tensor_parallel=tensor_parallel,
    )
    return {**settings, "seed": 0}
