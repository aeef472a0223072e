"""Read what ms-swift leaves in a run folder: metrics, checkpoints and logged completions.

ms-swift 4.6 writes, in its output folder, `logging.jsonl` (one JSON object per logging step,
with `global_step/max_steps` like `"1/2"`), `checkpoint-N/` folders (with `trainer_state.json`)
and, with `--log_completions true`, `completions.jsonl` (one object of parallel lists per
logging step). satori runs swift with `--add_version false`, so these sit in the run folder
itself; folders made by swift's default `vN-YYYYMMDD-HHMMSS/` layout are found as well.
It also prints each metrics dict to stdout, which is what the live progress line reads.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STEP_KEY = "global_step/max_steps"
_VERSION_DIR = re.compile(r"^v\d+-\d{8}-\d{6}$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def swift_dirs(run_dir: Path) -> list[Path]:
    """The folder(s) swift wrote into: the run folder, then any `vN-...` subfolders, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return [run_dir, *sorted(p for p in run_dir.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name))]


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (skipping swift's `vN-...` level)."""
    parent = Path(checkpoint).parent
    return parent.parent if _VERSION_DIR.match(parent.name) else parent


def checkpoints(run_dir: Path) -> list[Path]:
    """Every `checkpoint-N` with a trainer state, ordered by step (ties: newest folder last)."""
    found = []
    for folder in swift_dirs(run_dir):
        for child in folder.iterdir():
            match = _CHECKPOINT.match(child.name)
            if match and child.is_dir() and (child / "trainer_state.json").is_file():
                found.append((int(match.group(1)), child.stat().st_mtime, child))
    return [path for _, _, path in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_step(value: Any) -> tuple[int, int] | None:
    """`"3/100"` -> (3, 100)."""
    if not isinstance(value, str) or "/" not in value:
        return None
    done, _, total = value.partition("/")
    # isascii: int() refuses '²', a digit to isdigit(); and any number of over 4300 digits
    whole = all(p.isascii() and p.isdigit() and len(p) < 20 for p in (done, total))
    return (int(done), int(total)) if whole else None


def parse_metrics_line(line: str) -> dict[str, Any] | None:
    """The metrics dict ms-swift prints each logging step (`{'loss': '0.1', ...}`), or None.

    The dict may follow a tqdm bar on the same line; it is read with `ast.literal_eval`
    (literals only, nothing is executed).
    """
    if STEP_KEY not in line:
        return None
    start, end = line.find("{'"), line.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        data = ast.literal_eval(line[start : end + 1])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): _number(v) for k, v in data.items()}


def json_objects(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, skipping lines that are not one (a run may be cut mid-line)."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield row


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Training-step rows of every `logging.jsonl`, each with an integer `step`; a later
    row for the same step (a resumed run) replaces the earlier one."""
    by_step: dict[int, dict[str, Any]] = {}
    for folder in swift_dirs(run_dir):
        for row in json_objects(folder / "logging.jsonl"):
            step = parse_step(row.get(STEP_KEY))
            if step is None or "train_runtime" in row:
                continue
            by_step[step[0]] = {**row, "step": step[0], "max_steps": step[1]}
    return [by_step[k] for k in sorted(by_step)]


def reward_components(rows: list[dict[str, Any]]) -> list[str]:
    """Reward class names logged as `rewards/<Name>/mean`, in first-seen order."""
    names: list[str] = []
    for row in rows:
        for key in row:
            if key.startswith("rewards/") and key.endswith("/mean"):
                name = key[len("rewards/") : -len("/mean")]
                if name not in names:
                    names.append(name)
    return names


def read_completions(run_dir: Path) -> list[dict[str, Any]]:
    """Logged completions, one dict per completion (swift stores parallel lists per step)."""
    out: list[dict[str, Any]] = []
    for folder in swift_dirs(run_dir):
        for table in json_objects(folder / "completions.jsonl"):
            if not isinstance(table.get("completion"), list):
                continue
            size = len(table["completion"])
            for i in range(size):
                out.append({k: v[i] for k, v in table.items() if isinstance(v, list) and len(v) == size})
    return out
