"""What `satori rewards score` reads: a JSONL of completions, or a `satori train` run folder.

A run folder is scored from its own log (the newest `completions.jsonl`), joined by row id to
the data it trained on (images and ground truth), in the run's own pixel budget: the budget its
boxes were predicted in. A plain file is scored in --min/--max-pixels, else the environment's,
else the paper's budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satori_cli.errors import SatoriError
from satori_cli.pixels import PixelBudget


@dataclass(frozen=True)
class ScoringInput:
    file: Path  # the JSONL of completions
    budget: PixelBudget  # the pixels the completions' boxes are in
    data_rows: dict[str, dict[str, Any]] | None  # a run's training rows by id (None: a plain file)


def scoring_input(path: Path, min_pixels: int | None, max_pixels: int | None) -> ScoringInput:
    """The completions at `path` (a file or a run folder) and the budget to score them in."""
    from satori_cli import models

    if not path.is_dir():
        env = PixelBudget.from_env()
        try:
            budget = PixelBudget(min_pixels or env.min_pixels, max_pixels or env.max_pixels)
        except ValueError as exc:
            raise SatoriError(str(exc), hint="check --min-pixels/--max-pixels") from exc
        return ScoringInput(path, budget, None)
    file, run, rows = run_completions(path)
    if run is None:  # logged completions without run.json: scored like a plain file, with its rows
        plain = scoring_input(file, min_pixels, max_pixels)
        return ScoringInput(file, plain.budget, rows)
    budget = models.run_budget(run, str(path), min_pixels, max_pixels, "--min-pixels/--max-pixels")
    return ScoringInput(file, budget, rows)


def run_completions(run_dir: Path) -> tuple[Path, Any, dict[str, dict[str, Any]]]:
    """A train run's newest completions.jsonl, its run settings (None without run.json) and its
    data rows by id (its grammar is read by `model_grammar`)."""
    from satori_cli import models
    from satori_cli.train.report import dataset_rows
    from satori_cli.train.runinfo import read_run_json
    from satori_cli.train.runlogs import swift_dirs

    run = read_run_json(run_dir)
    logged = [d / "completions.jsonl" for d in swift_dirs(run_dir) if (d / "completions.jsonl").is_file()]
    if not logged:
        raise SatoriError(f"{run_dir} has no completions.jsonl", hint="train with log_completions on")
    settings = models.read_run(run_dir) if models.is_run_folder(run_dir) else None
    return logged[-1], settings, dataset_rows(run, run_dir)
