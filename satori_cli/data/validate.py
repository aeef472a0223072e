"""Turn raw field values into the typed values of a prepared row, or say why not.

Every check raises `Rejected(reason, detail)`; `reason` is one of `REASONS` (a short code
counted in the summary) and `detail` says what exactly was wrong with this row. Nothing is
silently fixed: a box outside the image is rejected, not clamped.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Sequence

from satori_cli.pixels import MAX_RATIO, smart_resize

IMAGE_TAG = "<image>"

REASONS = {
    "malformed_row": "the row is not a JSON object / could not be decoded",
    "missing_question": "no question, or an empty one",
    "missing_answer": "no answer, or only empty ones",
    "missing_caption": "no image caption (the caption reward needs one)",
    "missing_boxes": "no ground-truth box",
    "missing_image": "no image, or its file does not exist",
    "corrupt_image": "the image cannot be decoded",
    "image_outside_archive": "an image path points outside the unpacked archive",
    "multiple_images": "more than one image (SATORI rows have exactly one)",
    "non_numeric": "a box, width or height that is not a finite number",
    "box_arity": "a box without exactly 4 numbers",
    "box_zero_area": "a box with zero width or height",
    "box_inverted": "a box whose x2 < x1 or y2 < y1",
    "box_outside_image": "a box that extends outside the image",
    "size_mismatch": "width/height differ from the image's real size",
    "aspect_ratio": f"an image more than {MAX_RATIO}x longer than wide (Qwen's smart_resize refuses it)",
}


class Rejected(Exception):
    """This row cannot be trained on; `reason` is a key of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail or REASONS[reason]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def text(value: object) -> str:
    """A non-empty string field, stripped ('' when absent or not text)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str):
        return value[0].strip()
    return ""


def question(value: object) -> str:
    """The question text without any `<image>` tag (the tag is put back in front)."""
    q = text(value).replace(IMAGE_TAG, "").strip()
    if not q:
        raise Rejected("missing_question")
    return q


def answers(value: object) -> list[str]:
    """possible_answers: always a non-empty list of non-empty strings.

    Accepts a string, a number, a list of those, a JSON-encoded list, or VQA-style
    `[{"answer": ...}, ...]`; duplicates are dropped, order kept.
    """
    if isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]"):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("answer")
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, (int, float)):
            item = f"{item:g}" if isinstance(item, float) else str(item)
        if isinstance(item, str) and item.strip() and item.strip() not in out:
            out.append(item.strip())
    if not out:
        raise Rejected("missing_answer")
    return out


def caption(value: object) -> str:
    c = text(value)
    if not c and isinstance(value, (list, tuple)):
        c = next((v.strip() for v in value if isinstance(v, str) and v.strip()), "")
    if not c:
        raise Rejected("missing_caption")
    return c


_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")


def dimension(value: object, name: str) -> int | None:
    """A width or height: a positive whole number, or None when absent."""
    if value is None:
        return None
    if isinstance(value, str) and _NUMBER.match(value):
        value = float(value)
    if not _is_number(value) or value <= 0 or float(value) != int(value):
        raise Rejected("non_numeric", f"{name} = {value!r} is not a positive whole number")
    return int(value)


def boxes(value: object) -> list[list[float]]:
    """Ground-truth boxes as a list of [x1, y1, x2, y2] floats.

    A flat list of 4 numbers is one box (the v2 paper figure writes it so); a JSON string
    of either form is decoded. Corner order and area are checked here, the image bounds
    in `check_boxes_in_image`.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise Rejected("non_numeric", f"bboxs is a string that is not JSON: {value[:40]!r}") from exc
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        raise Rejected("missing_boxes")
    if not isinstance(value, (list, tuple)):
        raise Rejected("non_numeric", f"bboxs is a {type(value).__name__}, not a list")
    if all(not isinstance(v, (list, tuple)) for v in value):
        value = [value]  # one flat box
    out = []
    for i, box in enumerate(value):
        if not isinstance(box, (list, tuple)):
            raise Rejected("box_arity", f"box {i} is {box!r}, not a list of 4 numbers")
        if len(box) != 4:
            raise Rejected("box_arity", f"box {i} has {len(box)} values, not 4")
        if not all(_is_number(v) for v in box):
            raise Rejected("non_numeric", f"box {i} = {list(box)!r}")
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 < x1 or y2 < y1:
            raise Rejected("box_inverted", f"box {i} = {[x1, y1, x2, y2]}")
        if x2 == x1 or y2 == y1:
            raise Rejected("box_zero_area", f"box {i} = {[x1, y1, x2, y2]}")
        out.append([x1, y1, x2, y2])
    return out


def check_boxes_in_image(bxs: Sequence[Sequence[float]], width: int, height: int) -> None:
    for i, (x1, y1, x2, y2) in enumerate(bxs):
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise Rejected("box_outside_image", f"box {i} = {[x1, y1, x2, y2]} in a {width}x{height} image")


def check_aspect_ratio(width: int, height: int) -> None:
    """Qwen's smart_resize raises on such images mid-training; catch them here instead."""
    try:
        smart_resize(height, width)
    except ValueError as exc:
        raise Rejected("aspect_ratio", f"{width}x{height}") from exc


def check_size(declared_w: int | None, declared_h: int | None, width: int, height: int) -> None:
    if (declared_w is not None and declared_w != width) or (declared_h is not None and declared_h != height):
        raise Rejected(
            "size_mismatch", f"the row says {declared_w}x{declared_h}, the image is {width}x{height}"
        )
