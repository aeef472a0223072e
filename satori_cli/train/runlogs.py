"""What ms-swift logs: the files it leaves in a run folder, and the progress line made from its output.

ms-swift 4.6 writes, in its output folder, `logging.jsonl` (one JSON object per logging step,
with `global_step/max_steps` like `"1/2"`), `checkpoint-N/` folders (with `trainer_state.json`)
and, with `--log_completions true`, `completions.jsonl` (one object of parallel lists per
logging step). satori runs swift with `--add_version false`, so these sit in the run folder
itself; folders made by swift's default `vN-YYYYMMDD-HHMMSS/` layout are found as well.
It also prints each metrics dict to stdout, which is what the progress line reads.

In a terminal the progress line always shows the step, the total and the time left; what does not fit
is cut from the end of the metrics (`reward ... [components] kl ... len ...`), never those
three. Redirected (SLURM, nohup, `| tee`), a live line would end up as one cut-off line in the
file, so each logged step prints a line of its own instead.
"""

from __future__ import annotations

import ast
import json
import os
import re
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
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


def step_of(row: dict[str, Any]) -> tuple[int, int] | None:
    """(step, max_steps) of a training step's metrics; None for anything else (the final summary)."""
    return None if "train_runtime" in row else parse_step(row.get(STEP_KEY))


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
            step = step_of(row)
            if step is None:
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
                if name and name not in names:  # `rewards/mean` names no reward
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


# -- the progress line ----------------------------------------------------------------------------
def eta_text(seconds: float | None) -> str:
    """`1:02:03`, `4:05`, or `-:--` while unknown."""
    if seconds is None:
        return "-:--"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Eta:
    """Time left from the pace of the steps seen so far (model loading is not a step)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.first: tuple[int, float] | None = None

    def __call__(self, step: int, total: int) -> float | None:
        now = self.clock()
        if self.first is None or step < self.first[0]:
            self.first = (step, now)
            return None
        done, start = step - self.first[0], now - self.first[1]
        if done <= 0:
            return None
        return max(0, total - step) * start / done


class PlainLines:
    """One line per logged step, nothing redrawn: what a log file needs."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def start(self) -> None:
        self.console.print("loading model and data ...", markup=False, highlight=False)

    def stop(self) -> None:
        pass

    def update(self, step: int, total: int, description: str, left: str) -> None:
        self.console.print(
            f"step {step}/{total} ETA {left} {description}", markup=False, highlight=False, soft_wrap=True
        )

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


class LiveLine:
    """A rich progress line; step/total and ETA come first and are never cut."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.table import Column

        narrow = console.width < 100
        columns = [
            TextColumn("[bold]step", table_column=Column(no_wrap=True)),
            MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TextColumn("ETA {task.fields[eta]}", table_column=Column(no_wrap=True)),
            *([] if narrow else [BarColumn(bar_width=20)]),
            TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
        ]
        self.progress = Progress(*columns, console=console, transient=False, expand=True)
        self.task = None

    def start(self) -> None:
        self.progress.start()
        self.task = self.progress.add_task("loading model and data ...", total=None, eta=eta_text(None))

    def stop(self) -> None:
        self.progress.stop()

    def update(self, step: int, total: int, description: str, left: str) -> None:
        self.progress.update(self.task, completed=step, total=total, description=description, eta=left)

    def line(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)


@contextmanager
def progress_display(console: Any) -> Iterator[PlainLines | LiveLine]:
    """The live line in a terminal, plain lines anywhere else."""
    display = LiveLine(console) if console.is_terminal else PlainLines(console)
    display.start()
    try:
        yield display
    finally:
        display.stop()


class ProgressFeed:
    """Turns swift's output lines into progress on `display`, keeping the last lines for errors."""

    def __init__(self, display: Any) -> None:
        self.display = display
        self.tail: deque[str] = deque(maxlen=40)
        self.last: dict[str, Any] | None = None
        self.eta = Eta()

    def __call__(self, line: str) -> None:
        self.tail.append(line)
        metrics = parse_metrics_line(line)
        step = step_of(metrics) if metrics is not None else None
        if step is None:
            return
        self.last = metrics
        self.display.update(*step, describe(metrics), eta_text(self.eta(*step)))


def describe(metrics: dict[str, Any]) -> str:
    """`reward 1.20 [format 0.70 bbox 0.49 ...] kl 0.0001 len 16`: one line per logging step."""
    parts = []
    if isinstance(metrics.get("reward"), float):
        parts.append(f"reward {metrics['reward']:.3f}")
    means = {name: metrics[f"rewards/{name}/mean"] for name in reward_components([metrics])}
    comps = {name: value for name, value in means.items() if isinstance(value, float)}
    prefix = os.path.commonprefix(list(comps)) if len(comps) > 1 else ""  # noqa: RUF071 - names, not paths
    comps = [f"{name[len(prefix) :] or name} {value:.2f}" for name, value in comps.items()]
    if comps:
        parts.append("[" + ", ".join(comps) + "]")
    if isinstance(metrics.get("kl"), float):
        parts.append(f"kl {metrics['kl']:.4g}")
    if isinstance(metrics.get("completions/mean_length"), float):
        parts.append(f"len {metrics['completions/mean_length']:.0f}")
    if not parts:  # SFT: the loss and how many target tokens it predicts right
        for key, label in (("loss", "loss"), ("token_acc", "token acc")):
            if isinstance(metrics.get(key), float):
                parts.append(f"{label} {metrics[key]:.3g}")
    return " ".join(parts) or "training"
