"""Score a JSONL file of completions with the SATORI rewards (`satori rewards score`).

Rows hold a `completion` (or `response`) plus the reward columns of the data contract
(`bboxs`, `width`, `height`, `possible_answers`, `image_caption`). ms-swift's
`completions.jsonl` (written by `--log_completions true`) holds the same keys column-wise
(a list per key, one line per step) and is read as one row per completion. Every input
row gives one output row, in order: a malformed row is reported with its line
number and gets null scores instead of stopping the run, and a reward whose columns a row
lacks is null for that row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from satori_cli.errors import SatoriError
from satori_cli.pixels import PixelBudget
from satori_cli.rewards.reward_functions import COLUMNS, FUNCTIONS, NORMALIZED_VQA, REWARD_FUNCS

DATA_COLUMNS = sorted({c for cols in COLUMNS.values() for c in cols})

COMPLETION_KEYS = ("completion", "response")
CHUNK = 1024


@dataclass
class RewardSummary:
    name: str
    scored: int = 0
    total: float = 0.0
    full: int = 0  # rows scoring 1.0
    zero: int = 0  # rows scoring 0.0
    lacking: int = 0  # well-formed rows without this reward's columns
    missing_columns: set[str] = field(default_factory=set)

    @property
    def mean(self) -> float:
        return self.total / self.scored if self.scored else math.nan


@dataclass
class ScoreReport:
    rows: int
    out_path: Path
    rewards: dict[str, RewardSummary]
    malformed: list[tuple[int, str]]  # (1-based line number, why)


def _read_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, row or None, error or None) for every completion of every non-blank line.

    ms-swift 4.x writes `completions.jsonl` column-wise, one line per logging step with a
    list per key; such a line is split into one row per completion.
    """
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not JSON ({exc.msg})"
                continue
            if not isinstance(row, dict):
                yield number, None, "not a JSON object"
                continue
            if isinstance(row.get("completion"), list):
                n = len(row["completion"])
                for i in range(n):
                    item = {k: v[i] for k, v in row.items() if isinstance(v, list) and len(v) == n}
                    if isinstance(item.get("completion"), str):
                        yield number, item, None
                    else:
                        yield number, None, f"completion {i} is not text"
                continue
            if not any(isinstance(row.get(k), str) for k in COMPLETION_KEYS):
                yield number, None, "no 'completion' text"
                continue
            yield number, row, None


def _completion(row: dict) -> str:
    return next(row[k] for k in COMPLETION_KEYS if isinstance(row.get(k), str))


def score_jsonl(
    path: Path,
    out_path: Path | None = None,
    budget: PixelBudget | None = None,
    normalized_vqa: bool = False,
    on_progress: Callable[[int], None] | None = None,
    data_rows: Mapping[str, dict] | None = None,
) -> ScoreReport:
    """Score every row of `path`, write per-row scores to `out_path`, return the summary.

    `data_rows` maps a row id to its data set row: reward columns a completion row lacks are
    taken from the row its `solution` (or `id`) names. ms-swift's completions.jsonl logs only
    `solution` beside each completion, and `satori train` puts the row id there.
    """
    path = Path(path)
    if not path.is_file():
        raise SatoriError(f"no such file: {path}", hint="pass a JSONL file of completions")
    out_path = Path(out_path) if out_path else path.with_name(path.stem + ".scores.jsonl")
    if out_path.resolve() == path.resolve():
        raise SatoriError("--out must differ from the input file")
    budget = budget or PixelBudget.from_env()
    names = [*REWARD_FUNCS, NORMALIZED_VQA] if normalized_vqa else list(REWARD_FUNCS)
    summaries = {name: RewardSummary(name) for name in names}
    malformed: list[tuple[int, str]] = []
    rows = 0
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_path.open("w", encoding="utf-8") as out:
            chunk: list[tuple[int, dict | None, str | None]] = []
            for item in _read_rows(path):
                if data_rows is not None and item[1] is not None:
                    item = (item[0], _with_data_columns(item[1], data_rows), item[2])
                chunk.append(item)
                if len(chunk) >= CHUNK:
                    rows += _score_chunk(chunk, names, budget, summaries, malformed, out)
                    if on_progress:
                        on_progress(len(chunk))
                    chunk = []
            if chunk:
                rows += _score_chunk(chunk, names, budget, summaries, malformed, out)
                if on_progress:
                    on_progress(len(chunk))
    except OSError as exc:
        raise SatoriError(f"cannot read {path} or write {out_path}: {exc.strerror or exc}") from exc
    return ScoreReport(rows=rows, out_path=out_path, rewards=summaries, malformed=malformed)


def _with_data_columns(row: dict, data_rows: Mapping[str, dict]) -> dict:
    key = row.get("solution", row.get("id"))
    source = data_rows.get(str(key)) if key is not None else None
    if not source:
        return row
    merged = {c: source[c] for c in DATA_COLUMNS if c in source}
    merged.update(row)
    return merged


def _score_chunk(chunk, names, budget, summaries, malformed, out) -> int:
    scores: dict[str, list[float | None]] = {name: [None] * len(chunk) for name in names}
    for name in names:
        needed = COLUMNS[name]
        idx = []
        for i, (_, row, _) in enumerate(chunk):
            if row is None:
                continue
            lacking = [c for c in needed if c not in row]
            if lacking:
                summaries[name].missing_columns.update(lacking)
                summaries[name].lacking += 1
            else:
                idx.append(i)
        if not idx:
            continue
        completions = [_completion(chunk[i][1]) for i in idx]
        columns = {c: [chunk[i][1][c] for i in idx] for c in needed}
        kwargs = {"budget": budget} if name == "external_bbox_acc" else {}
        values = FUNCTIONS[name](completions, **columns, **kwargs)
        summary = summaries[name]
        for i, v in zip(idx, values, strict=True):
            scores[name][i] = v
            summary.scored += 1
            summary.total += v
            summary.full += v == 1.0
            summary.zero += v == 0.0
    for i, (number, _row, error) in enumerate(chunk):
        record: dict[str, object] = {"line": number}
        if error:
            malformed.append((number, error))
            record["error"] = error
        record.update({name: scores[name][i] for name in names})
        out.write(json.dumps(record) + "\n")
    return len(chunk)
