"""What `satori rewards score` reads: a JSONL of completions, or a `satori train` run folder.

A run folder is scored from its own log (the newest `completions.jsonl`), joined by row id to
the data it trained on (images and ground truth), in the run's own pixel budget: the budget its
boxes were predicted in. A plain file is scored in --min/--max-pixels, else the environment's,
else the paper's budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from satori_cli.errors import SatoriError
from satori_cli.pixels import PixelBudget

if TYPE_CHECKING:
    from satori_cli.models import Run


@dataclass(frozen=True)
class ScoringInput:
    file: Path  # the JSONL of completions
    budget: PixelBudget  # the pixels the completions' boxes are in
    data_rows: dict[str, dict[str, Any]] | None  # a run's training rows by id (None: a plain file)


def scoring_input(path: Path, min_pixels: int | None, max_pixels: int | None) -> ScoringInput:
    """The completions at `path` (a file or a run folder) and the budget to score them in."""
    from satori_cli.models import run_budget

    if not path.is_dir():
        return ScoringInput(path, _given_budget(min_pixels, max_pixels), None)
    file, run, rows = run_completions(path)
    if run is None:  # logged completions without run.json: scored like a plain file, with its rows
        return ScoringInput(file, _given_budget(min_pixels, max_pixels), rows)
    return ScoringInput(
        file, run_budget(run, str(path), min_pixels, max_pixels, "--min-pixels/--max-pixels"), rows
    )


def _given_budget(min_pixels: int | None, max_pixels: int | None) -> PixelBudget:
    """--min/--max-pixels, else the environment's, else the paper's."""
    env = PixelBudget.from_env()
    try:
        return PixelBudget(min_pixels or env.min_pixels, max_pixels or env.max_pixels)
    except ValueError as exc:
        raise SatoriError(str(exc), hint="check --min-pixels/--max-pixels") from exc


def run_completions(run_dir: Path) -> tuple[Path, Run | None, dict[str, dict[str, Any]]]:
    """A train run's newest completions.jsonl, its run settings (None without run.json) and its
    data rows by id (its grammar is read by `model_grammar`)."""
    from satori_cli.models import run_for
    from satori_cli.train.report import dataset_rows
    from satori_cli.train.runinfo import read_run_json
    from satori_cli.train.runlogs import swift_dirs

    logged = [d / "completions.jsonl" for d in swift_dirs(run_dir) if (d / "completions.jsonl").is_file()]
    if not logged:
        raise SatoriError(f"{run_dir} has no completions.jsonl", hint="train with log_completions on")
    return logged[-1], run_for(run_dir), dataset_rows(read_run_json(run_dir), run_dir)
