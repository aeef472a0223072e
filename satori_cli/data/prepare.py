"""`prepare`: raw VQA-Verify-shaped data in, validated ms-swift GRPO JSONL out.

One streaming pass: each record is mapped to our fields (`columns`), checked (`validate`),
its image decoded and, when embedded, written once by content hash (`images`); the row goes
to train (or val) or, with its reason, to `rejected.jsonl`. Every output file is written to
a hidden `.partial` file and renamed into place only at the end, so an interrupted run
leaves the previous outputs (or nothing), never a half-written JSONL.

A prepared row (the contract with training and the rewards)::

    {"id": "...", "messages": [{"role": "user", "content": "<image>QUESTION"}],
     "images": ["/abs/path.png"], "bboxs": [[x1, y1, x2, y2], ...], "width": W, "height": H,
     "possible_answers": ["..."], "image_caption": "...", "source": "..."}
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from satori_cli.data import columns as cols
from satori_cli.data import images, readers
from satori_cli.data import validate as v
from satori_cli.errors import SatoriError

TRAIN, VAL, REJECTED, SUMMARY = "train.jsonl", "val.jsonl", "rejected.jsonl", "prepare_summary.json"
Progress = Callable[[int, int | None], None]  # (rows done, total rows if known)


@dataclass
class PrepareResult:
    """What `prepare_dataset` wrote and how many rows went where (rows_in = written + rejected)."""

    out_dir: Path
    train_path: Path
    val_path: Path | None
    rejected_path: Path
    summary_path: Path
    rows_in: int = 0
    train_rows: int = 0
    val_rows: int = 0
    rejected: Counter = field(default_factory=Counter)

    @property
    def written(self) -> int:
        return self.train_rows + self.val_rows

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "written": self.written,
            "train_rows": self.train_rows,
            "val_rows": self.val_rows,
            "rejected": self.rejected_total,
            "rejected_by_reason": dict(self.rejected.most_common()),
            "train_path": str(self.train_path),
            "val_path": str(self.val_path) if self.val_path else None,
            "rejected_path": str(self.rejected_path),
        }


def convert(record: readers.Record, mapping: Mapping[str, str], images_dir: Path) -> dict:
    """One raw record -> one prepared row, or `validate.Rejected`."""
    if record.data is None:
        raise v.Rejected("malformed_row", record.error)
    raw = cols.pick(record.data, mapping)
    question, answer = raw["question"], raw["answer"]
    if raw["messages"] is not None and (question is None or answer is None):
        q, a = _from_messages(raw["messages"])
        question = q if question is None else question
        answer = a if answer is None else answer

    # Cheap text checks first, the image decode last.
    q = v.question(question)
    answers = v.answers(answer)
    caption = v.caption(raw["caption"])
    boxes = v.boxes(raw["bboxs"])
    declared_w = v.dimension(raw["width"], "width")
    declared_h = v.dimension(raw["height"], "height")
    image = images.resolve(raw["image"], record.base_dir, record.jail, images_dir)
    v.check_size(declared_w, declared_h, image.width, image.height)
    v.check_aspect_ratio(image.width, image.height)
    v.check_boxes_in_image(boxes, image.width, image.height)

    row = {
        "id": str(raw["id"]) if raw["id"] is not None else record.row_id,
        "messages": [{"role": "user", "content": f"{v.IMAGE_TAG}{q}"}],
        "images": [str(image.path)],
        "bboxs": boxes,
        "width": image.width,
        "height": image.height,
        "possible_answers": answers,
        "image_caption": caption,
    }
    if isinstance(raw["source"], str) and raw["source"].strip():
        row["source"] = raw["source"].strip()
    return row


def _from_messages(messages: object) -> tuple[str | None, object]:
    """(question, answer) from ms-swift/OpenAI `messages` or LLaVA `conversations`."""
    if not isinstance(messages, list):
        return None, None
    question = answer = None
    for turn in messages:
        if not isinstance(turn, dict):
            continue
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if isinstance(content, list):  # OpenAI content blocks
            content = " ".join(
                b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
            )
        if role in ("user", "human") and question is None:
            question = content
        elif role in ("assistant", "gpt") and answer is None:
            answer = content
    return question, answer


def prepare_dataset(
    src: str | Path,
    out_dir: str | Path,
    *,
    val_ratio: float = 0.0,
    seed: int = 0,
    columns: Iterable[str] | Mapping[str, str] | None = None,
    strict: bool = False,
    progress: Progress | None = None,
) -> PrepareResult:
    """Convert `src` (a data file, a folder of them, or an archive) into `out_dir`.

    Writes `train.jsonl` (+ `val.jsonl` when `val_ratio` > 0: an exact, seeded random
    split), `rejected.jsonl` (row id, reason, detail) and `prepare_summary.json`; embedded
    images go to `out_dir/images/<content hash>.<ext>`. With `strict`, the first rejected
    row raises SatoriError and nothing is written.
    """
    src, out_dir = Path(src).expanduser(), Path(out_dir).expanduser()
    if not src.exists():
        raise SatoriError(f"{src}: no such file or folder")
    if not 0.0 <= val_ratio < 1.0:
        raise SatoriError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    mapping = cols.parse_mapping(columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    images_dir = out_dir / "images"
    images_dir.mkdir(exist_ok=True)
    scratch = out_dir / f".unpack-{os.getpid()}"
    tag = f".partial-{os.getpid()}"
    partial = {name: out_dir / f".{name}{tag}" for name in (TRAIN, VAL, REJECTED, SUMMARY, "rows")}
    result = PrepareResult(
        out_dir=out_dir.resolve(),
        train_path=(out_dir / TRAIN).resolve(),
        val_path=(out_dir / VAL).resolve() if val_ratio > 0 else None,
        rejected_path=(out_dir / REJECTED).resolve(),
        summary_path=(out_dir / SUMMARY).resolve(),
    )
    try:
        jail = None
        if readers.is_archive(src):
            jail = readers.unpack_archive(src, scratch)
            files = readers.data_files(jail)
        else:
            files = readers.data_files(src)
        if not files:
            raise SatoriError(f"{src}: no .parquet, .jsonl or .json data file found")
        for path in files:
            if mapping:
                cols.check_mapping(mapping, readers.column_names(path), path.name)
        total = readers.count_rows(files) if progress else None
        rows_file = partial["rows"] if val_ratio > 0 else partial[TRAIN]
        with (
            open(rows_file, "w", encoding="utf-8") as good,
            open(partial[REJECTED], "w", encoding="utf-8") as bad,
        ):
            for record in readers.iter_records(files, jail):
                result.rows_in += 1
                try:
                    row = convert(record, mapping, images_dir)
                except v.Rejected as rej:
                    if strict:
                        raise SatoriError(
                            f"row {record.row_id} rejected: {rej.reason} ({rej.detail})",
                            hint="drop --strict to skip bad rows into rejected.jsonl",
                        ) from rej
                    result.rejected[rej.reason] += 1
                    bad.write(_rejection(record, rej) + "\n")
                else:
                    good.write(json.dumps(row, ensure_ascii=False) + "\n")
                    result.train_rows += 1
                if progress and result.rows_in % 64 == 0:
                    progress(result.rows_in, total)
        if progress:
            progress(result.rows_in, total)
        if val_ratio > 0:
            result.train_rows, result.val_rows = _split(
                partial["rows"], partial[TRAIN], partial[VAL], result.train_rows, val_ratio, seed
            )
        partial[SUMMARY].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        # Everything is complete: move it into place (each rename is atomic).
        os.replace(partial[TRAIN], result.train_path)
        if val_ratio > 0:
            os.replace(partial[VAL], out_dir / VAL)
        else:
            (out_dir / VAL).unlink(missing_ok=True)  # a stale split from an earlier run
        os.replace(partial[REJECTED], result.rejected_path)
        os.replace(partial[SUMMARY], result.summary_path)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _rejection(record: readers.Record, rej: v.Rejected) -> str:
    entry = {"row": record.row_id, "reason": rej.reason, "detail": rej.detail}
    if record.data:
        for name in cols.ALIASES["id"]:
            if isinstance(record.data.get(name), (str, int)):
                entry["id"] = str(record.data[name])
                break
    return json.dumps(entry, ensure_ascii=False)


def _split(rows: Path, train: Path, val: Path, n: int, ratio: float, seed: int) -> tuple[int, int]:
    """An exact seeded split: round(n * ratio) rows to val (at least 1, and 1 left to train)."""
    k = round(n * ratio)
    k = min(max(k, 1), n - 1) if n >= 2 else 0
    chosen = set(random.Random(seed).sample(range(n), k))
    with (
        open(rows, encoding="utf-8") as src,
        open(train, "w", encoding="utf-8") as tr,
        open(val, "w", encoding="utf-8") as va,
    ):
        for i, line in enumerate(src):
            (va if i in chosen else tr).write(line)
    return n - k, k
