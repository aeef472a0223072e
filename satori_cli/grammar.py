"""The SATORI output grammar: one parser for the rewards, evaluation and the demo.

A completion has three checkable stages:

    <caption>scene</caption> <bbox>[[x1,y1,x2,y2], ...]</bbox> <answer>final answer</answer>

`parse` never raises and never evaluates code: box lists are read by a small regular
grammar (numbers in brackets), not by `eval` or `ast.literal_eval`, which is both safer
and several times faster on the reward hot path.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from satori_cli.pixels import Box

TAGS = ("caption", "bbox", "answer")
MAX_BOXES = 50  # more boxes than fit in a 512-token completion is noise, not grounding
MAX_BOX_PAYLOAD = 20_000  # characters; longer payloads are rejected before any parsing

_FIRST = {tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL) for tag in TAGS}
_ANY_TAG = re.compile(r"</?(?:caption|bbox|answer)>")
_WELL_FORMED = re.compile(
    r"\A\s*<caption>(?P<caption>.*?)</caption>\s*"
    r"<bbox>(?P<bbox>.*?)</bbox>\s*"
    r"<answer>(?P<answer>.*?)</answer>\s*\Z",
    re.DOTALL,
)

# What `_WELL_FORMED` matches when no part holds a '<': most completions, matched in a
# third of the time (no lazy scanning, no search for nested tags afterwards).
_PLAIN_WELL_FORMED = re.compile(
    r"\A\s*<caption>([^<]*)</caption>\s*<bbox>([^<]*)</bbox>\s*<answer>([^<]*)</answer>\s*\Z"
)

# Plain quantifiers only: possessive ones would save a little backtracking but need Python 3.11's `re`,
# and satori supports 3.10.
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_BOX_BODY = rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,?\s*\]"
_BOX_NC = rf"\[\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*,?\s*\]"
_BOX = re.compile(_BOX_BODY)
_FLAT = re.compile(rf"\s*{_BOX_BODY}\s*\Z")
_NESTED = re.compile(rf"\s*\[\s*(?:{_BOX_NC}\s*(?:,\s*{_BOX_NC}\s*)*,?\s*)?\]\s*\Z")
# The usual payload, a [[...]] list of one to three boxes, checked and read in one match.
_NESTED_1_TO_3 = re.compile(
    rf"\s*\[\s*{_BOX_BODY}(?:\s*,\s*{_BOX_BODY}(?:\s*,\s*{_BOX_BODY})?)?\s*,?\s*\]\s*\Z"
)
_NOT_A_BOX_LIST = "<bbox> does not hold a [[...]] list"
_NESTED_SHAPE = re.compile(r"\A\s*\[\s*\[.*\]\s*\]\s*\Z", re.DOTALL)


@dataclass(frozen=True)
class Completion:
    """What a model said, stage by stage. Absent or unreadable parts are None."""

    raw: str
    caption: str | None
    boxes: tuple[Box, ...] | None
    answer: str | None
    well_formed: bool
    reason: str | None  # why it is not well formed (None when it is)
    box_error: str | None  # why the <bbox> payload gave no boxes (None when it did)


def first_tag(text: str, tag: str) -> str | None:
    """The stripped content of the first <tag>...</tag>, or None."""
    m = _FIRST[tag].search(text)
    return m.group(1).strip() if m else None


def parse_boxes(payload: str) -> tuple[tuple[Box, ...] | None, str | None]:
    """Read `[[x1,y1,x2,y2], ...]` (or one flat `[x1,y1,x2,y2]`) into float boxes.

    Returns (boxes, None) or (None, reason). Never raises.
    """
    if not isinstance(payload, str):
        return None, "box payload is not text"
    if len(payload) > MAX_BOX_PAYLOAD:
        return None, f"box payload longer than {MAX_BOX_PAYLOAD} characters"
    m = _NESTED_1_TO_3.match(payload) or _FLAT.match(payload)
    if m is not None:
        numbers = m.groups()  # 4 from _FLAT; 12 from _NESTED_1_TO_3, None for absent boxes
        if len(numbers) == 12 and numbers[8] is None:
            numbers = numbers[:4] if numbers[4] is None else numbers[:8]
    elif _NESTED.match(payload):
        groups = _BOX.findall(payload)
        if len(groups) > MAX_BOXES:
            return None, f"more than {MAX_BOXES} boxes"
        numbers = tuple(itertools.chain.from_iterable(groups))
    else:
        return None, "not a list of [x1,y1,x2,y2] number boxes"
    values = tuple(map(float, numbers))
    # A finite sum means every value is finite; only an overflowing sum needs the slow look.
    if not math.isfinite(sum(values)) and not all(map(math.isfinite, values)):
        return None, "non-finite coordinate"
    if len(values) == 4:
        return (values,), None
    return tuple(values[i : i + 4] for i in range(0, len(values), 4)), None


def parse(text: object) -> Completion:
    """Split a completion into caption, boxes and answer, and say whether it is well formed.

    Each field comes from the *first* occurrence of its tag, wherever it is, so that a
    partially formatted completion still earns the rewards it deserves. `well_formed` is
    the strict check: the three tags exactly once, in order, with only whitespace around
    them and a `[[...]]` box list.

    >>> c = parse("<caption>a cat</caption> <bbox>[[1,2,3,4]]</bbox> <answer>yes</answer>")
    >>> c.caption, c.boxes, c.answer, c.well_formed
    ('a cat', ((1.0, 2.0, 3.0, 4.0),), 'yes', True)
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    parts = _well_formed_parts(text)
    if parts is not None:
        caption, payload, answer = parts
        boxes, box_error = parse_boxes(payload)
        shape_ok = _NESTED_SHAPE.match(payload) is not None
        return Completion(
            raw=text,
            caption=caption.strip(),
            boxes=boxes,
            answer=answer.strip(),
            well_formed=shape_ok,
            reason=None if shape_ok else _NOT_A_BOX_LIST,
            box_error=box_error,
        )
    caption = first_tag(text, "caption")
    answer = first_tag(text, "answer")
    payload = _FIRST["bbox"].search(text)
    if payload is None:
        boxes, box_error = None, "no <bbox> tag"
    else:
        boxes, box_error = parse_boxes(payload.group(1))
    reason = _format_problem(text)
    return Completion(
        raw=text,
        caption=caption,
        boxes=boxes,
        answer=answer,
        well_formed=reason is None,
        reason=reason,
        box_error=box_error,
    )


def _well_formed_parts(text: str) -> tuple[str, str, str] | None:
    """(caption, bbox payload, answer) of a completion with the three tags in order, only
    whitespace around them and no tag nested inside a part; else None.

    Then each part is exactly the first occurrence of its tag. The `[^<]` pattern reads the
    usual completion in one cheap match; the lazy pattern covers parts that hold a '<'.
    """
    m = _PLAIN_WELL_FORMED.match(text)
    if m is not None:
        return m.group(1), m.group(2), m.group(3)
    m = _WELL_FORMED.match(text)
    if m is not None and not any(_ANY_TAG.search(m.group(t)) for t in TAGS):
        return m.group("caption"), m.group("bbox"), m.group("answer")
    return None


def _format_problem(text: str) -> str | None:
    m = _WELL_FORMED.match(text)
    if m is None:
        missing = [t for t in TAGS if _FIRST[t].search(text) is None]
        if missing:
            return "missing " + ", ".join(f"<{t}>" for t in missing)
        return "tags out of order, or text outside the tags"
    for part in TAGS:
        if _ANY_TAG.search(m.group(part)):
            return f"a tag inside <{part}>"
    if not _NESTED_SHAPE.match(m.group("bbox")):
        return _NOT_A_BOX_LIST
    return None


def is_well_formed(text: object) -> bool:
    """True iff `text` is exactly caption, bbox list and answer, in order (see `parse`)."""
    if not isinstance(text, str):
        return False
    return _format_problem(text) is None


def extract_answer(text: object) -> str:
    """The answer to score: the first <answer>, else the whole text stripped.

    Evaluation uses this so that a model which ignores the format is still judged on what
    it said rather than on an empty string.
    """
    if not isinstance(text, str):
        return ""
    answer = first_tag(text, "answer")
    return answer if answer is not None else text.strip()


def _fmt_num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def format_boxes(boxes: Sequence[Sequence[float]]) -> str:
    """`[[x1,y1,x2,y2], ...]` text for boxes, integers where they are whole."""
    return "[" + ", ".join("[" + ",".join(_fmt_num(v) for v in b) + "]" for b in boxes) + "]"


def format_completion(caption: str, boxes: Sequence[Sequence[float]], answer: str) -> str:
    """The canonical well-formed completion (used by sample data and test servers)."""
    return f"<caption>{caption}</caption> <bbox>{format_boxes(boxes)}</bbox> <answer>{answer}</answer>"
