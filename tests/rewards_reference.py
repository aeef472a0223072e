"""Straightforward reference implementation of the SATORI rewards (tests and benchmark only).

It computes the formulas the way the original plugin did (regexes, `ast.literal_eval`,
shapely unions, NLTK `sentence_bleu`, rouge-score), plus the documented fixes, so the fast
implementation in `satori_cli.rewards` can be checked against it case by case.

BLEU tokens: the original called `nltk.word_tokenize(text.lower())`, which needs the
`punkt_tab` data package and raised LookupError without it. The reference here is what
that call computes without sentence splitting, `word_tokenize(text.lower(),
preserve_line=True)`, i.e. `NLTKWordTokenizer().tokenize(text.lower())` (no data needed).
"""

from __future__ import annotations

import ast
import math
import re

from nltk.tokenize.destructive import NLTKWordTokenizer
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_score import rouge_scorer
from shapely.geometry import box
from shapely.ops import unary_union

from satori_cli.pixels import PixelBudget, smart_resize

_FORMAT = re.compile(
    r"\A\s*<caption>(.*?)</caption>\s*<bbox>\s*\[\s*\[(.*?)\]\s*\]\s*</bbox>\s*<answer>(.*?)</answer>\s*\Z",
    re.DOTALL,
)
_TAG = re.compile(r"</?(?:caption|bbox|answer)>")
_TOKENIZER = NLTKWordTokenizer()
_SMOOTH = SmoothingFunction().method1
_ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
MAX_BOXES = 50
MAX_ABS = 1e6
MAX_SIDE = 1_000_000


def ref_format(text: str) -> float:
    m = _FORMAT.match(text)
    return 1.0 if m and not any(_TAG.search(g) for g in m.groups()) else 0.0


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= MAX_ABS


def _boxes(value):
    if isinstance(value, list) and len(value) == 4 and all(_is_num(v) for v in value):
        value = [value]
    if not isinstance(value, list):
        return None
    if not all(isinstance(b, list) and len(b) == 4 and all(_is_num(v) for v in b) for b in value):
        return None
    return value


def ref_bbox(text: str, gt, width, height, budget: PixelBudget) -> float:
    m = re.search(r"<bbox>(.*?)</bbox>", text, re.DOTALL)
    if not m:
        return 0.0
    try:
        pred = _boxes(ast.literal_eval(m.group(1)))
    except Exception:
        return 0.0
    gt = _boxes(gt)
    if not pred or not gt or len(pred) > MAX_BOXES:
        return 0.0
    if not (_is_num(width) and _is_num(height) and 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        return 0.0
    try:
        in_h, in_w = smart_resize(height, width, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels)
    except ValueError:
        return 0.0
    sx, sy = width / in_w, height / in_h
    p = unary_union([box(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in pred])
    g = unary_union([box(*b) for b in gt])
    return p.intersection(g).area / (p.union(g).area + 1e-6)


def _first(text: str, tag: str):
    m = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return m.group(1).strip() if m else None


def ref_vqa(text: str, possible_answers) -> float:
    answer = _first(text, "answer")
    if isinstance(possible_answers, str):
        possible_answers = [possible_answers]
    if not isinstance(possible_answers, list):
        return 0.0
    accepted = [a if isinstance(a, str) else str(a) for a in possible_answers if not isinstance(a, bool)]
    return 1.0 if answer is not None and answer in accepted else 0.0


def ref_bleu(pred: str, ref: str) -> float:
    return sentence_bleu(
        [_TOKENIZER.tokenize(ref.lower())], _TOKENIZER.tokenize(pred.lower()), smoothing_function=_SMOOTH
    )


def ref_rouge(pred: str, ref: str) -> float:
    return _ROUGE.score(ref, pred)["rougeL"].fmeasure


def ref_caption(text: str, image_caption) -> float:
    caption = _first(text, "caption")
    if caption is None or not isinstance(image_caption, str):
        return 0.0
    return (ref_bleu(caption, image_caption) + ref_rouge(caption, image_caption)) / 2


def ref_score_all(completions, bboxs, width, height, possible_answers, image_caption, budget=None):
    budget = budget or PixelBudget.from_env()
    rows = list(zip(completions, bboxs, width, height, possible_answers, image_caption, strict=False))
    return {
        "external_format": [ref_format(c) for c, *_ in rows],
        "external_bbox_acc": [ref_bbox(c, b, w, h, budget) for c, b, w, h, _, _ in rows],
        "extern_vqa_acc": [ref_vqa(c, a) for c, _, _, _, a, _ in rows],
        "external_caption_acc": [ref_caption(c, cap) for c, *_, cap in rows],
    }
