"""The four SATORI rewards as pure batch functions: completions plus data set columns in,
one float in [0, 1] per completion out.

They follow the paper's formulas (see README, "Rewards"), read every completion with the
one output parser (`satori_cli.grammar`) and map boxes with the one pixel budget
(`satori_cli.pixels`). Nothing here raises on a strange completion or a strange column
value: it scores 0. A missing column is a set-up error and raises ColumnError at once.
"""

from __future__ import annotations

import math
import numbers
import re
import string
from collections.abc import Callable, Sequence
from functools import lru_cache

from satori_cli.grammar import Completion, parse, parse_boxes
from satori_cli.pixels import PixelBudget, smart_resize
from satori_cli.rewards.caption_metrics import caption_score
from satori_cli.rewards.iou import union_iou

MAX_ABS_COORD = 1e6  # pixels; a box coordinate beyond this scores 0 (absurd, and guards overflow)
MAX_IMAGE_SIDE = 1_000_000  # pixels; a larger width or height in the data scores 0
MAX_GT_BOXES = 1000  # ground-truth boxes per row; more scores 0 instead of a slow sweep


@lru_cache(maxsize=16384)
def _parsed(text: str) -> Completion:
    # ms-swift calls each reward separately on the same completions: parse each once.
    return parse(text)


def parse_completion(text: object) -> Completion:
    """`grammar.parse`, memoised for strings (the four rewards share the work)."""
    return _parsed(text) if isinstance(text, str) else parse(text)


class ColumnError(ValueError):
    """A reward column is missing or has the wrong length: a set-up error, not a bad completion."""


def _column(name: str, values: Sequence[object] | None, n: int) -> Sequence[object]:
    if values is None:
        raise ColumnError(f"the reward needs the data set column '{name}', which is missing")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ColumnError(f"column '{name}' must hold one value per completion")
    if len(values) != n:
        raise ColumnError(f"column '{name}' has {len(values)} values for {n} completions")
    return values


# -- format ---------------------------------------------------------------------------
def format_reward(completions: Sequence[object], **_: object) -> list[float]:
    """1.0 iff the completion is exactly caption, [[...]] boxes, answer, in order (else 0.0)."""
    return [1.0 if parse_completion(c).well_formed else 0.0 for c in completions]


# -- bbox -----------------------------------------------------------------------------
def _number(value: object) -> float | None:
    """A finite float from a JSON/numpy number or numeric text; None for anything else."""
    kind = type(value)
    if kind is float or kind is int:  # the usual case, without the slow ABC check
        v = float(value)
    elif kind is bool:
        return None
    elif isinstance(value, numbers.Real):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value)
        except ValueError:
            return None
    else:
        return None
    return v if math.isfinite(v) else None


@lru_cache(maxsize=4096)
def _scale(width: float, height: float, min_pixels: int, max_pixels: int) -> tuple[float, float] | None:
    """(sx, sy) from resized-input pixels to original pixels, or None for an unusable size."""
    try:
        in_h, in_w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    except (ValueError, OverflowError, ZeroDivisionError):
        return None  # e.g. aspect ratio above 200: the original raised and stopped training
    return width / in_w, height / in_h


def _boxes_of(value: object) -> list[tuple[float, float, float, float]] | None:
    """Ground-truth boxes from a column value: [[x1,y1,x2,y2], ...], one flat box, or that as text."""
    if type(value) is list:
        known, boxes = _float_boxes(value)
        if known:
            return boxes
    if isinstance(value, str):
        boxes, _ = parse_boxes(value)
        return None if boxes is None else list(boxes)
    if hasattr(value, "tolist"):  # numpy arrays from pandas / datasets
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return None
    if len(value) == 4 and all(not isinstance(v, (list, tuple)) for v in value):
        value = [value]
    if len(value) > MAX_GT_BOXES:
        return None
    boxes = []
    for b in value:
        if hasattr(b, "tolist"):
            b = b.tolist()
        if not isinstance(b, (list, tuple)) or len(b) != 4:
            return None
        x1, y1, x2, y2 = (_number(v) for v in b)
        if x1 is None or y1 is None or x2 is None or y2 is None:
            return None
        if max(abs(x1), abs(y1), abs(x2), abs(y2)) > MAX_ABS_COORD:
            return None
        boxes.append((x1, y1, x2, y2))
    return boxes


_FLOAT_OR_INT = (float, int)  # exact types: bool and numpy scalars take the general path


def _float_boxes(value: list) -> tuple[bool, list[tuple[float, float, float, float]] | None]:
    """`_boxes_of` for the usual column value, a list of [x1,y1,x2,y2] lists of JSON numbers.

    Returns (True, what `_boxes_of` returns) for such a value, (False, None) for any other
    shape. A float or int within ±MAX_ABS_COORD (NaN never is) is exactly what `_number`
    and the range check accept, and converts to float without overflow.
    """
    if not value or len(value) > MAX_GT_BOXES:
        return False, None
    boxes = []
    low, high = -MAX_ABS_COORD, MAX_ABS_COORD
    for b in value:
        if type(b) is not list or len(b) != 4:
            return False, None
        x1, y1, x2, y2 = b
        if not (type(x1) in _FLOAT_OR_INT and type(y1) in _FLOAT_OR_INT):
            return False, None
        if not (type(x2) in _FLOAT_OR_INT and type(y2) in _FLOAT_OR_INT):
            return False, None
        if not (low <= x1 <= high and low <= y1 <= high and low <= x2 <= high and low <= y2 <= high):
            return True, None  # NaN, infinite or beyond MAX_ABS_COORD
        boxes.append((float(x1), float(y1), float(x2), float(y2)))
    return True, boxes


def box_score(
    completion: object, gt_boxes: object, width: object, height: object, budget: PixelBudget
) -> float:
    """Union IoU of one completion's boxes (resized-input pixels) with the ground truth (original pixels)."""
    pred = parse_completion(completion).boxes
    if not pred:
        return 0.0
    w, h = _number(width), _number(height)
    if w is None or h is None or not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
        return 0.0
    gt = _boxes_of(gt_boxes)
    if not gt:
        return 0.0
    scale = _scale(w, h, budget.min_pixels, budget.max_pixels)
    if scale is None:
        return 0.0
    sx, sy = scale
    mapped = []
    low, high = -MAX_ABS_COORD, MAX_ABS_COORD
    for x1, y1, x2, y2 in pred:  # finite floats (the grammar rejects others)
        if not (low <= x1 <= high and low <= y1 <= high and low <= x2 <= high and low <= y2 <= high):
            return 0.0
        mapped.append((x1 * sx, y1 * sy, x2 * sx, y2 * sy))
    return union_iou(mapped, gt)


def bbox_reward(
    completions: Sequence[object],
    bboxs: Sequence[object] | None = None,
    width: Sequence[object] | None = None,
    height: Sequence[object] | None = None,
    budget: PixelBudget | None = None,
    **_: object,
) -> list[float]:
    """Union IoU of predicted and ground-truth boxes; the budget defaults to MIN_PIXELS/MAX_PIXELS."""
    n = len(completions)
    bboxs, width, height = (
        _column(k, v, n) for k, v in (("bboxs", bboxs), ("width", width), ("height", height))
    )
    budget = budget or PixelBudget.from_env()
    return [
        box_score(c, b, w, h, budget) for c, b, w, h in zip(completions, bboxs, width, height, strict=False)
    ]


# -- vqa ------------------------------------------------------------------------------
def _answers(value: object) -> list[str]:
    """Accepted answers: a list of strings; a plain string is ONE answer (never a substring test)."""
    if isinstance(value, str):
        return [value]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple, set, frozenset)):
        return []
    out = []
    for v in value:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            out.append(str(v))  # JSON numbers: 3 means "3"
    return out


def vqa_reward(
    completions: Sequence[object], possible_answers: Sequence[object] | None = None, **_: object
) -> list[float]:
    """1.0 iff the first <answer>, stripped, equals one of `possible_answers` exactly."""
    answers = _column("possible_answers", possible_answers, len(completions))
    scores = []
    for c, accepted in zip(completions, answers, strict=False):
        answer = parse_completion(c).answer
        scores.append(1.0 if answer is not None and answer in _answers(accepted) else 0.0)
    return scores


_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = str.maketrans({ch: " " for ch in string.punctuation})


def normalize_answer(text: str) -> str:
    """Lowercase, punctuation to spaces, drop English articles, collapse whitespace."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def vqa_normalized_reward(
    completions: Sequence[object], possible_answers: Sequence[object] | None = None, **_: object
) -> list[float]:
    """Like `vqa_reward` after `normalize_answer` on both sides ("No." matches "no")."""
    answers = _column("possible_answers", possible_answers, len(completions))
    scores = []
    for c, accepted in zip(completions, answers, strict=False):
        answer = parse_completion(c).answer
        ok = answer is not None and normalize_answer(answer) in {
            normalize_answer(a) for a in _answers(accepted)
        }
        scores.append(1.0 if ok else 0.0)
    return scores


# -- caption --------------------------------------------------------------------------
def caption_reward(
    completions: Sequence[object], image_caption: Sequence[object] | None = None, **_: object
) -> list[float]:
    """½ smoothed BLEU-4 + ½ ROUGE-L F1 of the first <caption> against `image_caption`."""
    refs = _column("image_caption", image_caption, len(completions))
    scores = []
    for c, ref in zip(completions, refs, strict=False):
        caption = parse_completion(c).caption
        if caption is None or not isinstance(ref, str):
            scores.append(0.0)
            continue
        score = caption_score(caption, ref)
        scores.append(min(max(score, 0.0), 1.0))
    return scores


# -- all at once ----------------------------------------------------------------------
REWARD_FUNCS = ("external_format", "external_bbox_acc", "extern_vqa_acc", "external_caption_acc")
NORMALIZED_VQA = "external_vqa_norm_acc"

FUNCTIONS: dict[str, Callable[..., list[float]]] = {
    "external_format": format_reward,
    "external_bbox_acc": bbox_reward,
    "extern_vqa_acc": vqa_reward,
    "external_caption_acc": caption_reward,
    NORMALIZED_VQA: vqa_normalized_reward,
}

COLUMNS: dict[str, tuple[str, ...]] = {
    "external_format": (),
    "external_bbox_acc": ("bboxs", "width", "height"),
    "extern_vqa_acc": ("possible_answers",),
    "external_caption_acc": ("image_caption",),
    NORMALIZED_VQA: ("possible_answers",),
}


def score_all(
    completions: Sequence[object], budget: PixelBudget | None = None, **columns: Sequence[object]
) -> dict[str, list[float]]:
    """The four paper rewards at once, keyed by their ms-swift names (`REWARD_FUNCS`)."""
    # Each completion is parsed once: `parse_completion` memoises, the four rewards share it.
    completions = list(completions)
    budget = budget or PixelBudget.from_env()
    return {
        "external_format": format_reward(completions),
        "external_bbox_acc": bbox_reward(
            completions, budget=budget, **_pick(columns, COLUMNS["external_bbox_acc"])
        ),
        "extern_vqa_acc": vqa_reward(completions, **_pick(columns, COLUMNS["extern_vqa_acc"])),
        "external_caption_acc": caption_reward(
            completions, **_pick(columns, COLUMNS["external_caption_acc"])
        ),
    }


def _pick(columns: dict[str, Sequence[object]], names: tuple[str, ...]) -> dict[str, Sequence[object] | None]:
    return {name: columns.get(name) for name in names}
