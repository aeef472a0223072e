"""Statistics of a prepared set and a contact sheet of samples with their ground-truth boxes.

Both stream the JSONL once: counters for the statistics and a seeded reservoir for the
samples, so a large set costs no more memory than a small one. The file may have been
edited by hand or made by another tool: every line that is not a well-formed prepared row
is counted under what is wrong with it (with its first line numbers), never a traceback,
and only well-formed rows feed the statistics and the sheet.
"""

from __future__ import annotations

import bisect
import itertools
import random
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from satori_cli import outputs
from satori_cli.data import readers
from satori_cli.data.validate import IMAGE_TAG, MAX_ID_CHARS, finite
from satori_cli.errors import SatoriError, one_line
from satori_cli.rewards.reward_functions import MAX_IMAGE_SIDE

BOX_COLOR = (255, 0, 255)  # magenta: no colour of the synthetic shapes, visible on photos
BOX_WIDTH = 3
TEXT_LINES = 4
EXAMPLES = 3  # line numbers shown per kind of problem
KEY_CHARS = 80  # a source name is counted by its first 80 characters


@dataclass
class Stats:
    files: dict[str, int] = field(default_factory=dict)  # well-formed rows per file
    lines: int = 0  # non-blank lines read
    sources: Counter = field(default_factory=Counter)
    boxes_per_row: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    answer_chars: Counter = field(default_factory=Counter)  # length -> rows
    caption_words: Counter = field(default_factory=Counter)
    question_words: Counter = field(default_factory=Counter)
    problems: Counter = field(default_factory=Counter)  # kind -> rows with it
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> first places
    bad_rows: int = 0  # lines with at least one problem

    @property
    def rows(self) -> int:
        return sum(self.files.values())

    def problem(self, kind: str, where: str) -> None:
        self.problems[kind] += 1
        places = self.examples.setdefault(kind, [])
        if len(places) < EXAMPLES:
            places.append(where)


@dataclass(frozen=True)
class Tile:
    """Where one sample landed on the sheet: its top-left corner and the image's scale factor."""

    row: dict
    x: int
    y: int
    scale: float

    def to_sheet(self, box) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = box
        s = self.scale
        return (self.x + x1 * s, self.y + y1 * s, self.x + x2 * s, self.y + y2 * s)


def prepared_files(target: str | Path) -> list[Path]:
    """train.jsonl and val.jsonl of a prepared folder, or the JSONL file given."""
    target = Path(target).expanduser()
    if target.is_file():
        if target.suffix.lower() in (".parquet", ".json"):
            raise SatoriError(
                f"{target}: inspect reads prepared JSONL",
                hint=f"run `satori data prepare {target} --out DIR` first",
            )
        return [target]
    if target.exists() and not target.is_dir():
        raise SatoriError(f"{target}: not a regular file or folder")
    files = [target / name for name in ("train.jsonl", "val.jsonl") if (target / name).is_file()]
    if not files:
        raise SatoriError(
            f"{target}: no train.jsonl here", hint="run `satori data prepare SRC --out DIR` first"
        )
    return files


def inspect_dataset(target: str | Path, samples: int = 8, seed: int = 0) -> tuple[Stats, list[dict]]:
    """Statistics of every row, and `samples` well-formed rows drawn uniformly (seeded reservoir)."""
    stats = Stats()
    rng = random.Random(seed)
    chosen: list[dict] = []
    seen = 0
    ids: set[str] = set()
    for path in prepared_files(target):
        stats.files.setdefault(path.name, 0)
        try:
            for row in _lines(path, stats, ids):
                seen += 1
                if len(chosen) < samples:
                    chosen.append(row)
                else:
                    j = rng.randrange(seen)
                    if j < samples:
                        chosen[j] = row
        except OSError as exc:
            raise SatoriError(f"{path}: cannot read ({one_line(exc.strerror or exc)})") from exc
    if not stats.lines:
        raise SatoriError(f"{target}: the prepared set is empty")
    return stats, chosen


def _lines(path: Path, stats: Stats, ids: set[str]):
    """The well-formed rows of one file; every other line is counted in `stats`."""
    for number, row, reason, error in readers.jsonl_lines(path):
        stats.lines += 1
        where = f"{path.name} line {number}"
        if row is None:
            kind = {"not_utf8": "not UTF-8", "over_limit": "line too long"}.get(reason, "not a JSON object")
            stats.problem(kind, f"{where} ({error})")
            stats.bad_rows += 1
            continue
        problems = _check(row, ids, stats)
        for kind in problems:
            stats.problem(kind, where)
        if problems:
            stats.bad_rows += 1
        else:
            stats.files[path.name] += 1
            yield row


def _check(row: dict, ids: set[str], stats: Stats) -> list[str]:
    """What is wrong with one row against the prepared contract (README "Data"); a row with
    nothing wrong goes into the statistics."""
    problems: list[str] = []
    counts: list[tuple[Counter, object]] = []
    ident = row.get("id")
    if isinstance(ident, bool) or not isinstance(ident, (str, int)) or not str(ident).strip():
        problems.append("id: missing or not text")
    elif len(str(ident)) > MAX_ID_CHARS:
        problems.append("id: too long")
    elif str(ident) in ids:
        problems.append("id: duplicate")

    question = _question(row)
    if question is None:
        problems.append("messages: no user question")
    else:
        counts.append((stats.question_words, len(question.split())))

    image = row.get("images")
    if not (isinstance(image, list) and len(image) == 1 and isinstance(image[0], str) and image[0]):
        problems.append("images: not a list of one path")
    elif not _is_file(image[0]):
        problems.append("images: file not found")

    width, height = row.get("width"), row.get("height")
    size_ok = all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_IMAGE_SIDE for v in (width, height)
    )
    if size_ok:
        counts.append((stats.sizes, (width, height)))
    else:
        problems.append(f"width/height: not whole numbers from 1 to {MAX_IMAGE_SIDE:,}")

    boxes = row.get("bboxs")
    if not isinstance(boxes, list) or not boxes:
        problems.append("bboxs: not a non-empty list")
    else:
        counts.append((stats.boxes_per_row, len(boxes)))
        if not all(_box_ok(b) for b in boxes):
            problems.append("bboxs: a box that is not [x1, y1, x2, y2] with x1 < x2, y1 < y2")
        elif size_ok and not all(b[0] >= 0 and b[1] >= 0 and b[2] <= width and b[3] <= height for b in boxes):
            problems.append("bboxs: a box outside the image")

    answers = row.get("possible_answers")
    if isinstance(answers, list) and answers and all(isinstance(a, str) and a.strip() for a in answers):
        counts.append((stats.answer_chars, len(answers[0])))
    else:
        problems.append("possible_answers: not a list of non-empty strings")

    caption = row.get("image_caption")
    if isinstance(caption, str) and caption.strip():
        counts.append((stats.caption_words, len(caption.split())))
    else:
        problems.append("image_caption: missing or not text")

    source = row.get("source", "(unknown)")
    if isinstance(source, str):
        counts.append((stats.sources, source[:KEY_CHARS]))
    else:
        problems.append("source: not text")
    if not problems:
        ids.add(str(ident))
        for counter, key in counts:
            counter[key] += 1
    return problems


def _box_ok(box: object) -> bool:
    if not isinstance(box, list) or len(box) != 4:
        return False
    x1, y1, x2, y2 = (finite(v) for v in box)
    return None not in (x1, y1, x2, y2) and x1 < x2 and y1 < y2


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def _question(row: dict) -> str | None:
    """The user turn's text without the image tag (None when there is none)."""
    turns = row.get("messages")
    if not isinstance(turns, list):
        return None
    for turn in turns:
        if isinstance(turn, dict) and turn.get("role") == "user" and isinstance(turn.get("content"), str):
            text = turn["content"].replace(IMAGE_TAG, "").strip()
            return text or None
    return None


def summarize(values: Counter) -> str:
    """'min / median / max' of lengths counted as {length: rows}."""
    if not values:
        return "-"
    keys = sorted(values)
    upto = list(itertools.accumulate(values[k] for k in keys))  # rows up to each length

    def nth(i: int) -> int:  # the i-th length in sorted order, from 0
        return keys[bisect.bisect_right(upto, i)]

    median = (nth((upto[-1] - 1) // 2) + nth(upto[-1] // 2)) / 2  # the middle one or two
    return f"{keys[0]} / {median:g} / {keys[-1]}"


def _thumbnail(path: str, size: tuple[int, int], target: tuple[int, int]):
    """The row's image scaled to `target`, or None when it cannot be read or is not `size`."""
    from satori_cli.data.images import OPEN_FORMATS, pil

    Image = pil()
    if not _is_file(path):
        return None
    try:
        with Image.open(path, formats=OPEN_FORMATS) as img:
            if img.size != size:
                return None
            img.draft("RGB", target)  # JPEG: decode at a reduced scale
            return img.convert("RGB").resize(target)
    except Exception:  # a corrupt or moved image: the row is drawn on grey instead
        return None


def contact_sheet(
    rows: list[dict], out_path: str | Path, cell: int = 320, columns: int = 4, overwrite: bool = False
) -> list[Tile]:
    """Draw each row's image with its boxes, question and answer in a grid; return the tiles.

    `rows` must be well-formed (`inspect_dataset` gives only those). The sheet replaces an
    existing file only when satori wrote it, or with `overwrite`.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not rows:
        raise SatoriError("no rows to draw")
    out_path = Path(out_path).expanduser()
    outputs.ensure_dir(out_path.parent, "--out")
    outputs.check_target(out_path, overwrite, "--out")
    outputs.clean_stale(out_path.parent)
    font = ImageFont.load_default(size=13)
    line_h = 16
    text_h = line_h * TEXT_LINES + 8
    cols = min(columns, len(rows))
    n_rows = (len(rows) + cols - 1) // cols
    pad = 8
    sheet = Image.new("RGB", (cols * (cell + pad) + pad, n_rows * (cell + text_h + pad) + pad), (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    tiles = []
    for i, row in enumerate(rows):
        x0 = pad + (i % cols) * (cell + pad)
        y0 = pad + (i // cols) * (cell + text_h + pad)
        width, height = row["width"], row["height"]
        scale = min(cell / width, cell / height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        thumb = _thumbnail(row["images"][0], (width, height), target)
        if thumb is None:  # unreadable, or not the size the row says: grey, so the boxes stay true
            thumb = Image.new("RGB", target, (128, 128, 128))
        sheet.paste(thumb, (x0, y0))
        tile = Tile(row, x0, y0, scale)
        for box in row["bboxs"]:
            draw.rectangle(tile.to_sheet(box), outline=BOX_COLOR, width=BOX_WIDTH)
        answers = " | ".join(row["possible_answers"])
        text = f"Q: {_question(row)}\nA: {answers}"[:400]
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot be drawn
        lines = [w for part in text.splitlines() for w in textwrap.wrap(part, width=cell // 7) or [""]]
        for k, line in enumerate(lines[:TEXT_LINES]):
            draw.text((x0, y0 + thumb.height + 4 + k * line_h), line, fill=(235, 235, 235), font=font)
        tiles.append(tile)
    with outputs.atomic_file(out_path, "wb") as fh:
        sheet.save(fh, "PNG")
    return tiles
