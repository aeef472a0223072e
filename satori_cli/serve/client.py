"""One SATORI round trip: image + question in, caption / boxes / answer out, boxes on the original.

The client asks in an output grammar (`satori_cli.grammar.GRAMMARS`, default `satori`): its
system prompt goes out, its parser reads the answer, and boxes are drawn when it has them.

Qwen2.5-VL answers with boxes in the pixels of its *resized* input. We resize the image to the
pixel budget ourselves and send that, so the server's own resize is the identity and cannot
shift the boxes; we then map the boxes back to the original image with the same budget.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from satori_cli import http_client
from satori_cli.decoding import Decoding, PreparedImage, chat_request, prepare_image
from satori_cli.errors import SatoriError
from satori_cli.grammar import Completion, Grammar, get_grammar, load_prompt, parse
from satori_cli.pixels import PAPER_BUDGET, PixelBudget, clamp_box

if TYPE_CHECKING:
    from PIL import Image

SERVED_MODEL_NAME = "satori"  # the model name every backend serves SATORI under
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # larger files are refused before decoding
MAX_IMAGE_PIXELS = 50_000_000  # decompression-bomb guard
# `owned_by` of the fake backend's model in /v1/models: how a client tells canned answers.
CANNED_OWNER = "satori-fake"
CANNED_NOTICE = (
    "Canned answers: this server is satori's fake backend and runs no model. Each answer boxes the "
    "image's reddest (else darkest) region and names it, to try the demo and the client; start "
    "`satori serve --model ...` for real answers."
)
BOX_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")


def load_image(source: str | Path | bytes) -> Image.Image:
    """Open an upload as RGB, refusing non-images and oversized files with a one-line error."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise SatoriError(f"image not found: {path}")
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise SatoriError(f"image is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB: {path}")
        try:
            data = path.read_bytes()
        except OSError as exc:  # EACCES, EIO (/proc/self/mem), a file removed under us
            raise SatoriError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise SatoriError(f"image is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise SatoriError(f"image has more than {MAX_IMAGE_PIXELS:,} pixels")
            img.load()
            # Show, send and draw on the same upright RGB pixels (EXIF rotation, alpha, palettes).
            return ImageOps.exif_transpose(img).convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise SatoriError("the file is not an image that can be read (PNG, JPEG, WebP, ...)") from exc


@dataclass(frozen=True)
class Prediction:
    """A parsed answer, with boxes in original-image pixels (clamped, whole pixels)."""

    completion: Completion
    width: int
    height: int
    boxes: tuple[tuple[int, int, int, int], ...] = field(default=())

    def labels(self) -> list[str]:
        return [f"box {i + 1}" for i in range(len(self.boxes))]

    @property
    def problem(self) -> str | None:
        """Why the answer is not usable SATORI output (format, or boxes that cannot be read), else None.

        The grammar's `well_formed` is about the tags; a `[[nan, ...]]` or 10,000-box list has the
        right tags but no usable box, and a user must hear about it.
        """
        c = self.completion
        if c.reason:
            return c.reason
        if c.box_error and get_grammar(c.grammar).has_boxes:  # no <bbox> is right in r1
            return f"boxes unreadable: {c.box_error}"
        return None

    def to_json(self) -> dict[str, Any]:
        c = self.completion
        return {
            "caption": c.caption,
            "answer": c.answer,
            "boxes": [list(b) for b in self.boxes],
            "boxes_model": [list(b) for b in (c.boxes or ())],
            "thinking": c.thinking,
            "grammar": c.grammar,
            "image_size": [self.width, self.height],
            "well_formed": self.problem is None,
            "problem": self.problem,
            "raw": c.raw,
        }


def interpret(
    text: str,
    prepared: PreparedImage,
    budget: PixelBudget = PAPER_BUDGET,
    grammar: str | Grammar | None = None,
) -> Prediction:
    """Parse a completion in its grammar and map its boxes from the resized input onto the
    original image (none for a grammar without boxes)."""
    g = get_grammar(grammar)
    completion = parse(http_client.printable(text), grammar=g)
    w, h = prepared.original.size
    mapped = budget.to_original((completion.boxes or ()) if g.has_boxes else (), w, h)
    boxes = tuple(clamp_box(b, w, h) for b in mapped)
    return Prediction(completion=completion, width=w, height=h, boxes=boxes)


DARK, LIGHT = (0, 0, 0), (255, 255, 255)


def box_line_width(size: tuple[int, int]) -> int:
    """The coloured frame's width for an image of `size` (thicker on big images)."""
    return max(2, round(min(size) / 150))


def draw_box(draw: Any, box: tuple[int, int, int, int], label: str, color: str, width: int) -> None:
    """One box as `predict --out` and the demo draw it: a coloured frame between a dark outer
    and a light inner line, so it stays visible on any background, an object of its own colour
    included, and its label on a tab of that colour inside the top-left corner. Everything stays
    inside the box (x2, y2 exclusive), so the drawing's extent is the box."""
    from PIL import ImageColor, ImageFont

    x1, y1, x2, y2 = box
    edge = max(1, width // 2)
    frames = ((DARK, edge), (color, width), (LIGHT, edge))
    inset = 0
    for fill, w in frames:
        left, top, right, bottom = x1 + inset, y1 + inset, x2 - 1 - inset, y2 - 1 - inset
        if right < left or bottom < top:
            break
        draw.rectangle((left, top, right, bottom), outline=fill, width=w)
        inset += w
    rgb = ImageColor.getrgb(color)[:3]
    light_colour = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 150
    font = ImageFont.load_default(size=max(11, 5 * width))
    tx, ty = x1 + 2 * edge + width + 2, y1 + 2 * edge + width + 1
    tab = draw.textbbox((tx, ty), label, font=font)
    tab = (tab[0] - 2, tab[1] - 1, tab[2] + 2, tab[3] + 1)
    draw.rectangle(tab, fill=color, outline=DARK, width=1)
    draw.text((tx, ty), label, fill=DARK if light_colour else LIGHT, font=font)


def draw_boxes(image: Image.Image, prediction: Prediction) -> Image.Image:
    """A copy of the image with each box framed and labelled (the PNG `predict --out` writes)."""
    from PIL import ImageDraw

    out = image.copy()
    draw = ImageDraw.Draw(out)
    width = box_line_width(out.size)
    for i, (box, label) in enumerate(zip(prediction.boxes, prediction.labels(), strict=True)):
        draw_box(draw, box, label, BOX_COLORS[i % len(BOX_COLORS)], width)
    return out


class SatoriClient:
    """An OpenAI-compatible chat client that speaks SATORI (system prompt, one image, a question).

    Plain HTTP through `satori_cli.http_client` (one proxy, timeout and error policy for every
    server satori talks to); every answer is checked before it is used, so a server that
    answers HTML, a stream, or JSON without `choices` ends in one line, not a traceback.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        budget: PixelBudget = PAPER_BUDGET,
        timeout: float = 120.0,
        grammar: str | Grammar | None = None,
    ) -> None:
        self.grammar = get_grammar(grammar)
        self.base_url = base_url.rstrip("/")
        self.chat_url = self.base_url + "/chat/completions"
        self.budget = budget
        self.timeout = timeout
        self._http = http_client.client(self.base_url, api_key=api_key, timeout=timeout)

    def served(self) -> list[dict[str, Any]]:
        """The server's /v1/models entries (a cheap liveness and API-key check)."""
        body = http_client.request_json(
            "GET", self.base_url + "/models", http=self._http, timeout=self.timeout
        )
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise SatoriError(f"the server at {self.base_url} did not list its models", exit_code=1)
        return [m for m in data if isinstance(m, dict) and "id" in m]

    def payload(
        self, prepared: PreparedImage, question: str, temperature: float, max_tokens: int, stream: bool
    ) -> dict[str, Any]:
        """The chat request body (`satori_cli/decoding.py`, the one `satori eval --backend api` sends)."""
        if not question.strip():
            raise SatoriError("ask a question about the image")
        decoding = Decoding(temperature=temperature, max_new_tokens=max_tokens)
        system = load_prompt("system", grammar=self.grammar)
        return chat_request(SERVED_MODEL_NAME, system, [prepared, question], decoding, self.budget, stream)

    def stream(
        self, prepared: PreparedImage, question: str, temperature: float = 0.0, max_tokens: int = 512
    ) -> Iterator[str]:
        """Yield the completion text so far (control characters removed), growing as tokens arrive."""
        body = self.payload(prepared, question, temperature, max_tokens, stream=True)
        text = ""
        with http_client.open_events(self.chat_url, body, http=self._http, timeout=self.timeout) as events:
            for event in events:
                piece = http_client.printable(http_client.delta_text(event))
                if piece:
                    text += piece
                    yield text

    def complete(
        self, prepared: PreparedImage, question: str, temperature: float = 0.0, max_tokens: int = 512
    ) -> str:
        """The whole completion text, control characters removed."""
        body = self.payload(prepared, question, temperature, max_tokens, stream=False)
        answer = http_client.request_json("POST", self.chat_url, body, http=self._http, timeout=self.timeout)
        return http_client.printable(http_client.chat_text(answer, self.chat_url))

    def predict(
        self, image: Image.Image, question: str, temperature: float = 0.0, max_tokens: int = 512
    ) -> tuple[PreparedImage, Prediction]:
        prepared = prepare_image(image, self.budget)
        text = self.complete(prepared, question, temperature, max_tokens)
        return prepared, interpret(text, prepared, self.budget, self.grammar)
