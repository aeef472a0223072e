"""The SATORI output grammar: one parser for the rewards, evaluation and the demo.

A completion has three checkable stages:

    <caption>scene</caption> <bbox>[[x1,y1,x2,y2], ...]</bbox> <answer>final answer</answer>

`parse` never raises, never evaluates code (box lists are read by a small regular grammar
of numbers in brackets, not by `eval` or `ast.literal_eval`) and takes time linear in the
text: tags are found with `str.find` and one forward search each, never with a lazy `.*?`
that rescans the rest of the text from every opening tag (such regexes took 37 s on 184 KB
of `<caption>`). At most MAX_CHARS characters of a completion are read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from satori_cli.pixels import Box

TAGS = ("caption", "bbox", "answer")
# Characters of a completion that are read: ~25k tokens, 50x the paper's 512-token completions
# and 10x a 2048-token evaluation answer. A longer text is not well formed; its parts come from
# this prefix. It bounds what `predict`, `eval` and `rewards score` spend on any one text.
MAX_CHARS = 100_000
MAX_BOXES = 50  # more boxes than fit in a 512-token completion is noise, not grounding
MAX_BOX_PAYLOAD = 20_000  # characters; longer payloads are rejected before any parsing

_ANY_TAG = re.compile(r"</?(?:caption|bbox|answer)>")
_CAPTION_THEN_BBOX = re.compile(r"</caption>\s*<bbox>")
_BBOX_THEN_ANSWER = re.compile(r"</bbox>\s*<answer>")
_NESTED_SHAPE = re.compile(r"\A\s*\[\s*\[.*\]\s*\]\s*\Z", re.DOTALL)  # the original's `\[\[.*?\]\]`

# Plain quantifiers only: possessive ones need Python 3.11's `re`, and satori supports 3.10.
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


def _box(num: str) -> str:
    return rf"\[\s*{num}\s*,\s*{num}\s*,\s*{num}\s*,\s*{num}\s*,?\s*\]"


_BOX = _box(f"({_NUM})")  # one box, its four numbers captured
_BOX_NC = _box(_NUM)
_ONE_BOX = re.compile(_BOX)
_FLAT = re.compile(rf"\s*{_BOX}\s*\Z")
_NESTED = re.compile(rf"\s*\[\s*(?:{_BOX_NC}\s*(?:,\s*{_BOX_NC}\s*)*,?\s*)?\]\s*\Z")
_NOT_A_BOX_LIST = "<bbox> does not hold a [[...]] list"
_OUTSIDE = "tags out of order, or text outside the tags"


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


def _first(text: str, tag: str) -> str | None:
    """What `re.search(r"<tag>(.*?)</tag>", text, re.DOTALL).group(1)` gives, in linear time.

    The leftmost match starts at the first opening tag: if no closing tag follows that one,
    none follows a later one either.
    """
    start = text.find(f"<{tag}>")
    if start < 0:
        return None
    start += len(tag) + 2
    end = text.find(f"</{tag}>", start)
    return None if end < 0 else text[start:end]


def first_tag(text: str, tag: str) -> str | None:
    """The stripped content of the first <tag>...</tag>, or None.

    >>> first_tag("<answer> B </answer> <answer>C</answer>", "answer")
    'B'
    """
    part = _first(text, tag)
    return None if part is None else part.strip()


def parse_boxes(payload: str) -> tuple[tuple[Box, ...] | None, str | None]:
    """Read `[[x1,y1,x2,y2], ...]` (or one flat `[x1,y1,x2,y2]`) into float boxes.

    Returns (boxes, None) or (None, reason). Never raises.

    >>> parse_boxes("[[1, 2, 3.5, 4]]")
    (((1.0, 2.0, 3.5, 4.0),), None)
    >>> parse_boxes("[[1, 2, 3]]")
    (None, 'not a list of [x1,y1,x2,y2] number boxes')
    """
    if not isinstance(payload, str):
        return None, "box payload is not text"
    if len(payload) > MAX_BOX_PAYLOAD:
        return None, f"box payload longer than {MAX_BOX_PAYLOAD} characters"
    flat = _FLAT.match(payload)
    if flat is not None:
        groups = [flat.groups()]
    elif _NESTED.match(payload):
        groups = _ONE_BOX.findall(payload)
        if len(groups) > MAX_BOXES:
            return None, f"more than {MAX_BOXES} boxes"
    else:
        return None, "not a list of [x1,y1,x2,y2] number boxes"
    boxes = tuple(tuple(map(float, g)) for g in groups)
    if not all(math.isfinite(v) for b in boxes for v in b):
        return None, "non-finite coordinate"
    return boxes, None


def parse(text: object, max_chars: int | None = MAX_CHARS) -> Completion:
    """Split a completion into caption, boxes and answer, and say whether it is well formed.

    Each field comes from the *first* occurrence of its tag, wherever it is, so that a
    partially formatted completion still earns the rewards it deserves. `well_formed` is
    the strict check: the three tags exactly once, in order, with only whitespace around
    them and a `[[...]]` box list. Only the first `max_chars` characters are read (None:
    all); a longer text is not well formed. Anything but a string parses as empty.

    >>> c = parse("<caption>a cat</caption> <bbox>[[1,2,3,4]]</bbox> <answer>yes</answer>")
    >>> c.caption, c.boxes, c.answer, c.well_formed
    ('a cat', ((1.0, 2.0, 3.0, 4.0),), 'yes', True)
    >>> parse("<answer>yes</answer>").reason
    'missing <caption>, <bbox>'
    """
    raw = text if isinstance(text, str) else ""
    read = raw if max_chars is None or len(raw) <= max_chars else raw[:max_chars]
    payload = _first(read, "bbox")
    boxes, box_error = (None, "no <bbox> tag") if payload is None else parse_boxes(payload)
    if not isinstance(text, str):
        reason: str | None = "not text"
    elif read is not raw:
        reason = f"longer than {max_chars} characters (only those were read)"
    else:
        reason = _format_problem(read)
    return Completion(
        raw=raw,
        caption=first_tag(read, "caption"),
        boxes=boxes,
        answer=first_tag(read, "answer"),
        well_formed=reason is None,
        reason=reason,
        box_error=box_error,
    )


def _format_problem(text: str) -> str | None:
    """Why `text` is not exactly caption, [[boxes]], answer (None when it is).

    The original plugin's check, `\\A\\s*<caption>(.*?)</caption>\\s*<bbox>(.*?)</bbox>\\s*
    <answer>(.*?)</answer>\\s*\\Z` with no tag inside a part, in linear time: its lazy groups
    end at the earliest `</caption>\\s*<bbox>` and the earliest `</bbox>\\s*<answer>` after it
    (an earliest split leaves the most room for the rest), and the answer at the final
    `</answer>`.
    """
    missing = [t for t in TAGS if _first(text, t) is None]
    if missing:
        return "missing " + ", ".join(f"<{t}>" for t in missing)
    body = text.strip()  # `str.strip` removes exactly what the regex's `\s` matches
    if not (body.startswith("<caption>") and body.endswith("</answer>")):
        return _OUTSIDE
    end = len(body) - len("</answer>")
    caption_end = _CAPTION_THEN_BBOX.search(body, len("<caption>"))
    bbox_end = _BBOX_THEN_ANSWER.search(body, caption_end.end()) if caption_end else None
    if bbox_end is None or bbox_end.end() > end:
        return _OUTSIDE
    parts = {
        "caption": body[len("<caption>") : caption_end.start()],
        "bbox": body[caption_end.end() : bbox_end.start()],
        "answer": body[bbox_end.end() : end],
    }
    for tag in TAGS:
        if _ANY_TAG.search(parts[tag]):
            return f"a tag inside <{tag}>"
    return None if _NESTED_SHAPE.match(parts["bbox"]) else _NOT_A_BOX_LIST


def is_well_formed(text: object) -> bool:
    """True iff `text` is exactly caption, bbox list and answer, in order (see `parse`).

    >>> is_well_formed("<caption>c</caption><bbox>[[1,2,3,4]]</bbox><answer>a</answer>\\nmore")
    False
    """
    return parse(text).well_formed


def extract_answer(text: object) -> str:
    """The answer to score: the first <answer>, else the whole text stripped (first MAX_CHARS read).

    Evaluation uses this so that a model which ignores the format is still judged on what
    it said rather than on an empty string.

    >>> extract_answer("<answer>\\n B \\n</answer>"), extract_answer(" just text ")
    ('B', 'just text')
    """
    if not isinstance(text, str):
        return ""
    text = text[:MAX_CHARS]
    answer = first_tag(text, "answer")
    return answer if answer is not None else text.strip()


def _fmt_num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def format_boxes(boxes: Sequence[Sequence[float]]) -> str:
    """`[[x1,y1,x2,y2], ...]` text for boxes, integers where they are whole.

    >>> format_boxes([(1.0, 2, 3.5, 4)])
    '[[1,2,3.5,4]]'
    """
    return "[" + ", ".join("[" + ",".join(_fmt_num(v) for v in b) + "]" for b in boxes) + "]"


def format_completion(caption: str, boxes: Sequence[Sequence[float]], answer: str) -> str:
    """The canonical well-formed completion (used by sample data and test servers)."""
    return f"<caption>{caption}</caption> <bbox>{format_boxes(boxes)}</bbox> <answer>{answer}</answer>"
