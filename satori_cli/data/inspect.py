"""Statistics of a prepared set and a contact sheet of samples with their ground-truth boxes.

Both stream the JSONL once: counters for the statistics and a seeded reservoir for the
samples, so a large set costs no more memory than a small one.
"""

from __future__ import annotations

import json
import random
import statistics
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from satori_cli.errors import SatoriError

BOX_COLOR = (255, 0, 255)  # magenta: no colour of the synthetic shapes, visible on photos
BOX_WIDTH = 3
TEXT_LINES = 4


@dataclass
class Stats:
    files: dict[str, int] = field(default_factory=dict)
    sources: Counter = field(default_factory=Counter)
    boxes_per_row: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    answer_chars: list[int] = field(default_factory=list)
    caption_words: list[int] = field(default_factory=list)
    question_words: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.files.values())


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
        return [target]
    files = [target / name for name in ("train.jsonl", "val.jsonl") if (target / name).is_file()]
    if not files:
        raise SatoriError(
            f"{target}: no train.jsonl here", hint="run `satori data prepare SRC --out DIR` first"
        )
    return files


def _rows(files: list[Path]):
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield path, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise SatoriError(f"{path}:{n}: not JSON ({exc.msg})") from exc


def inspect_dataset(target: str | Path, samples: int = 8, seed: int = 0) -> tuple[Stats, list[dict]]:
    """Statistics of every row, and `samples` rows drawn uniformly (seeded reservoir)."""
    stats = Stats()
    rng = random.Random(seed)
    chosen: list[dict] = []
    seen = 0
    for path, row in _rows(prepared_files(target)):
        stats.files[path.name] = stats.files.get(path.name, 0) + 1
        stats.sources[row.get("source", "(unknown)")] += 1
        stats.boxes_per_row[len(row.get("bboxs") or [])] += 1
        stats.sizes[(row.get("width"), row.get("height"))] += 1
        answers = row.get("possible_answers") or [""]
        stats.answer_chars.append(len(answers[0]))
        stats.caption_words.append(len(str(row.get("image_caption", "")).split()))
        stats.question_words.append(len(_question(row).split()))
        seen += 1
        if len(chosen) < samples:
            chosen.append(row)
        else:
            j = rng.randrange(seen)
            if j < samples:
                chosen[j] = row
    if not seen:
        raise SatoriError(f"{target}: the prepared set is empty")
    return stats, chosen


def _question(row: dict) -> str:
    for turn in row.get("messages") or []:
        if turn.get("role") == "user":
            return str(turn.get("content", "")).replace("<image>", "").strip()
    return ""


def summarize(values: list[int]) -> str:
    """'min / median / max' of a list of lengths."""
    if not values:
        return "-"
    return f"{min(values)} / {statistics.median(values):g} / {max(values)}"


def contact_sheet(rows: list[dict], out_path: str | Path, cell: int = 320, columns: int = 4) -> list[Tile]:
    """Draw each row's image with its boxes, question and answer in a grid; return the tiles."""
    from PIL import Image, ImageDraw, ImageFont

    if not rows:
        raise SatoriError("no rows to draw")
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
        try:
            with Image.open(row["images"][0]) as img:
                img = img.convert("RGB")
        except Exception:  # a moved file: draw the row anyway, on grey
            img = Image.new("RGB", (int(row["width"]), int(row["height"])), (128, 128, 128))
        scale = min(cell / img.width, cell / img.height)
        thumb = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        sheet.paste(thumb, (x0, y0))
        tile = Tile(row, x0, y0, scale)
        for box in row.get("bboxs") or []:
            draw.rectangle(tile.to_sheet(box), outline=BOX_COLOR, width=BOX_WIDTH)
        text = f"Q: {_question(row)}\nA: {' | '.join(row.get('possible_answers') or [])}"
        lines = [w for part in text.splitlines() for w in textwrap.wrap(part, width=cell // 7) or [""]]
        for k, line in enumerate(lines[:TEXT_LINES]):
            draw.text((x0, y0 + thumb.height + 4 + k * line_h), line, fill=(235, 235, 235), font=font)
        tiles.append(tile)
    out_path = Path(out_path).expanduser()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.partial")
    sheet.save(tmp, "PNG")
    tmp.replace(out_path)
    return tiles
