"""Items done / total per benchmark and model while `satori eval` runs, with an ETA.

VLMEvalKit's own progress is a tqdm bar per rank on stderr (no bar at all for API models'
threads); read through a pipe it is a stream of fragments. So the model classes satori
registers count for themselves: VLMEvalKit hands each model a benchmark's dataset before its
items (`set_dump_image`), then asks for one item at a time (`generate`), and `ItemCounter`
prints one marked line per change (throttled) on the worker's stdout:

    [satori-progress] {"dataset": "MMStar", "rank": 0, "world": 2, "done": 17, "total": 1500}

`total` is the benchmark's item count (after --limit), the same on every rank; `done` is this
rank's. `EvalProgress` (in satori's own process) adds the ranks up and shows it: a rich bar per
benchmark in a terminal, plain lines when piped (at each tenth, at most a minute apart, and at
the end), each line whole. The worker side needs only the standard library.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

MARK = "[satori-progress] "
THROTTLE_S = 0.5  # a worker prints at most this often per benchmark (and always the last item)
QUIET_S = 60.0  # piped: a line at least this often while items still land


def progress_line(dataset: str, rank: int, world: int, done: int, total: int) -> str:
    payload = {"dataset": dataset, "rank": rank, "world": world, "done": done, "total": total}
    return MARK + json.dumps(payload)


def parse_progress(line: str) -> dict[str, Any] | None:
    """The progress record in a log line (a tqdm fragment may precede it), else None."""
    at = line.find(MARK)
    if at < 0:
        return None
    try:
        record = json.loads(line[at + len(MARK) :])
    except ValueError:
        return None
    keys = ("dataset", "rank", "world", "done", "total")
    if not isinstance(record, dict) or any(k not in record for k in keys):
        return None
    return record


class ItemCounter:
    """The worker side: counts a model's answered items for the benchmark at hand (thread-safe:
    VLMEvalKit's API path answers from a thread pool)."""

    def __init__(self, emit: Any = None) -> None:
        self._emit = emit or (lambda line: print(line, flush=True))
        self._lock = threading.Lock()
        self.dataset: str | None = None
        self.rank, self.world, self.done, self.total = 0, 1, 0, 0
        self._last = 0.0

    def start(self, dataset: Any) -> None:
        """A benchmark begins: `dataset` is VLMEvalKit's dataset object (its `data` already cut
        to --limit), split over ranks as VLMEvalKit's `infer_data` splits it."""
        name = getattr(dataset, "dataset_name", None)
        data = getattr(dataset, "data", None)
        if name is None or data is None:
            self.dataset = None
            return
        with self._lock:
            self.dataset = str(name)
            self.rank = int(os.environ.get("RANK", 0))
            self.world = max(1, int(os.environ.get("WORLD_SIZE", 1)))
            self.total = len(data)
            self.done = 0
            self._send()

    def item_done(self) -> None:
        with self._lock:
            if self.dataset is None:
                return
            self.done += 1
            mine = len(range(self.rank, self.total, self.world))
            if self.done >= mine or time.monotonic() - self._last >= THROTTLE_S:
                self._send()

    def _send(self) -> None:
        self._last = time.monotonic()
        self._emit(progress_line(self.dataset, self.rank, self.world, self.done, self.total))


@dataclass
class _Bench:
    total: int
    started: float
    done_by_rank: dict[int, int] = field(default_factory=dict)
    shown_tenth: int = -1  # piped: the last tenth a line was printed for
    shown_at: float = 0.0
    shown_done: int = 0
    task: Any = None

    @property
    def done(self) -> int:
        return min(self.total, sum(self.done_by_rank.values()))


def format_seconds(seconds: float) -> str:
    """`42 s`, `3 min 5 s`, `2 h 4 min`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def status_text(model: str, dataset: str, done: int, total: int, elapsed: float) -> str:
    """One plain progress line.

    >>> status_text("satori", "MMStar", 150, 1500, 30.0)
    'satori MMStar: 150/1500 items (10%), 5.0 items/s, ETA 4 min 30 s'
    >>> status_text("satori", "MMStar", 1500, 1500, 300.0)
    'satori MMStar: 1500/1500 items in 5 min 0 s; scoring'
    """
    if total and done >= total:
        return f"{model} {dataset}: {done}/{total} items in {format_seconds(elapsed)}; scoring"
    text = f"{model} {dataset}: {done}/{total} items"
    if total:
        text += f" ({100 * done // total}%)"
    if done and elapsed > 0:
        rate = done / elapsed
        text += f", {rate:.1f} items/s, ETA {format_seconds((total - done) / rate)}"
    return text


class EvalProgress:
    """Shows the workers' progress records: rich bars in a terminal, plain lines when piped."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.model = ""
        self.benches: dict[str, _Bench] = {}
        self._progress: Any = None
        self._waiting: Any = None

    def __enter__(self) -> EvalProgress:
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("items"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("[dim]{task.fields[phase]}"),
                console=self.console,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    # -- one launch per model --------------------------------------------------------------
    def start_model(self, model: str) -> None:
        self.model, self.benches = model, {}
        what = f"{model}: starting VLMEvalKit and loading the model"
        if self._progress is not None:
            self._waiting = self._progress.add_task(what + " ...", total=None, phase="")
        else:
            self.console.print(what + " ...", markup=False, highlight=False)

    def end_model(self) -> None:
        self._drop_waiting()
        if self._progress is not None:
            for bench in self.benches.values():
                self._progress.update(bench.task, phase="done" if bench.done >= bench.total else "stopped")

    def _drop_waiting(self) -> None:
        if self._progress is not None and self._waiting is not None:
            self._progress.remove_task(self._waiting)
        self._waiting = None

    def feed(self, line: str) -> bool:
        """Take one line of the launch's output; True when it was a progress record."""
        record = parse_progress(line)
        if record is None:
            return False
        name = str(record["dataset"])
        now = time.monotonic()
        bench = self.benches.get(name)
        if bench is None:
            self._drop_waiting()
            for earlier in self.benches.values():  # VLMEvalKit scores one benchmark, then runs the next
                if self._progress is not None:
                    self._progress.update(earlier.task, phase="done")
            bench = self.benches[name] = _Bench(total=int(record["total"]), started=now)
            if self._progress is not None:
                bench.task = self._progress.add_task(
                    f"{self.model} {name}", total=bench.total or None, phase="answering"
                )
        bench.done_by_rank[int(record["rank"])] = int(record["done"])
        self._show(name, bench, now)
        return True

    def _show(self, name: str, bench: _Bench, now: float) -> None:
        done, total = bench.done, bench.total
        if self._progress is not None:
            phase = "scoring" if total and done >= total else "answering"
            self._progress.update(bench.task, completed=done, phase=phase)
            return
        tenth = 10 * done // total if total else 0
        quiet = now - bench.shown_at >= QUIET_S and done != bench.shown_done
        if tenth > bench.shown_tenth or quiet:
            bench.shown_tenth, bench.shown_at, bench.shown_done = tenth, now, done
            text = status_text(self.model, name, done, total, now - bench.started)
            self.console.print(text, markup=False, highlight=False)
