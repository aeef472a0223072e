"""The training progress line from swift's output: live in a terminal, one plain line per step in a log.

In a terminal the line always shows the step, the total and the time left; what does not fit
is cut from the end of the metrics (`reward ... [components] kl ... len ...`), never those
three. Redirected (SLURM, nohup, `| tee`), a live line would end up as one cut-off line in the
file, so each logged step prints a line of its own instead.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from satori_cli.train import runlogs


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
        self.eta = Eta()

    def start(self) -> None:
        self.console.print("loading model and data ...", markup=False, highlight=False)

    def stop(self) -> None:
        pass

    def update(self, step: int, total: int, description: str) -> None:
        left = eta_text(self.eta(step, total))
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

        self.eta = Eta()
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

    def update(self, step: int, total: int, description: str) -> None:
        left = eta_text(self.eta(step, total))
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

    def __call__(self, line: str) -> None:
        self.tail.append(line)
        metrics = runlogs.parse_metrics_line(line)
        if metrics is None or "train_runtime" in metrics:
            return
        step = runlogs.parse_step(metrics.get(runlogs.STEP_KEY))
        if step is None:
            return
        self.last = metrics
        self.display.update(step[0], step[1], describe(metrics))


def describe(metrics: dict[str, Any]) -> str:
    """`reward 1.20 [format 0.70 bbox 0.49 ...] kl 0.0001 len 16`: one line per logging step."""
    parts = []
    if isinstance(metrics.get("reward"), float):
        parts.append(f"reward {metrics['reward']:.3f}")
    comps = {
        key.split("/")[1]: value
        for key, value in metrics.items()
        if key.startswith("rewards/") and key.endswith("/mean") and isinstance(value, float)
    }
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
