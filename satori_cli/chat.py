"""One SATORI chat request, for every OpenAI-compatible server satori talks to.

`satori predict`, the demo and `satori eval --backend api` all send this request: the system
prompt as plain text (ms-swift's `swift deploy` reads a system message only as a string), one
user turn of images and texts in order, every decoding field explicit (`satori_cli/decoding.py`)
and vLLM's `mm_processor_kwargs` with the pixel budget. Each image is resized to the budget
here, exactly as Qwen's processor would, so the server's own resize is the identity and the
boxes the model answers are in the budget's frame whatever the server's settings.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from satori_cli.decoding import Decoding
from satori_cli.errors import SatoriError
from satori_cli.pixels import PAPER_BUDGET, PixelBudget

if TYPE_CHECKING:
    from PIL import Image


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


def messages(system: str | None, content: Sequence[str | PreparedImage]) -> list[dict[str, Any]]:
    """The system prompt (as text) and one user turn: images as data URLs and texts, in order."""
    parts: list[dict[str, Any]] = []
    for item in content:
        if isinstance(item, str):
            parts.append({"type": "text", "text": item})
        else:
            parts.append({"type": "image_url", "image_url": {"url": item.data_url}})
    turns: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": parts}]


def request(
    model: str,
    system: str | None,
    content: Sequence[str | PreparedImage],
    decoding: Decoding,
    budget: PixelBudget,
    stream: bool = False,
) -> dict[str, Any]:
    """The chat-completions body: messages, every decoding field, and the budget for vLLM."""
    standard, extra = decoding.openai_fields()
    return {
        "model": model,
        "messages": messages(system, content),
        **standard,
        **extra,
        "stream": stream,
        # vLLM resizes with these; the images are already that size, so its resize is the identity.
        "mm_processor_kwargs": budget.processor_kwargs(),
    }
