"""The grounding benchmark: prepared SATORI rows in, the training rewards as evaluation metrics out.

MMBench and MMStar score only the final letter; SATORI's claim is that the model looks at the
right regions first. A prepared JSONL (`satori data prepare`, e.g. its `val.jsonl`) carries
what that needs: the question, the image, ground-truth `bboxs` in original pixels, `width`,
`height`, `possible_answers`, `image_caption` and an optional `source`. Each model output is
scored with the rewards of `satori_cli.rewards` under the evaluation's pixel budget (the model
answers in its resized input's pixels, mapped back exactly as in training):

- `format`: the format reward; `box_iou`: the union IoU (box reward); `box_acc@0.5`: union
  IoU >= 0.5; `answer`: exact match with `possible_answers` (the paper's rule);
  `answer_normalized`: after case / punctuation / articles; `caption`: the caption reward.
- The same six per `source`, as flat keys `source/<name>/<metric>`.

This module is pure (no VLMEvalKit import): the parent checks the file before launching
anything, and the worker's dataset class (`grounding_dataset`) reads and scores with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satori_cli.data.validate import IMAGE_TAG, finite, show
from satori_cli.errors import SatoriError
from satori_cli.pixels import PixelBudget

METRICS = ("format", "box_iou", "box_acc@0.5", "answer", "answer_normalized", "caption")
PRIMARY = "box_iou"  # the metric that says a grounding benchmark was scored
IOU_HIT = 0.5
SOURCE_PREFIX = "source/"
FOLDER_FILE = "val.jsonl"  # what `--data FOLDER` evaluates (the held-out split of `satori data prepare`)
MAX_LISTED = 5  # malformed lines named in the error


@dataclass(frozen=True)
class GroundingRow:
    """One scorable row; `line` (1-based) is its index in VLMEvalKit's files."""

    line: int
    id: str
    question: str
    image: str  # absolute path
    bboxs: list[list[float]]
    width: int
    height: int
    possible_answers: list[str]
    image_caption: str
    source: str | None


class BadRow(ValueError):
    """Why one line of the file cannot be scored."""


def data_file(path: Path) -> tuple[Path, str | None]:
    """The JSONL to evaluate and, for a folder, a note saying which file of it was picked."""
    path = Path(path).expanduser()
    if path.is_dir():
        chosen = path / FOLDER_FILE
        if not chosen.is_file():
            raise SatoriError(
                f"{path} holds no {FOLDER_FILE} (the held-out split of `satori data prepare`)",
                hint="prepare with --val-ratio 0.05, or pass the JSONL itself (e.g. its train.jsonl)",
            )
        return chosen.resolve(), f"{FOLDER_FILE} of {path}"
    if not path.is_file():
        raise SatoriError(f"grounding data not found: {path}")
    return path.resolve(), None


def benchmark_name(path: Path, taken: Sequence[str] = ()) -> str:
    """A VLMEvalKit-safe name for a JSONL: `grounding_<stem>`, with its folder when that is taken."""

    def clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "data"

    name = f"grounding_{clean(path.stem)}"
    if name in taken:
        name = f"grounding_{clean(path.parent.name)}_{clean(path.stem)}"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


# -- reading ---------------------------------------------------------------------------------
def _question(obj: dict[str, Any]) -> str:
    text: object = None
    messages = obj.get("messages")
    if isinstance(messages, list):
        for turn in messages:
            if isinstance(turn, dict) and turn.get("role") == "user":
                text = turn.get("content")
                if isinstance(text, list):  # OpenAI content blocks
                    blocks = [b for b in text if isinstance(b, dict) and b.get("type") == "text"]
                    text = " ".join(str(b.get("text", "")) for b in blocks)
                break
    elif messages is not None:
        raise BadRow("'messages' is not a list")
    if text is None:
        text = obj.get("query")
    if not isinstance(text, str) or not text.replace(IMAGE_TAG, "").strip():
        raise BadRow("no user message with a question")
    return text.replace(IMAGE_TAG, "").strip()


def _image(obj: dict[str, Any], base: Path) -> tuple[str, tuple[int, int]]:
    images = obj.get("images")
    if isinstance(images, (str, dict)):
        images = [images]
    if not isinstance(images, list) or len(images) != 1:
        raise BadRow("'images' must hold exactly one image")
    item = images[0]
    value = item.get("path") if isinstance(item, dict) else item
    if not isinstance(value, str) or not value:
        raise BadRow("the image is not a file path")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise BadRow(f"image not found: {path}")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:  # reads the header only
            size = im.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise BadRow(f"image {path} cannot be read ({type(exc).__name__})") from exc
    return str(path.resolve()), size


def _size(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRow(f"'{key}' is missing or not a number")
    if finite(value) is None or value <= 0 or value != int(value):
        raise BadRow(f"'{key}' = {show(value)} is not a positive whole number")
    return int(value)


def _boxes(value: object) -> list[list[float]]:
    if isinstance(value, list) and len(value) == 4 and not any(isinstance(v, list) for v in value):
        value = [value]  # one flat box
    if not isinstance(value, list) or not value:
        raise BadRow("'bboxs' is missing or empty (a list of [x1, y1, x2, y2] boxes)")
    out = []
    for i, box in enumerate(value):
        if not (isinstance(box, list) and len(box) == 4 and all(finite(v) is not None for v in box)):
            raise BadRow(f"box {i} of 'bboxs' is not 4 finite numbers: {str(box)[:60]}")
        out.append([float(v) for v in box])
    return out


def _answers(value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRow("'possible_answers' is missing or not a list of strings")
    return list(value)


def parse_row(line_no: int, text: str, base: Path) -> GroundingRow:
    """One line of the file as a row, or BadRow saying what is wrong with it."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadRow(f"not JSON ({str(exc)[:80]})") from exc
    if not isinstance(obj, dict):
        raise BadRow("not a JSON object")
    question = _question(obj)
    bboxs = _boxes(obj.get("bboxs"))
    width, height = _size(obj, "width"), _size(obj, "height")
    answers = _answers(obj.get("possible_answers"))
    caption = obj.get("image_caption")
    if not isinstance(caption, str) or not caption.strip():
        raise BadRow("'image_caption' is missing or empty")
    image, real = _image(obj, base)
    if real != (width, height):
        raise BadRow(f"width x height {width}x{height} differ from the image's {real[0]}x{real[1]}")
    source = obj.get("source")
    row_id = obj.get("id")
    return GroundingRow(
        line=line_no,
        id=str(row_id) if isinstance(row_id, (str, int)) and not isinstance(row_id, bool) else str(line_no),
        question=question,
        image=image,
        bboxs=bboxs,
        width=width,
        height=height,
        possible_answers=answers,
        image_caption=caption,
        source=source.strip() if isinstance(source, str) and source.strip() else None,
    )


def read_rows(path: Path) -> list[GroundingRow]:
    """Every row of a prepared JSONL; any malformed line fails the whole file, naming the lines.

    A benchmark scored on whatever rows happened to parse would not be comparable with
    another run of it, so nothing is skipped: the error lists the first MAX_LISTED lines.
    """
    path = Path(path)
    rows: list[GroundingRow] = []
    bad: list[tuple[int, str]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    rows.append(parse_row(number, text, path.parent))
                except BadRow as exc:
                    bad.append((number, str(exc)))
    except OSError as exc:
        raise SatoriError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if bad:
        listed = "; ".join(f"line {n}: {why}" for n, why in bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        raise SatoriError(
            f"{path}: {len(bad)} malformed row(s), nothing was run: {listed}{more}",
            hint="`satori data prepare` writes valid rows; fix or remove these lines",
        )
    if not rows:
        raise SatoriError(f"{path} holds no rows to evaluate")
    return rows


# -- scoring ---------------------------------------------------------------------------------
def score(
    rows: Sequence[GroundingRow], outputs: Sequence[str], budget: PixelBudget, grammar: str | None = None
) -> list[dict[str, Any]]:
    """Per-row scores of the model outputs (raw completions), with the training rewards.

    `format` is the format reward of the model's own grammar (an r1 model is judged on
    `<think>…<answer>`); the content metrics read the first tag of their kind in any grammar.
    """
    from satori_cli.grammar import extract_answer, get_grammar, parse
    from satori_cli.rewards import BY_NAME

    columns = {
        "bboxs": [r.bboxs for r in rows],
        "width": [r.width for r in rows],
        "height": [r.height for r in rows],
        "possible_answers": [r.possible_answers for r in rows],
        "image_caption": [r.image_caption for r in rows],
    }
    by_metric = {
        "format": BY_NAME[get_grammar(grammar).format_reward](outputs, budget=budget, **columns),
        "box_iou": BY_NAME["external_bbox_acc"](outputs, budget=budget, **columns),
        "answer": BY_NAME["extern_vqa_acc"](outputs, budget=budget, **columns),
        "answer_normalized": BY_NAME["external_vqa_norm_acc"](outputs, budget=budget, **columns),
        "caption": BY_NAME["external_caption_acc"](outputs, budget=budget, **columns),
    }
    by_metric["box_acc@0.5"] = [1.0 if v >= IOU_HIT else 0.0 for v in by_metric["box_iou"]]
    scored = []
    for i, (row, output) in enumerate(zip(rows, outputs, strict=True)):
        boxes = parse(output).boxes or ()
        try:
            mapped = [list(b) for b in budget.to_original(boxes, row.width, row.height)]
        except (ValueError, ZeroDivisionError):
            mapped = []
        scored.append(
            {
                "line": row.line,
                "id": row.id,
                "source": row.source,
                "question": row.question,
                "output": output,
                "prediction": extract_answer(output),
                "possible_answers": row.possible_answers,
                "boxes_original": mapped,  # the predicted boxes mapped to original pixels
                "bboxs": row.bboxs,
                **{m: by_metric[m][i] for m in METRICS},
            }
        )
    return scored


def _means(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {m: sum(float(r[m]) for r in rows) / len(rows) for m in METRICS}


def metrics(scored: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The six means over all rows, then per source (`source/<name>/<metric>`), sources sorted."""
    if not scored:
        return {}
    out = _means(scored)
    sources = sorted({r["source"] for r in scored if r.get("source")})
    for name in sources:
        for key, value in _means([r for r in scored if r.get("source") == name]).items():
            out[f"{SOURCE_PREFIX}{name}/{key}"] = value
    return out
