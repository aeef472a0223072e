"""`prepare`: raw VQA-Verify-shaped data in, validated ms-swift GRPO JSONL out.

One streaming pass: each record is mapped to our fields and checked (`validate`),
its image decoded (on a few threads: decoding is the cost) and, when embedded, written once
by content hash (`images`); the row goes to train (or val) or, with its reason, to
`rejected.jsonl`. Ids are unique (later steps join rows by id). Every output file is written
to a hidden scratch file and renamed into place only at the end, so an interrupted run
leaves the previous outputs (or nothing), never a half-written JSONL; the scratch of a
killed run is removed by the next one (`outputs.clean_stale`).

A prepared row (the contract with training and the rewards)::

    {"id": "...", "messages": [{"role": "user", "content": "<image>QUESTION"}],
     "images": ["/abs/path.png"], "bboxs": [[x1, y1, x2, y2], ...], "width": W, "height": H,
     "possible_answers": ["..."], "image_caption": "...", "source": "..."}
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from satori_cli import outputs
from satori_cli.data import archives, images, readers
from satori_cli.data import validate as v
from satori_cli.errors import SatoriError, one_line

TRAIN, VAL, REJECTED, SUMMARY = "train.jsonl", "val.jsonl", "rejected.jsonl", readers.PREPARED_MARKER
OUTPUTS = (TRAIN, VAL, REJECTED, SUMMARY)
Progress = Callable[[int, int | None], None]  # (rows done, total rows if known)
MAX_WORKERS = 8


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
    skipped: list[Path] = field(default_factory=list)  # our own earlier outputs, never read

    @property
    def written(self) -> int:
        return self.train_rows + self.val_rows

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict:
        return {
            "tool": "satori data prepare",
            "rows_in": self.rows_in,
            "written": self.written,
            "train_rows": self.train_rows,
            "val_rows": self.val_rows,
            "rejected": self.rejected_total,
            "rejected_by_reason": dict(self.rejected.most_common()),
            "train_path": str(self.train_path),
            "val_path": str(self.val_path) if self.val_path else None,
            "rejected_path": str(self.rejected_path),
            "skipped": [str(p) for p in self.skipped],
        }


def convert(record: readers.Record, mapping: Mapping[str, str], images_dir: Path) -> dict:
    """One raw record -> one prepared row, or `validate.Rejected`."""
    if record.data is None:
        raise v.Rejected(record.reason, record.error)
    raw = v.pick(record.data, mapping)
    question, answer = raw["question"], raw["answer"]
    if raw["messages"] is not None and (question is None or answer is None):
        q, a = _from_messages(raw["messages"])
        question = q if question is None else question
        answer = a if answer is None else answer

    # Cheap checks first, the image decode last.
    ident = v.row_id(raw["id"], record.row_id)
    q = v.question(question)
    answers = v.answers(answer)
    caption = v.caption(raw["caption"])
    boxes = v.boxes(raw["bboxs"])
    declared_w = v.dimension(raw["width"], "width")
    declared_h = v.dimension(raw["height"], "height")
    image = images.resolve(raw["image"], record.base_dir, record.jail, images_dir)
    v.check_image(boxes, declared_w, declared_h, image.width, image.height)

    row = {
        "id": ident,
        "messages": [{"role": "user", "content": f"{v.IMAGE_TAG}{q}"}],
        "images": [str(image.path)],
        "bboxs": boxes,
        "width": image.width,
        "height": image.height,
        "possible_answers": answers,
        "image_caption": caption,
    }
    source = raw["source"]
    if isinstance(source, str) and source.strip():
        row["source"] = v.capped(source.strip(), v.MAX_ID_CHARS, "a source name")
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
                b["text"]
                for b in content
                if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
            )
        if role in ("user", "human") and question is None:
            question = content
        elif role in ("assistant", "gpt") and answer is None:
            answer = content
    return question, answer


def _try_convert(record: readers.Record, mapping: Mapping[str, str], images_dir: Path) -> dict | v.Rejected:
    """The row, or why not. A write error (disk full) propagates; a check that breaks on
    some input nobody foresaw rejects that row (`unexpected_error`) instead of the run."""
    try:
        return convert(record, mapping, images_dir)
    except v.Rejected as rej:
        return rej
    except OSError:
        raise
    except Exception as exc:
        return v.Rejected("unexpected_error", f"{type(exc).__name__}: {exc}")


def _converted(
    records: Iterable[readers.Record], mapping: Mapping[str, str], images_dir: Path, workers: int
) -> Iterator[tuple[readers.Record, dict | v.Rejected]]:
    """(record, row or Rejected) in input order; conversions run on `workers` threads (PIL
    and zlib release the GIL while decoding) with a bounded window, so memory stays flat."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="satori-prepare")
    window: deque = deque()
    try:
        for record in records:
            window.append((record, pool.submit(_try_convert, record, mapping, images_dir)))
            if len(window) >= 4 * workers:
                record, future = window.popleft()
                yield record, future.result()
        while window:
            record, future = window.popleft()
            yield record, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def prepare_dataset(
    src: str | Path,
    out_dir: str | Path,
    *,
    val_ratio: float = 0.0,
    seed: int = 0,
    columns: Iterable[str] | None = None,
    strict: bool = False,
    progress: Progress | None = None,
    overwrite: bool = False,
    max_extract_bytes: int | None = None,
    workers: int | None = None,
) -> PrepareResult:
    """Convert `src` (a data file, a folder of them, or an archive) into `out_dir`.

    Writes `train.jsonl` (+ `val.jsonl` when `val_ratio` > 0: an exact, seeded random
    split), `rejected.jsonl` (row id, reason, detail) and `prepare_summary.json`; embedded
    images go to `out_dir/images/<content hash>.<ext>`. With `strict`, the first rejected
    row raises SatoriError and nothing is written. Existing outputs that an earlier prepare
    did not write are replaced only with `overwrite`. `max_extract_bytes` caps what an
    archive may unpack (default: `archives.default_limit`).
    """
    src, out_dir = Path(src).expanduser(), Path(out_dir).expanduser()
    if not src.exists():
        raise SatoriError(f"{src}: no such file or folder")
    if not src.is_file() and not src.is_dir():
        raise SatoriError(f"{src}: not a regular file or folder")
    mapping = v.parse_mapping(columns)
    out_dir = outputs.ensure_dir(out_dir)
    if src.is_file() and src.resolve().parent == out_dir.resolve() and src.name in OUTPUTS:
        raise SatoriError(
            f"{src} is an output of --out {out_dir}: it would be read while it is replaced",
            hint="prepare into another folder",
        )
    outputs.check_targets([out_dir / name for name in OUTPUTS], overwrite)
    images_dir = outputs.ensure_dir(out_dir / "images", "--out")
    for folder in (out_dir, images_dir):
        outputs.clean_stale(folder)
    scratch = out_dir / f".unpack-{outputs.tag()}"
    partial = {name: outputs.scratch_name(out_dir / name) for name in (*OUTPUTS, "rows")}
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
            files, jail = archives.unpack(src, scratch, max_extract_bytes, mapping)
            root = jail.root
        else:
            files, result.skipped = readers.data_files(src, exclude=(out_dir,))
            root = src if src.is_dir() else src.parent
        if not files:
            raise SatoriError(f"{src}: no .parquet, .jsonl or .json data file found")
        for path in files:
            readers.check_readable(path)
            if mapping:
                v.check_mapping(mapping, readers.column_names(path), path.name)
        records = readers.iter_records(files, root, jail)
        converted = _converted(records, mapping, images_dir, workers or default_workers())
        # closed here, not when the error's traceback is freed: no conversion outlives a failure
        with contextlib.closing(converted):
            _write_rows(
                converted,
                partial["rows"] if val_ratio > 0 else partial[TRAIN],
                partial[REJECTED],
                result,
                strict,
                progress,
                readers.count_rows(files) if progress else None,
            )
        if result.rows_in == 0:
            raise SatoriError(f"no rows found in {src}", hint="the data files are empty")
        if val_ratio > 0:
            result.train_rows, result.val_rows = _split(
                partial["rows"], partial[TRAIN], partial[VAL], result.train_rows, val_ratio, seed
            )
        partial[SUMMARY].write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        for name in OUTPUTS:  # everything is complete: move it into place (each rename is atomic)
            if name == VAL and not val_ratio:
                outputs.forget(out_dir / VAL)  # a stale split of an earlier run (checked: ours)
            else:
                outputs.replace(partial[name], out_dir / name)
    except OSError as exc:  # disk full, a folder removed under us, an input that vanished
        where = f"{exc.filename}: " if exc.filename else ""
        raise SatoriError(f"prepare failed: {where}{one_line(exc.strerror or exc)}", exit_code=1) from exc
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _write_rows(
    outcomes: Iterable[tuple[readers.Record, dict | v.Rejected]],
    good_path: Path,
    bad_path: Path,
    result: PrepareResult,
    strict: bool,
    progress: Progress | None,
    total: int | None,
) -> None:
    """Good rows (unique ids, valid UTF-8) to `good_path`, the rest to `bad_path`."""
    first_row_of: dict[str, str] = {}  # id -> the row that used it first
    with open(good_path, "wb") as good, open(bad_path, "wb") as bad:
        for record, outcome in outcomes:
            result.rows_in += 1
            if isinstance(outcome, dict):
                outcome, line = _checked(outcome, first_row_of)
            if isinstance(outcome, v.Rejected):
                if strict:
                    raise SatoriError(
                        f"row {record.row_id} rejected: {outcome.reason} ({outcome.detail})",
                        hint="drop --strict to skip bad rows into rejected.jsonl",
                    )
                result.rejected[outcome.reason] += 1
                bad.write(_rejection(record, outcome))
            else:
                good.write(line)
                first_row_of[outcome["id"]] = record.row_id
                result.train_rows += 1
            if progress and result.rows_in % 64 == 0:
                progress(result.rows_in, total)
    if progress:
        progress(result.rows_in, total)


def _checked(row: dict, first_row_of: Mapping[str, str]) -> tuple[dict | v.Rejected, bytes]:
    """The row as a JSONL line, or why not: its id is taken, or its text is not UTF-8."""
    first = first_row_of.get(row["id"])
    if first is not None:
        return v.Rejected("duplicate_id", f"id {v.show(row['id'])} is already row {first}"), b""
    try:
        return row, (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:
        return v.Rejected("not_utf8", f"a lone surrogate {exc.object[exc.start]!a} in the text"), b""


def _rejection(record: readers.Record, rej: v.Rejected) -> bytes:
    entry = {"row": record.row_id, "reason": rej.reason, "detail": rej.detail}
    if record.data:
        for name in v.ALIASES["id"]:
            value = record.data.get(name)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                entry["id"] = str(value)[: v.MAX_ID_CHARS]
                break
    # ensure_ascii: a rejected row's text may hold lone surrogates; escaped, the line stays valid
    return (json.dumps(entry, ensure_ascii=True) + "\n").encode("ascii")


def _split(rows: Path, train: Path, val: Path, n: int, ratio: float, seed: int) -> tuple[int, int]:
    """An exact seeded split: round(n * ratio) rows to val (at least 1, and 1 left to train)."""
    k = round(n * ratio)
    k = min(max(k, 1), n - 1) if n >= 2 else 0
    chosen = set(random.Random(seed).sample(range(n), k))
    with open(rows, "rb") as src, open(train, "wb") as tr, open(val, "wb") as va:
        for i, line in enumerate(src):
            (va if i in chosen else tr).write(line)
    return n - k, k
