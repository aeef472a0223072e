"""Score a JSONL file of completions with the SATORI rewards (`satori rewards score`).

Rows hold a `completion` (or `response`) plus the reward columns of the data contract
(`bboxs`, `width`, `height`, `possible_answers`, `image_caption`). ms-swift's
`completions.jsonl` (written by `--log_completions true`) holds the same keys column-wise
(a list per key, one line per step) and is read as one row per completion. Every input
row gives one output row, in order: a line that cannot be read (not JSON, an integer beyond
the float range, nesting too deep, longer than MAX_LINE_CHARS) is rejected with its line number
and a reason and gets null scores instead of stopping the run, and a reward whose columns
a row lacks is null for that row. Time is linear in the file: each line is read once, and
each text is capped (`grammar.MAX_CHARS`, `MAX_CAPTION_CHARS`).

Per-row scores are written only where the caller says, through a temporary file renamed
into place at the end, never over an existing file unless --overwrite (`check_out_path`).

A `satori train` run folder is scored from its own log (the newest `completions.jsonl`), joined
by row id to the data it trained on (images and ground truth), in the run's own pixel budget:
the budget its boxes were predicted in. A plain file is scored in --min/--max-pixels, else the
environment's, else the paper's budget.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from satori_cli import outputs
from satori_cli.errors import SatoriError
from satori_cli.grammar import Grammar
from satori_cli.pixels import PixelBudget, env_bounds, given_budget
from satori_cli.rewards import BY_NAME, REWARDS, rewards_for

DATA_COLUMNS = sorted({c for r in REWARDS for c in r.columns})
COMPLETION_KEYS = ("completion", "response")
_GIVEN = "--min-pixels/--max-pixels"
CHUNK = 1024
# Characters of one line that are read; a longer line is rejected. ms-swift logs a whole
# step per line (the paper's 512 completions of up to 512 tokens: a few MB).
MAX_LINE_CHARS = 64 * 2**20


@dataclass
class RewardSummary:
    scored: int = 0
    total: float = 0.0
    full: int = 0  # rows scoring 1.0
    zero: int = 0  # rows scoring 0.0
    lacking: int = 0  # well-formed rows without this reward's columns
    missing_columns: set[str] = field(default_factory=set)


@dataclass
class ScoreReport:
    rows: int
    rewards: dict[str, RewardSummary]
    malformed: list[tuple[int, str]]  # (1-based line number, why)


def scoring_input(
    path: Path, min_pixels: int | None, max_pixels: int | None
) -> tuple[Path, PixelBudget, dict[str, dict[str, Any]] | None]:
    """The completions at `path` (a file or a run folder): the JSONL file, the budget its boxes
    are in, and a run's training rows by id (None: a plain file)."""
    rows = None
    if path.is_dir():
        from satori_cli.models import run_budget, run_for
        from satori_cli.train.report import dataset_rows
        from satori_cli.train.runfolder import read_run_json
        from satori_cli.train.runlogs import swift_dirs

        logged = [d / "completions.jsonl" for d in swift_dirs(path) if (d / "completions.jsonl").is_file()]
        if not logged:
            raise SatoriError(f"{path} has no completions.jsonl", hint="train with log_completions on")
        run, rows = run_for(path), dataset_rows(read_run_json(path), path)
        if run is not None:
            return logged[-1], run_budget(run, str(path), min_pixels, max_pixels, _GIVEN), rows
        path = logged[-1]  # logged completions without run.json: scored like a plain file, with its rows
    low, high = env_bounds()  # a bad MIN_PIXELS/MAX_PIXELS is one line
    budget = given_budget(min_pixels or low, max_pixels or high, f"{_GIVEN} and MIN_PIXELS/MAX_PIXELS")
    return path, budget, rows


def check_out_path(out_path: Path, input_path: Path, overwrite: bool) -> None:
    """Refuse, before any work, an --out that is the input, under a file, a folder, a link, a
    special file, or an existing file satori did not write without `overwrite` (`satori_cli.outputs`)."""
    if out_path.resolve() == input_path.resolve():
        raise SatoriError("--out must differ from the input file")
    outputs.check_folder(out_path.parent, "--out")
    outputs.check_target(out_path, overwrite)


def _lines(fh: IO[str], limit: int) -> Iterator[tuple[int, str | None]]:
    """(line number, line, or None for a line longer than `limit`), reading at most `limit`
    characters of any line into memory."""
    number = 0
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) <= limit or line.endswith("\n"):
            yield number, line
            continue
        while line and not line.endswith("\n"):  # skip the rest of an overlong line
            line = fh.readline(limit)
        yield number, None


def _int(digits: str) -> int:
    # An integer beyond the float range is no coordinate, size or answer: reject the line
    # before CPython converts it (and refuses at 4300 digits).
    if len(digits.lstrip("-")) > 308:
        raise ValueError(f"an integer of {len(digits.lstrip('-'))} digits")
    return int(digits)


def _loads(line: str) -> tuple[object, str | None]:
    """The JSON value of a line, or (None, why not). Never raises."""
    try:
        return json.loads(line, parse_int=_int), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg})"
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError as exc:  # from _int
        return None, f"{exc}, beyond the float range"


def _read_rows(path: Path, limit: int = MAX_LINE_CHARS) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, row or None, error or None) for every completion of every non-blank line.

    ms-swift 4.x writes `completions.jsonl` column-wise, one line per logging step with a
    list per key; such a line is split into one row per completion.
    """
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for number, line in _lines(fh, limit):
            if line is None:
                yield number, None, f"line longer than {limit} characters"
                continue
            if not line.strip():
                continue
            row, error = _loads(line)
            if error:
                yield number, None, error
            elif not isinstance(row, dict):
                yield number, None, "not a JSON object"
            elif isinstance(row.get("completion"), list):
                n = len(row["completion"])
                for i in range(n):
                    item = {k: v[i] for k, v in row.items() if isinstance(v, list) and len(v) == n}
                    if isinstance(item.get("completion"), str):
                        yield number, item, None
                    else:
                        yield number, None, f"completion {i} is not text"
            elif not any(isinstance(row.get(k), str) for k in COMPLETION_KEYS):
                yield number, None, "no 'completion' text"
            else:
                yield number, row, None


def count_lines(path: Path, chunk: int = 1 << 20) -> int:
    """Lines in a file (for a progress bar), reading it in chunks whatever its line lengths."""
    count, last = 0, b"\n"
    try:
        with path.open("rb") as fh:
            while block := fh.read(chunk):
                count += block.count(b"\n")
                last = block[-1:]
    except OSError as exc:  # EACCES, EIO: the first read of the file says so
        raise SatoriError(f"cannot read {path}: {exc.strerror or exc}") from None
    return count + (last != b"\n")


def _completion(row: dict) -> str:
    return next(row[k] for k in COMPLETION_KEYS if isinstance(row.get(k), str))


def score_jsonl(
    path: Path,
    out_path: Path | None,
    budget: PixelBudget,
    normalized_vqa: bool = False,
    on_progress: Callable[[int], None] | None = None,
    data_rows: Mapping[str, dict] | None = None,
    grammar: str | Grammar | None = None,
    boxes: str = "resized",
) -> ScoreReport:
    """Score every row of the file `path` with the rewards of `grammar` (default `satori`: the
    paper's four), write per-row scores to `out_path` (if given; `check_out_path` first), return
    the summary.

    `on_progress` gets the number of the last line scored. `data_rows` maps a row id to its
    data set row: reward columns a completion row lacks are taken from the row its
    `solution` (or `id`) names. ms-swift's completions.jsonl logs only `solution` beside
    each completion, and `satori train` puts the row id there. `boxes`: where the completions'
    boxes are, "resized" (the model's input, mapped with `budget`) or "original" (no mapping).
    """
    names = [*rewards_for(grammar), *(["external_vqa_norm_acc"] if normalized_vqa else [])]
    summaries = {name: RewardSummary() for name in names}
    malformed: list[tuple[int, str]] = []
    rows = 0
    items = _read_rows(path)
    if data_rows is not None:
        items = ((n, None if row is None else _with_data_columns(row, data_rows), e) for n, row, e in items)
    try:
        if out_path is not None:
            outputs.ensure_dir(out_path.parent, "--out")
            outputs.clean_stale(out_path.parent)
        # written to a scratch file, renamed into place at the end and remembered as ours
        with outputs.atomic_file(out_path) if out_path is not None else contextlib.nullcontext() as out:
            while chunk := list(itertools.islice(items, CHUNK)):
                rows += _score_chunk(chunk, names, budget, summaries, malformed, out, boxes)
                if on_progress:
                    on_progress(chunk[-1][0])
    except OSError as exc:
        where = f" or write {out_path}" if out_path else ""
        raise SatoriError(f"cannot read {path}{where}: {exc.strerror or exc}") from exc
    return ScoreReport(rows=rows, rewards=summaries, malformed=malformed)


def _with_data_columns(row: dict, data_rows: Mapping[str, dict]) -> dict:
    key = row.get("solution", row.get("id"))
    source = data_rows.get(str(key)) if isinstance(key, (str, int)) and not isinstance(key, bool) else None
    if not source:
        return row
    merged = {c: source[c] for c in DATA_COLUMNS if c in source}
    merged.update(row)
    return merged


def _score_chunk(chunk, names, budget, summaries, malformed, out, boxes) -> int:
    scores: dict[str, list[float | None]] = {name: [None] * len(chunk) for name in names}
    errors: dict[int, str] = {i: error for i, (_, _, error) in enumerate(chunk) if error}
    for name in names:
        reward = BY_NAME[name]
        idx = []
        for i, (_, row, _) in enumerate(chunk):
            if row is None:
                continue
            lacking = [c for c in reward.columns if c not in row]
            if lacking:
                summaries[name].missing_columns.update(lacking)
                summaries[name].lacking += 1
            else:
                idx.append(i)
        if not idx:
            continue
        completions = [_completion(chunk[i][1]) for i in idx]
        columns = {c: [chunk[i][1][c] for i in idx] for c in reward.columns}
        summary = summaries[name]
        scored = reward.score_each(completions, budget=budget, boxes=boxes, **columns)
        for i, v in zip(idx, scored, strict=True):
            if isinstance(v, Exception):  # a bug, not the row's fault: report it, score the rest
                errors.setdefault(i, f"{name} failed: {type(v).__name__}: {v}")
                continue
            scores[name][i] = v
            summary.scored += 1
            summary.total += v
            summary.full += v == 1.0
            summary.zero += v == 0.0
    for i, (number, _row, _) in enumerate(chunk):
        record: dict[str, object] = {"line": number}
        if i in errors:
            malformed.append((number, errors[i]))
            record["error"] = errors[i]
        record.update({name: scores[name][i] for name in names})
        if out is not None:
            out.write(json.dumps(record) + "\n")
    return len(chunk)
