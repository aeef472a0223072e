"""How satori asks a model for an answer, the same on every backend of `eval`, `serve` and
`predict`: one definition of how tokens are picked (`Decoding`), and one chat request for every
OpenAI-compatible server satori talks to (`chat_request`).

**Decoding.** A checkpoint's `generation_config.json` is a silent default: Qwen2.5-VL ships
`do_sample`, temperature 0.1, top_p 0.001, top_k 1 and `repetition_penalty` 1.05. transformers and
`swift deploy` fill every field a caller leaves unset from it, vLLM only under
`--generation-config auto`, so the same model decoded differently per backend. Every backend
therefore gets every field explicitly, from here. The default is VLMEvalKit's own Qwen2-VL
setting: greedy, repetition penalty 1.0.

**The chat request.** `satori predict`, the demo and `satori eval --backend api` all send it: the
system prompt as plain text (ms-swift's `swift deploy` reads a system message only as a string),
one user turn of images and texts in order, every decoding field explicit and vLLM's
`mm_processor_kwargs` with the pixel budget. Each image is resized to the budget here, exactly as
Qwen's processor would, so the server's own resize is the identity and the boxes the model answers
are in the budget's frame whatever the server's settings.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from satori_cli.errors import SatoriError
from satori_cli.pixels import PAPER_BUDGET, PixelBudget

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class Decoding:
    """Sampling settings; temperature 0 means greedy (top_p / top_k then play no part)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    repetition_penalty: float = 1.0
    max_new_tokens: int = 2048

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: off), got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def record(self) -> dict[str, Any]:
        """What `summary.json` says about decoding."""
        return {"greedy": self.greedy, **asdict(self)}

    def describe(self) -> str:
        how = "greedy"
        if not self.greedy:
            how = f"sampling t={self.temperature} top_p={self.top_p} top_k={self.top_k}"
        return f"{how}, repetition penalty {self.repetition_penalty}, max {self.max_new_tokens} new tokens"

    def transformers_kwargs(self) -> dict[str, Any]:
        """Fields of a transformers `GenerationConfig`, none left unset (unset ones come from the checkpoint).

        Under greedy search the sampling fields get transformers' neutral values: they are
        ignored, and setting them keeps the checkpoint's from showing up in the resolved config.
        """
        if self.greedy:
            sampling: dict[str, Any] = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50}
        else:
            sampling = {"do_sample": True, "temperature": self.temperature}
            sampling |= {"top_p": self.top_p, "top_k": self.top_k}
        return {
            **sampling,
            "num_beams": 1,
            "repetition_penalty": self.repetition_penalty,
            "max_new_tokens": self.max_new_tokens,
        }

    def vllm_kwargs(self) -> dict[str, Any]:
        """Arguments of `vllm.SamplingParams` (temperature 0 is vLLM's greedy; top_k 0 is off)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "max_tokens": self.max_new_tokens,
        }

    def openai_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(standard, extra) fields of an OpenAI chat-completions request.

        `top_k` and `repetition_penalty` are not OpenAI fields; vLLM and `swift deploy` read
        them from the request body (the openai client sends them through `extra_body`).
        """
        standard = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_new_tokens}
        extra = {"top_k": self.top_k, "repetition_penalty": self.repetition_penalty}
        return standard, extra


DEFAULT_DECODING = Decoding()


# -- the chat request -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedImage:
    """The original image and the resized copy the model sees."""

    original: Image.Image
    resized: Image.Image

    @property
    def data_url(self) -> str:
        """The resized image as a `data:` URL (PNG: lossless, so the model sees exactly its pixels)."""
        buf = io.BytesIO()
        self.resized.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def prepare_image(image: Image.Image, budget: PixelBudget = PAPER_BUDGET) -> PreparedImage:
    """Resize to the budget exactly as Qwen's processor would (BICUBIC, smart_resize size)."""
    from PIL import Image

    try:
        size = budget.resized_wh(image.width, image.height)
    except ValueError as exc:
        raise SatoriError(f"cannot use this image: {exc}") from exc
    resized = image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)
    return PreparedImage(original=image, resized=resized)


def chat_request(
    model: str,
    system: str | None,
    content: Sequence[str | PreparedImage],
    decoding: Decoding,
    budget: PixelBudget,
    stream: bool = False,
) -> dict[str, Any]:
    """The chat-completions body: the system prompt (as text) and one user turn (images as data URLs
    and texts, in order), every decoding field, and the budget for vLLM."""
    parts: list[dict[str, Any]] = []
    for item in content:
        if isinstance(item, str):
            parts.append({"type": "text", "text": item})
        else:
            parts.append({"type": "image_url", "image_url": {"url": item.data_url}})
    turns: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    standard, extra = decoding.openai_fields()
    return {
        "model": model,
        "messages": [*turns, {"role": "user", "content": parts}],
        **standard,
        **extra,
        "stream": stream,
        # vLLM resizes with these; the images are already that size, so its resize is the identity.
        "mm_processor_kwargs": budget.processor_kwargs(),
    }
