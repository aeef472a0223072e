"""The output grammars: one parser for the rewards, evaluation and the demo.

SATORI's completion has three checkable stages:

    <caption>scene</caption> <bbox>[[x1,y1,x2,y2], ...]</bbox> <answer>final answer</answer>

The paper's comparisons need three more shapes, so a grammar is a choice (`GRAMMARS`), each one
declaration of its tags in order, its prompt folder and the rewards that train it:
`satori` (the above, the default), `satori-v2` (Glance-Focus-Think: caption, boxes, thinking,
answer), `r1` (the R1-style baseline: think, answer) and `nocap` (the no-caption ablation:
boxes, answer). The content rewards read the first tag of their kind whatever the grammar;
only the strict format check (`Completion.well_formed`) depends on it.

`parse` never raises, never evaluates code (box lists are read by a small regular grammar
of numbers in brackets, not by `eval` or `ast.literal_eval`) and takes time linear in the
text: tags are found with `str.find` and one forward search each, never with a lazy `.*?`
that rescans the rest of the text from every opening tag (such regexes took 37 s on 184 KB
of `<caption>`). At most MAX_CHARS characters of a completion are read.

Each grammar's prompts (`load_prompt`; for `satori`, word for word as the released SATORI-3B was
trained and evaluated) live in `prompts/` (data, not Python constants, so that they can be read
and diffed): the default grammar's files are `prompts/system.txt` and `prompts/eval_suffix.txt`,
another grammar's sit in its own folder, `prompts/<grammar>/` (`prompts/README.md` says where each
wording comes from). A user can replace them everywhere at once (training, evaluation, serving,
and the child processes these start) by setting `SATORI_PROMPTS_DIR` to a folder laid out the
same way: its own `system.txt` and/or `eval_suffix.txt`, and `<grammar>/system.txt` etc.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from satori_cli.errors import SatoriError
from satori_cli.pixels import Box

TAGS = ("caption", "bbox", "answer")  # SATORI v1's, in order
THINKING_TAGS = ("thinking", "think")  # v2 says <thinking>, the R1 baseline <think>
# Characters of a completion that are read: ~25k tokens, 50x the paper's 512-token completions
# and 10x a 2048-token evaluation answer. A longer text is not well formed; its parts come from
# this prefix. It bounds what `predict`, `eval` and `rewards score` spend on any one text.
MAX_CHARS = 100_000
MAX_BOXES = 50  # more boxes than fit in a 512-token completion is noise, not grounding
MAX_BOX_PAYLOAD = 20_000  # characters; longer payloads are rejected before any parsing

_NESTED_SHAPE = re.compile(r"\A\s*\[\s*\[.*\]\s*\]\s*\Z", re.DOTALL)  # the original's `\[\[.*?\]\]`


@dataclass(frozen=True)
class Grammar:
    """One output grammar: its tags in order, where its prompts are, which rewards train it.

    `format_reward` (ms-swift `--reward_funcs` name, logged as `format_class`) scores the strict
    shape; `content_rewards` are the names of the shared content rewards that apply to it (the
    reward table checks that they exist). Prompts: `prompts/<prompts>/system.txt` and
    `eval_suffix.txt` (`prompts` "" = `prompts/` itself, today's files).
    """

    name: str
    tags: tuple[str, ...]
    format_reward: str
    format_class: str
    content_rewards: tuple[str, ...]
    prompts: str
    prompt_source: str  # where the prompt wording comes from (verbatim, reconstructed, or ours)
    _any_tag: re.Pattern = field(init=False, repr=False, compare=False)
    _joints: tuple[re.Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if "answer" not in self.tags or len(set(self.tags)) != len(self.tags):
            raise ValueError(f"grammar {self.name}: tags must be distinct and include answer")
        names = "|".join(map(re.escape, self.tags))
        joints = tuple(re.compile(rf"</{a}>\s*<{b}>") for a, b in zip(self.tags, self.tags[1:], strict=False))
        object.__setattr__(self, "_any_tag", re.compile(rf"</?(?:{names})>"))
        object.__setattr__(self, "_joints", joints)

    @property
    def title(self) -> str:
        """How messages name it: `SATORI` for the default, else its name."""
        return "SATORI" if self.name == "satori" else self.name

    @property
    def reward_funcs(self) -> tuple[str, ...]:
        """`swift rlhf --reward_funcs` for this grammar: its format reward, then its content rewards."""
        return (self.format_reward, *self.content_rewards)

    @property
    def thinking_tag(self) -> str | None:
        return next((t for t in self.tags if t in THINKING_TAGS), None)

    @property
    def has_boxes(self) -> bool:
        return "bbox" in self.tags

    @property
    def has_caption(self) -> bool:
        return "caption" in self.tags

    def shape(self) -> str:
        """`<caption>…</caption> <bbox>[[…]]</bbox> <answer>…</answer>`: for help texts and tables."""
        return " ".join(f"<{t}>{'[[…]]' if t == 'bbox' else '…'}</{t}>" for t in self.tags)


_OURS = "satori's wording around the paper's instruction sentence (the authors' was never released)"
_V1_CONTENT = ("external_bbox_acc", "extern_vqa_acc", "external_caption_acc")
# SATORI v1, the released SATORI-3B: caption, boxes, answer.
SATORI = Grammar(
    name="satori",
    tags=TAGS,
    format_reward="external_format",
    format_class="SatoriFormat",
    content_rewards=_V1_CONTENT,
    prompts="",
    prompt_source="verbatim: the original prompt.txt and evaluation suffix",
)
# SATORI v2 Glance-Focus-Think (the paper's current version): caption, boxes, thinking, answer.
SATORI_V2 = Grammar(
    name="satori-v2",
    tags=("caption", "bbox", "thinking", "answer"),
    format_reward="external_format_v2",
    format_class="SatoriFormatV2",
    content_rewards=_V1_CONTENT,
    prompts="satori-v2",
    # The authors never released v2 code or prompts; only the instruction sentence is known.
    prompt_source=_OURS,
)
# The R1-style baseline the paper compares against: think, answer.
R1 = Grammar(
    name="r1",
    tags=("think", "answer"),
    format_reward="external_format_r1",
    format_class="SatoriFormatR1",
    content_rewards=("extern_vqa_acc",),
    prompts="r1",
    prompt_source=_OURS,
)
# The no-caption ablation: boxes, answer.
NOCAP = Grammar(
    name="nocap",
    tags=("bbox", "answer"),
    format_reward="external_format_nocap",
    format_class="SatoriFormatNocap",
    content_rewards=("external_bbox_acc", "extern_vqa_acc"),
    prompts="nocap",
    prompt_source="the original model_nocap.py: suffix verbatim, system prompt's elisions filled in",
)
GRAMMARS: dict[str, Grammar] = {g.name: g for g in (SATORI, SATORI_V2, R1, NOCAP)}
DEFAULT_GRAMMAR = SATORI.name
# For the `--grammar` help of every command: the names and what each is.
GRAMMAR_HELP = "; ".join(f"{g.name} = {' '.join(f'<{t}>' for t in g.tags)}" for g in GRAMMARS.values()) + "."


def get_grammar(grammar: str | Grammar | None = None) -> Grammar:
    """A grammar by name (None: the default, `satori`); an unknown name is a user error.

    >>> get_grammar("r1").tags
    ('think', 'answer')
    """
    if isinstance(grammar, Grammar):
        return grammar
    if grammar is None:
        return SATORI
    found = GRAMMARS.get(grammar)
    if found is None:
        raise SatoriError(f"unknown grammar {grammar!r}", hint=f"choose one of {', '.join(GRAMMARS)}")
    return found


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
    thinking: str | None = None  # the grammar's <thinking>/<think> text (None: absent, or none in it)
    grammar: str = DEFAULT_GRAMMAR  # the grammar `well_formed` was judged by


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


def parse(
    text: object, max_chars: int | None = MAX_CHARS, grammar: str | Grammar | None = None
) -> Completion:
    """Split a completion into its parts, and say whether it is well formed in `grammar`.

    Caption, boxes and answer come from the *first* occurrence of their tag, wherever it is
    and whatever the grammar, so that a partially formatted completion still earns the
    rewards it deserves; `thinking` likewise from the grammar's thinking tag. `well_formed` is
    the strict check: the grammar's tags exactly once, in order, with only whitespace around
    them and a `[[...]]` box list. Only the first `max_chars` characters are read (None: all);
    a longer text is not well formed. Anything but a string parses as empty.

    >>> c = parse("<caption>a cat</caption> <bbox>[[1,2,3,4]]</bbox> <answer>yes</answer>")
    >>> c.caption, c.boxes, c.answer, c.well_formed
    ('a cat', ((1.0, 2.0, 3.0, 4.0),), 'yes', True)
    >>> parse("<answer>yes</answer>").reason
    'missing <caption>, <bbox>'
    >>> c = parse("<think>red is warm</think> <answer>yes</answer>", grammar="r1")
    >>> c.thinking, c.answer, c.well_formed
    ('red is warm', 'yes', True)
    """
    g = get_grammar(grammar)
    raw = text if isinstance(text, str) else ""
    read = raw if max_chars is None or len(raw) <= max_chars else raw[:max_chars]
    payload = _first(read, "bbox")
    boxes, box_error = (None, "no <bbox> tag") if payload is None else parse_boxes(payload)
    if not isinstance(text, str):
        reason: str | None = "not text"
    elif read is not raw:
        reason = f"longer than {max_chars} characters (only those were read)"
    else:
        reason = _format_problem(read, g)
    thinking_tag = g.thinking_tag
    return Completion(
        raw=raw,
        caption=first_tag(read, "caption"),
        boxes=boxes,
        answer=first_tag(read, "answer"),
        well_formed=reason is None,
        reason=reason,
        box_error=box_error,
        thinking=first_tag(read, thinking_tag) if thinking_tag else None,
        grammar=g.name,
    )


def _format_problem(text: str, grammar: Grammar) -> str | None:
    """Why `text` is not exactly the grammar's tags in order (None when it is).

    For SATORI the original plugin's check, `\\A\\s*<caption>(.*?)</caption>\\s*<bbox>(.*?)
    </bbox>\\s*<answer>(.*?)</answer>\\s*\\Z` with no tag of the grammar inside a part, and the
    same pattern over each grammar's tags, in linear time: the lazy groups end at the earliest
    `</tag>\\s*<next>` after the previous one (an earliest split leaves the most room for the
    rest; with no tag inside a part it is the only split), and the last part at the final
    closing tag. One forward search per joint, each from where the previous one ended.
    """
    tags = grammar.tags
    missing = [t for t in tags if _first(text, t) is None]
    if missing:
        return "missing " + ", ".join(f"<{t}>" for t in missing)
    body = text.strip()  # `str.strip` removes exactly what the regex's `\\s` matches
    first, last = f"<{tags[0]}>", f"</{tags[-1]}>"
    if not (body.startswith(first) and body.endswith(last)):
        return _OUTSIDE
    end = len(body) - len(last)
    parts: dict[str, str] = {}
    pos = len(first)
    for tag, joint in zip(tags, grammar._joints, strict=False):  # one joint fewer than tags
        found = joint.search(body, pos)
        if found is None or found.end() > end:
            return _OUTSIDE
        parts[tag] = body[pos : found.start()]
        pos = found.end()
    parts[tags[-1]] = body[pos:end]
    for tag in tags:
        if grammar._any_tag.search(parts[tag]):
            return f"a tag inside <{tag}>"
    if grammar.has_boxes and not _NESTED_SHAPE.match(parts["bbox"]):
        return _NOT_A_BOX_LIST
    return None


def extract_answer(text: object) -> str:
    """The answer to score: the first <answer>, else the whole text stripped (first MAX_CHARS read).

    Evaluation uses this so that a model which ignores the format is still judged on what
    it said rather than on an empty string. Every grammar ends in <answer> (`Grammar` insists
    on the tag), so this reading is the same for all of them.

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


def format_completion(
    caption: str,
    boxes: Sequence[Sequence[float]],
    answer: str,
    grammar: str | Grammar | None = None,
    thinking: str = "",
) -> str:
    """The canonical well-formed completion in a grammar (used by sample data and test servers);
    parts the grammar lacks are left out.

    >>> format_completion("a cat", [[1, 2, 3, 4]], "yes", "r1", thinking="it purrs")
    '<think>it purrs</think> <answer>yes</answer>'
    """
    parts = {"caption": caption, "bbox": format_boxes(boxes), "answer": answer}
    return " ".join(f"<{t}>{parts.get(t, thinking)}</{t}>" for t in get_grammar(grammar).tags)


# -- prompts ----------------------------------------------------------------------------------------
PROMPT_NAMES = ("system", "eval_suffix")


def prompts_dir() -> Path:
    """Where the bundled prompt files are: inside the wheel, or `prompts/` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_prompts", here.parent / "prompts"):
        if (candidate / "system.txt").is_file():
            return candidate
    raise SatoriError("the bundled prompts are missing from this installation", exit_code=1)


def prompt_path(name: str = "system", grammar: str | Grammar | None = None) -> Path:
    """The file a prompt is read from: `$SATORI_PROMPTS_DIR/[<grammar>/]<name>.txt` if set and
    present, else the bundled one (the grammar's folder is empty for the default grammar)."""
    if name not in PROMPT_NAMES:
        raise SatoriError(f"unknown prompt {name!r}; choose one of {', '.join(PROMPT_NAMES)}")
    relative = Path(get_grammar(grammar).prompts) / f"{name}.txt"
    override = os.environ.get("SATORI_PROMPTS_DIR")
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise SatoriError(f"SATORI_PROMPTS_DIR is not a folder: {folder}")
        own = folder / relative
        if own.is_file():
            return own.resolve()
    return prompts_dir() / relative


@cache
def _read(path: Path, strip: bool) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SatoriError(f"cannot read prompt file {path}: {exc.strerror or exc}") from exc
    return text.strip() if strip else text


def load_prompt(name: str = "system", grammar: str | Grammar | None = None) -> str:
    """The prompt text of a grammar (default `satori`). `system` is stripped; `eval_suffix` is
    verbatim (it starts with " \\n")."""
    return _read(prompt_path(name, grammar).resolve(), strip=(name == "system"))
