"""The four SATORI rewards as small pure batch functions, TRL-style: completions plus data
set columns in (keyword arguments, one value per completion), one float in [0, 1] per
completion out.

They compute the paper's formulas with the libraries the original plugin used (shapely
for the box unions, NLTK's `sentence_bleu` and rouge-score for the caption), read every
completion with the one output parser (`satori_cli.grammar`) and map boxes with the one
pixel budget (`satori_cli.pixels`). Nothing here raises on a strange completion or a
strange column value (huge integers, NaN, nested lists, text): it scores 0. A missing
column is a set-up error and raises ColumnError at once. The libraries are imported on
first use, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import re
import string
from collections.abc import Sequence
from functools import lru_cache

from satori_cli.grammar import Grammar, parse, parse_boxes
from satori_cli.pixels import PixelBudget

MAX_ABS_COORD = 1e6  # pixels; a box coordinate beyond this scores 0 (absurd, and guards overflow)
MAX_IMAGE_SIDE = 1_000_000  # pixels; a larger width or height in the data scores 0
MAX_GT_BOXES = 1000  # ground-truth boxes per row; more scores 0 instead of a slow union
# Characters of a caption (predicted or reference) that are scored; a longer one scores 0.
# ROUGE-L's LCS costs (reference tokens x predicted tokens): 30 ms at this length, 0.5 s at 4x.
MAX_CAPTION_CHARS = 2_000
LIBRARIES = {"nltk": "nltk", "rouge_score": "rouge-score", "shapely": "shapely"}


def missing_libraries() -> list[str]:
    """The pip names of the reward libraries that are not installed (the `rewards` extra).

    >>> missing_libraries()
    []
    """
    return [pip for module, pip in LIBRARIES.items() if importlib.util.find_spec(module) is None]


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
def format_reward(
    completions: Sequence[object], grammar: str | Grammar | None = None, **kwargs: object
) -> list[float]:
    """1.0 iff the completion is exactly the grammar's tags in order (default `satori`: caption,
    [[...]] boxes, answer), with only whitespace around them (else 0.0).

    >>> format_reward([
    ...     "<caption>a cat</caption> <bbox>[[1,2,3,4]]</bbox> <answer>yes</answer>",
    ...     "<caption>a cat</caption> <bbox>[[1,2,3,4]]</bbox> <answer>yes</answer>\\nmore",
    ... ])
    [1.0, 0.0]
    >>> format_reward(["<think>warm</think> <answer>red</answer>", "<answer>red</answer>"], grammar="r1")
    [1.0, 0.0]
    """
    return [1.0 if parse(c, grammar=grammar).well_formed else 0.0 for c in completions]


# -- bbox -----------------------------------------------------------------------------
def _number(value: object) -> float | None:
    """A finite float from a JSON/numpy number or numeric text; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        return None
    try:
        v = float(value)
    except (ValueError, OverflowError):  # "abc"; an int beyond the float range
        return None
    return v if math.isfinite(v) else None


def _usable(boxes: Sequence[Sequence[float | None]]) -> bool:
    return all(v is not None and abs(v) <= MAX_ABS_COORD for b in boxes for v in b)


def _gt_boxes(value: object) -> list[tuple[float | None, ...]] | None:
    """Ground-truth boxes from a column value: [[x1,y1,x2,y2], ...], one flat box, or that as text."""
    if isinstance(value, str):
        boxes, _ = parse_boxes(value)
        return None if boxes is None else list(boxes)
    if hasattr(value, "tolist"):  # numpy arrays from pandas / datasets
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return None
    if len(value) == 4 and not any(isinstance(v, (list, tuple)) for v in value):
        value = [value]
    if len(value) > MAX_GT_BOXES:
        return None
    boxes = []
    for b in value:
        if hasattr(b, "tolist"):
            b = b.tolist()
        if not isinstance(b, (list, tuple)) or len(b) != 4:
            return None
        boxes.append(tuple(_number(v) for v in b))
    return boxes


def union_iou(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> float:
    """area(P∪ ∩ G∪) / (area(P∪ ∪ G∪) + 1e-6) with shapely, as the original: overlaps count once.

    >>> round(union_iou([(0, 0, 10, 10), (5, 0, 15, 10)], [(0, 0, 15, 10)]), 6)
    1.0
    >>> round(union_iou([(0, 0, 10, 10)], [(5, 0, 15, 10)]), 4)
    0.3333
    """
    from shapely import box, union_all
    from shapely.errors import GEOSException

    try:
        p = union_all([box(*b) for b in pred])
        g = union_all([box(*b) for b in gt])
        return p.intersection(g).area / (p.union(g).area + 1e-6)
    except GEOSException:  # not seen with finite axis-aligned boxes; a reward never raises
        return 0.0


BOX_SPACES = ("resized", "original")  # where a completion's boxes are: the model's input, or the image


def box_score(
    completion: object,
    gt_boxes: object,
    width: object,
    height: object,
    budget: PixelBudget,
    boxes: str = "resized",
) -> float:
    """Union IoU of one completion's boxes with the ground truth (original pixels). The boxes are
    in the model's resized-input pixels (mapped with `budget`), or with `boxes="original"` in the
    original image's pixels already (no mapping)."""
    pred = parse(completion).boxes
    gt = _gt_boxes(gt_boxes)
    w, h = _number(width), _number(height)
    if not pred or not gt or not _usable(pred) or not _usable(gt) or w is None or h is None:
        return 0.0
    if not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
        return 0.0
    mapped: Sequence[Sequence[float]] = pred
    if boxes != "original":
        try:
            mapped = budget.to_original(pred, w, h)
        except (ValueError, OverflowError, ZeroDivisionError):
            return 0.0  # e.g. aspect ratio above 200: the original raised and stopped training
    return min(max(union_iou(mapped, gt), 0.0), 1.0)


def bbox_reward(
    completions: Sequence[object],
    bboxs: Sequence[object] | None = None,
    width: Sequence[object] | None = None,
    height: Sequence[object] | None = None,
    budget: PixelBudget | None = None,
    boxes: str = "resized",
    **kwargs: object,
) -> list[float]:
    """Union IoU of the predicted boxes, given in the model's resized-input pixels, with the
    ground-truth `bboxs` in original `width` x `height` pixels. The budget defaults to
    $MIN_PIXELS/$MAX_PIXELS, else the paper's 256-512 x 28²; under it 640x480 is 644x476.
    `boxes="original"`: the predicted boxes are in original pixels already (another model
    family's, or hand-written), so they are compared as they are.

    >>> scores = bbox_reward(
    ...     ["<bbox>[[0, 0, 644, 476]]</bbox>", "<bbox>[[0, 0, 322, 476]]</bbox>", "no boxes"],
    ...     bboxs=[[[0, 0, 640, 480]]] * 3, width=[640] * 3, height=[480] * 3,
    ...     budget=PixelBudget(200704, 401408),
    ... )
    >>> [round(s, 6) for s in scores]
    [1.0, 0.5, 0.0]
    """
    n = len(completions)
    bboxs, width, height = (
        _column(k, v, n) for k, v in (("bboxs", bboxs), ("width", width), ("height", height))
    )
    if boxes not in BOX_SPACES:
        raise ValueError(f"boxes must be one of {BOX_SPACES}, not {boxes!r}")
    budget = budget or PixelBudget.from_env()
    return [
        box_score(c, b, w, h, budget, boxes)
        for c, b, w, h in zip(completions, bboxs, width, height, strict=True)
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
            try:
                out.append(str(v))  # JSON numbers: 3 means "3"
            except ValueError:  # an int over 4300 digits has no str()
                continue
    return out


_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = str.maketrans({ch: " " for ch in string.punctuation})


def normalize_answer(text: str) -> str:
    """Lowercase, punctuation to spaces, drop English articles, collapse whitespace.

    >>> normalize_answer("  The  Dark-Red. ")
    'dark red'
    """
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def vqa_reward(
    completions: Sequence[object],
    possible_answers: Sequence[object] | None = None,
    normalized: bool = False,
    **kwargs: object,
) -> list[float]:
    """1.0 iff the first <answer>, stripped, equals one of `possible_answers` exactly (the
    paper's rule); with `normalized`, after `normalize_answer` on both sides.

    >>> vqa_reward(["<answer>No</answer>", "<answer>No.</answer>"], possible_answers=[["No"], ["No"]])
    [1.0, 0.0]
    >>> vqa_reward(["<answer>No.</answer>"], possible_answers=[["no"]], normalized=True)
    [1.0]
    """
    accepted_per_row = _column("possible_answers", possible_answers, len(completions))
    key = normalize_answer if normalized else str
    scores = []
    for c, accepted in zip(completions, accepted_per_row, strict=True):
        answer = parse(c).answer
        ok = answer is not None and key(answer) in {key(a) for a in _answers(accepted)}
        scores.append(1.0 if ok else 0.0)
    return scores


# -- caption --------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _caption_metrics():
    from nltk.tokenize import word_tokenize
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_score.rouge_scorer import RougeScorer

    smoothing = SmoothingFunction().method1
    rouge = RougeScorer(["rougeL"], use_stemmer=True)

    def score(prediction: str, reference: str) -> float:
        # word_tokenize(text) needs NLTK's punkt_tab data (its absence crashed the original's
        # training); preserve_line=True is the same Treebank word rules without the sentence
        # splitter, so no download: only a period ending a non-final sentence stays on its word.
        ref_tokens = word_tokenize(reference.lower(), preserve_line=True)
        hyp_tokens = word_tokenize(prediction.lower(), preserve_line=True)
        bleu = sentence_bleu([ref_tokens], hyp_tokens, smoothing_function=smoothing)
        return (bleu + rouge.score(reference, prediction)["rougeL"].fmeasure) / 2

    return score


def caption_score(prediction: str, reference: str) -> float:
    """½ BLEU-4 (NLTK, smoothing method1) + ½ ROUGE-L F1 (rouge-score, Porter stemming);
    0 for a caption longer than MAX_CAPTION_CHARS.

    >>> caption_score("A bird perched on a branch.", "A bird perched on a branch.")
    1.0
    """
    if len(prediction) > MAX_CAPTION_CHARS or len(reference) > MAX_CAPTION_CHARS:
        return 0.0
    return _cached_caption_score(prediction, reference)


@lru_cache(maxsize=4096)  # late in training many rollouts of a prompt repeat one caption
def _cached_caption_score(prediction: str, reference: str) -> float:
    return min(max(_caption_metrics()(prediction, reference), 0.0), 1.0)


def caption_reward(
    completions: Sequence[object], image_caption: Sequence[object] | None = None, **kwargs: object
) -> list[float]:
    """½ smoothed BLEU-4 + ½ ROUGE-L F1 of the first <caption> against `image_caption`.

    >>> ref = "The image features a bird perched on a branch with green leaves and red berries."
    >>> scores = caption_reward(
    ...     ["<caption>A bird perched on a branch with red berries.</caption>", "no caption"],
    ...     image_caption=[ref, ref],
    ... )
    >>> [round(s, 2) for s in scores]
    [0.59, 0.0]
    """
    refs = _column("image_caption", image_caption, len(completions))
    scores = []
    for c, ref in zip(completions, refs, strict=True):
        caption = parse(c).caption
        ok = caption is not None and isinstance(ref, str)
        scores.append(caption_score(caption, ref) if ok else 0.0)
    return scores
