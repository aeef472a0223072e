"""Which raw column feeds which field of a prepared row, and its typed value, or why not.

VQA-Verify's exact schema is not documented (it is very likely a Visual-CoT subset, whose
fields are `question`, `answer`, `image`, `bboxs`, `width`, `height`, `dataset`, `split`),
so each field is looked up under its usual names, in order (`ALIASES`), and the user can point
any field at another column with `--column field=column`.

Every check raises `Rejected(reason, detail)`; `reason` is one of `REASONS` (a short code
counted in the summary) and `detail` says what exactly was wrong with this row. Nothing is
silently fixed: a box outside the image is rejected, not clamped, and a NaN answer is not
turned into the word "nan".

Text fields have documented caps (`MAX_*` below, README "Data"): a row over one is rejected
as `over_limit`. They are far above what a 2048-token training prompt can hold, and they keep
a 50 MB "question" from reaching the tokenizer, the rewards or `satori report`.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from satori_cli.errors import SatoriError, one_line
from satori_cli.pixels import MAX_RATIO, smart_resize
from satori_cli.rewards import MAX_GT_BOXES

IMAGE_TAG = "<image>"
MAX_ID_CHARS = 256
MAX_QUESTION_CHARS = 8_000
MAX_CAPTION_CHARS = 8_000
MAX_ANSWER_CHARS = 2_000  # each possible answer
MAX_ANSWERS = 100
MAX_BOXES = MAX_GT_BOXES  # what the bbox reward scores; more would score 0 anyway

REASONS = {
    "malformed_row": "the row is not a JSON object / could not be decoded",
    "not_utf8": "text that is not valid UTF-8 (invalid bytes, or a lone \\ud800-\\udfff escape)",
    "over_limit": f"a field over its size cap (question/caption {MAX_QUESTION_CHARS:,} chars, "
    f"answer {MAX_ANSWER_CHARS:,}, {MAX_ANSWERS} answers, {MAX_BOXES:,} boxes, id {MAX_ID_CHARS})",
    "bad_id": f"an id that is not a non-empty string or whole number of at most {MAX_ID_CHARS} chars",
    "duplicate_id": "an id an earlier written row already has (rows are joined by id later)",
    "missing_question": "no question, or an empty one",
    "missing_answer": "no answer, or only empty ones",
    "bad_answer": "an answer that is not text or a finite number (NaN, a bool, a nested object)",
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
    "unexpected_error": "a check failed in a way satori did not foresee (please report it)",
}
MAX_DETAIL_CHARS = 300


# field -> raw column names tried in order (the first present and non-null one wins)
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "question_id", "qid", "uid", "sample_id"),
    "question": ("question", "query", "problem", "prompt", "instruction"),
    "answer": ("possible_answers", "answers", "answer", "solution", "response", "label"),
    "image": ("images", "image", "image_path", "img", "image_bytes", "file_name", "filename"),
    "bboxs": ("bboxs", "bboxes", "bbox", "boxes", "box"),
    "width": ("width", "image_width", "w"),
    "height": ("height", "image_height", "h"),
    "caption": ("image_caption", "caption", "captions"),
    "source": ("source", "dataset", "data_source"),
    "messages": ("messages", "conversations"),
}
# --column also accepts a field under its name in a prepared row
PREPARED_NAMES = {
    "image_caption": "caption",
    "possible_answers": "answer",
    "answers": "answer",
    "images": "image",
}


def parse_mapping(items: Iterable[str] | None) -> dict[str, str]:
    """Turn `["question=prompt_text", ...]` into {field: column}, checking the fields."""
    mapping: dict[str, str] = {}
    for item in items or ():
        if "=" not in item:
            raise SatoriError(
                f"--column expects FIELD=COLUMN, got '{item}'", hint="e.g. --column question=prompt"
            )
        field, column = (part.strip() for part in item.split("=", 1))
        field = PREPARED_NAMES.get(field, field)
        if field not in ALIASES:
            raise SatoriError(
                f"unknown field '{field}' in --column", hint=f"fields are: {', '.join(ALIASES)}"
            )
        if not column:
            raise SatoriError(f"empty column name for field '{field}' in --column")
        mapping[field] = column
    return mapping


def check_mapping(mapping: Mapping[str, str], columns: Iterable[str], where: str) -> None:
    """Fail early (one line) when a user-mapped column is absent from the data."""
    present = set(columns)
    missing = [f"{field}={column}" for field, column in mapping.items() if column not in present]
    if missing:
        raise SatoriError(
            f"--column {', '.join(missing)}: no such column in {where}",
            hint=f"columns there: {', '.join(sorted(present)) or '(none)'}",
        )


def pick(record: Mapping[str, object], mapping: Mapping[str, str]) -> dict[str, object]:
    """The raw value of every field for one record (None where nothing matches)."""
    out = {
        field: next((record[name] for name in names if record.get(name) is not None), None)
        for field, names in ALIASES.items()
    }
    out.update((field, record.get(column)) for field, column in mapping.items())
    return out


class Rejected(Exception):
    """This row cannot be trained on; `reason` is a key of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REASONS, reason
        detail = one_line(detail, MAX_DETAIL_CHARS)  # details quote user data: one short line
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail or REASONS[reason]


def finite(value: object) -> float | None:
    """The value as a finite float, or None (bools, NaN, inf, and ints too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # a 400-digit integer
        return None
    return number if math.isfinite(number) else None


def _kind(value: object) -> str:
    return "absent" if value is None else f"a {type(value).__name__}"


def show(value: object, limit: int = 40) -> str:
    """A short, safe rendering of a user value (never a full repr of a big or deep object)."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    if value is None or isinstance(value, (bool, int, float)):
        if isinstance(value, int) and abs(value) >= 10**limit:
            return f"<a {value.bit_length()}-bit integer>"
        return repr(value)[:limit]
    size = f" of {len(value)}" if hasattr(value, "__len__") else ""
    return f"<{type(value).__name__}{size}>"


def text(value: object) -> str:
    """A non-empty string field, stripped ('' when absent or not text)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str):
        return value[0].strip()
    return ""


def capped(value: str, cap: int, name: str) -> str:
    if len(value) > cap:
        raise Rejected("over_limit", f"{name} of {len(value):,} characters (cap {cap:,})")
    return value


def row_id(value: object, fallback: str) -> str:
    """The row's id: a non-empty string or a whole number (the position in the file when absent)."""
    if value is None:
        return fallback
    if isinstance(value, float) and finite(value) is not None and value == int(value):
        value = int(value)  # a pandas int column with a gap reads as 17.0
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Rejected("bad_id", f"id is {_kind(value)}: {show(value)}")
    ident = str(value)
    if not ident.strip():
        raise Rejected("bad_id", "an empty id")
    if len(ident) > MAX_ID_CHARS:
        raise Rejected("bad_id", f"an id of {len(ident):,} characters (cap {MAX_ID_CHARS})")
    return ident


def question(value: object) -> str:
    """The question text without any `<image>` tag (the tag is put back in front)."""
    q = text(value).replace(IMAGE_TAG, "").strip()
    if not q:
        detail = "" if value is None or isinstance(value, str) else f"the question is {_kind(value)}"
        raise Rejected("missing_question", detail)
    return capped(q, MAX_QUESTION_CHARS, "a question")


def answers(value: object) -> list[str]:
    """possible_answers: always a non-empty list of non-empty strings.

    Accepts a string, a number, a list of those, a JSON-encoded list, or VQA-style
    `[{"answer": ...}, ...]`; duplicates and empty strings are dropped, order kept. NaN,
    infinities, bools and nested objects are rejected (`bad_answer`), not turned into text.
    """
    if isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]"):
        with contextlib.suppress(ValueError, RecursionError):
            value = json.loads(value)
    items = value if isinstance(value, (list, tuple)) else [value]
    if len(items) > MAX_ANSWERS:
        raise Rejected("over_limit", f"{len(items):,} answers (cap {MAX_ANSWERS})")
    out: list[str] = []
    for item in items:
        if isinstance(item, dict) and "answer" in item:
            item = item["answer"]
        if item is None:
            continue
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if finite(item) is None:
                raise Rejected("bad_answer", f"an answer of {show(item)}")
            item = f"{item:g}" if isinstance(item, float) else str(item)
        if not isinstance(item, str):
            raise Rejected("bad_answer", f"an answer that is {_kind(item)}")
        item = capped(item.strip(), MAX_ANSWER_CHARS, "an answer")
        if item and item not in out:
            out.append(item)
    if not out:
        raise Rejected("missing_answer")
    return out


def caption(value: object) -> str:
    c = text(value)
    if not c and isinstance(value, (list, tuple)):
        c = next((v.strip() for v in value if isinstance(v, str) and v.strip()), "")
    if not c:
        raise Rejected("missing_caption")
    return capped(c, MAX_CAPTION_CHARS, "a caption")


_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")


def dimension(value: object, name: str) -> int | None:
    """A width or height: a positive whole number, or None when absent."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) < 40 and _NUMBER.match(value):
        value = float(value)
    number = finite(value)
    if number is None or number <= 0 or number != int(number):
        raise Rejected("non_numeric", f"{name} = {show(value)} is not a positive whole number")
    return int(number)


def boxes(value: object) -> list[list[float]]:
    """Ground-truth boxes as a list of [x1, y1, x2, y2] floats.

    A flat list of 4 numbers is one box (the v2 paper figure writes it so); a JSON string
    of either form is decoded. Corner order and area are checked here, the image bounds
    in `check_image`.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise Rejected("non_numeric", f"bboxs is a string that is not JSON: {value[:40]!r}") from exc
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        raise Rejected("missing_boxes")
    if not isinstance(value, (list, tuple)):
        raise Rejected("non_numeric", f"bboxs is a {type(value).__name__}, not a list")
    if all(not isinstance(v, (list, tuple)) for v in value):
        value = [value]  # one flat box
    if len(value) > MAX_BOXES:
        raise Rejected("over_limit", f"{len(value):,} boxes (cap {MAX_BOXES:,})")
    out = []
    for i, box in enumerate(value):
        if not isinstance(box, (list, tuple)):
            raise Rejected("box_arity", f"box {i} is {show(box)}, not a list of 4 numbers")
        if len(box) != 4:
            raise Rejected("box_arity", f"box {i} has {len(box)} values, not 4")
        numbers = [finite(v) for v in box]
        if None in numbers:
            raise Rejected("non_numeric", f"box {i} = [{', '.join(show(v) for v in box)}]")
        x1, y1, x2, y2 = numbers
        if x2 < x1 or y2 < y1:
            raise Rejected("box_inverted", f"box {i} = {[x1, y1, x2, y2]}")
        if x2 == x1 or y2 == y1:
            raise Rejected("box_zero_area", f"box {i} = {[x1, y1, x2, y2]}")
        out.append([x1, y1, x2, y2])
    return out


def check_image(
    bxs: Sequence[Sequence[float]], declared_w: int | None, declared_h: int | None, width: int, height: int
) -> None:
    """The row against its decoded image: the size it declares, an aspect ratio Qwen's smart_resize
    accepts (it would raise mid-training), and every box inside."""
    if (declared_w is not None and declared_w != width) or (declared_h is not None and declared_h != height):
        raise Rejected(
            "size_mismatch", f"the row says {declared_w}x{declared_h}, the image is {width}x{height}"
        )
    try:
        smart_resize(height, width)
    except ValueError as exc:
        raise Rejected("aspect_ratio", f"{width}x{height}") from exc
    for i, (x1, y1, x2, y2) in enumerate(bxs):
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise Rejected("box_outside_image", f"box {i} = {[x1, y1, x2, y2]} in a {width}x{height} image")
