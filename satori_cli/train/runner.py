"""`satori train` as a library: resolve a plan, check it, run swift with a live progress line.

The order matters for the user: everything cheap (recipe, paths, preflight) happens before
the model loads, so a mistake costs a second, not minutes. Data preparation (raw source or
the built-in sample for the smoke preset) happens in the run folder, so a run is
self-contained.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from satori_cli import models
from satori_cli.cmdline import Command, find_program, run
from satori_cli.config import paths
from satori_cli.errors import SatoriError, install_hint
from satori_cli.grammar import get_grammar
from satori_cli.train import runinfo, runlogs
from satori_cli.train.command import DEFAULT_MASTER_PORT, Launch, TrainPlan
from satori_cli.train.recipe import Recipe, parse_passthrough, read_recipe_file, resolve_recipe

SAMPLE_ROWS = 8
SWIFT_HINT = f"install the training extra: {install_hint('train')}"


@dataclass
class TrainOptions:
    """The `satori train` flags, as plain data (None = not given)."""

    preset: str | None = None
    config: Path | None = None
    model: str | None = None
    data: str | None = None
    val_data: str | None = None
    output: Path | None = None
    gpus: int | None = None
    nodes: int = 1
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int = DEFAULT_MASTER_PORT
    resume: str | None = None
    extra: list[str] = field(default_factory=list)
    grammar: str | None = None


def is_prepared_jsonl(path: Path) -> bool:
    """A JSONL in the GRPO shape satori trains on (first row has messages, images and bboxs)."""
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    return False
                return isinstance(row, dict) and {"messages", "images", "bboxs"} <= set(row)
    return False


def default_output(preset: str) -> Path:
    return paths().runs / f"{preset}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _latest_run_with_checkpoint() -> Path | None:
    runs = paths().runs
    if not runs.is_dir():
        return None
    candidates = [p for p in runs.iterdir() if p.is_dir() and runlogs.latest_checkpoint(p)]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def resolve_output_and_resume(opts: TrainOptions, preset: str) -> tuple[Path, Path | None]:
    output = Path(opts.output).expanduser().resolve() if opts.output else None
    if opts.resume is None:
        return output or default_output(preset), None
    if opts.resume != "latest":
        checkpoint = Path(opts.resume).expanduser().resolve()
        if not (checkpoint / "trainer_state.json").is_file():
            latest = runlogs.latest_checkpoint(checkpoint) if checkpoint.is_dir() else None
            if latest is None:
                raise SatoriError(f"--resume {opts.resume}: no checkpoint there (no trainer_state.json)")
            checkpoint = latest
        run_dir = output or runlogs.run_dir_of(checkpoint)
        return run_dir, checkpoint
    run_dir = output or _latest_run_with_checkpoint()
    if run_dir is None:
        raise SatoriError("--resume: no earlier run with a checkpoint found", hint="pass --output RUN_DIR")
    checkpoint = runlogs.latest_checkpoint(run_dir)
    if checkpoint is None:
        raise SatoriError(
            f"--resume: {run_dir} has no checkpoint yet",
            hint="a run saves every save_steps steps; start without --resume",
        )
    return run_dir, checkpoint


def _prepare(src: Path, out_dir: Path) -> tuple[Path, Path | None]:
    from satori_cli.data.prepare import prepare_dataset

    result = prepare_dataset(src, out_dir)
    val = getattr(result, "val_path", None)
    return Path(result.train_path), Path(val) if val else None


def resolve_data(recipe: Recipe, run_dir: Path) -> tuple[Path, Path | None]:
    """The prepared training JSONL (preparing a raw source, or the sample set, into the run folder)."""
    if recipe.data is None:
        if recipe.preset != "smoke":
            raise SatoriError(
                "--data is required for this preset",
                hint="e.g. satori data prepare SRC --out data/vqa, then --data data/vqa/train.jsonl",
            )
        from satori_cli.data.sample import write_sample

        raw = write_sample(run_dir / "data" / "sample", SAMPLE_ROWS, 0)
        train, _ = _prepare(Path(raw), run_dir / "data" / "prepared")
    else:
        source = Path(recipe.data).expanduser().resolve()
        if not source.exists():
            raise SatoriError(f"training data {recipe.data} not found")
        train = source if is_prepared_jsonl(source) else _prepare(source, run_dir / "data" / "prepared")[0]
    val = None
    if recipe.val_data:
        val = Path(recipe.val_data).expanduser().resolve()
        if not val.is_file():
            raise SatoriError(f"validation data {recipe.val_data} not found")
    return train, val


def tag_rows(src: Path, dest: Path) -> Path:
    """Copy a prepared JSONL adding `solution` = the row id where absent.

    ms-swift logs a `solution` column next to each completion (and no other column), so this
    is what lets `satori report` find a completion's image and ground-truth boxes. The
    prompt the model sees is unchanged; the rewards ignore the column.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, encoding="utf-8") as fin, open(dest, "w", encoding="utf-8") as fout:
        for n, line in enumerate(fin):
            if not line.strip():
                continue
            row = json.loads(line)
            row.setdefault("solution", str(row.get("id", n)))
            fout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return dest


def build_plan(opts: TrainOptions, *, prepare_data: bool = True) -> TrainPlan:
    """Resolve recipe, model, data, output and resume into a plan (prepares data if needed)."""
    from satori_cli.prompts import prompt_path
    from satori_cli.rewards import plugin_path

    overrides: dict[str, Any] = {
        "model": opts.model,
        "data": opts.data,
        "val_data": opts.val_data,
        "gpus": opts.gpus,
        "grammar": opts.grammar,
        "swift": parse_passthrough(opts.extra),
    }
    recipe = resolve_recipe(opts.preset, opts.config, overrides)
    launch = Launch(
        gpus=recipe.gpus,
        nodes=opts.nodes,
        node_rank=opts.node_rank,
        master_addr=opts.master_addr,
        master_port=opts.master_port,
    )
    run_dir, resume = resolve_output_and_resume(opts, recipe.preset)
    # Cheap and offline (a hub id is checked by the preflight); the tiny model is built after the data.
    model = models.resolve(recipe.model)
    recipe = inherit_run(recipe, model, opts)
    if resume is not None:
        recipe.grammar = resumed_grammar(run_dir, opts.grammar, recipe.grammar)
    grammar = get_grammar(recipe.grammar)
    if prepare_data:
        run_dir.mkdir(parents=True, exist_ok=True)
        train, val = resolve_data(recipe, run_dir)
        tagged = tag_rows(train, run_dir / "data" / "train.jsonl")
        tagged_val = tag_rows(val, run_dir / "data" / "val.jsonl") if val else None
    else:
        train = Path(recipe.data or run_dir / "data" / "train.jsonl").expanduser().resolve()
        val = Path(recipe.val_data).expanduser().resolve() if recipe.val_data else None
        tagged, tagged_val = (
            run_dir / "data" / "train.jsonl",
            (run_dir / "data" / "val.jsonl" if val else None),
        )
    if model.kind == "tiny" and prepare_data:  # built after the data: the cheap checks come first
        model = models.resolve(recipe.model, build=True)
    plan = TrainPlan(
        recipe=recipe,
        model=model.path,
        train_path=tagged,
        val_path=tagged_val,
        output_dir=run_dir,
        plugin=Path(plugin_path()),
        reward_funcs=grammar.reward_funcs,
        system_prompt=Path(prompt_path("system", grammar)),
        launch=launch,
        local_qwen2_5_vl=model.local and model.model_type == "qwen2_5_vl",
        resume=resume,
    )
    plan.data_sources = (train, val)
    return plan


def inherit_run(recipe: Recipe, model: models.Model, opts: TrainOptions) -> Recipe:
    """Training on from a run keeps the run's pixel budget (the frame its boxes are in) and,
    unless --grammar or the --config file names one, its grammar.

    The preset's budget gives way; a `--config` file that sets another one is refused.
    """
    if model.run is None:
        return recipe
    config = opts.config
    given = read_recipe_file(config) if config else {}
    if model.run.grammar and opts.grammar is None and not given.get("grammar"):
        recipe.grammar = get_grammar(model.run.grammar).name
    low, high = (int(given[k]) if given.get(k) is not None else None for k in ("min_pixels", "max_pixels"))
    budget = models.settle_budget([model], low, high, f"--config {config}")
    recipe.min_pixels, recipe.max_pixels = budget.min_pixels, budget.max_pixels
    return recipe


def resumed_grammar(run_dir: Path, chosen: str | None, resolved: str) -> str:
    """A resumed run keeps the grammar it started with: its prompt and rewards cannot change mid-run."""
    recorded = runinfo.recorded_grammar(run_dir)
    if recorded is None:
        return resolved
    if chosen is not None and get_grammar(chosen).name != recorded:
        raise SatoriError(
            f"{run_dir} was trained in the {recorded} grammar; --grammar {chosen} cannot resume it",
            hint=f"drop --grammar (or pass --grammar {recorded}), or start a new run",
        )
    return recorded


def swift_program() -> str:
    return find_program("swift", SWIFT_HINT)


class ProgressFeed:
    """Turns swift's output lines into a rich progress line, keeping the last lines for errors."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress, self.task = progress, task
        self.tail: deque[str] = deque(maxlen=40)
        self.last: dict[str, Any] | None = None
        self.start = time.monotonic()

    def __call__(self, line: str) -> None:
        self.tail.append(line)
        metrics = runlogs.parse_metrics_line(line)
        if metrics is None or "train_runtime" in metrics:
            return
        step = runlogs.parse_step(metrics.get(runlogs.STEP_KEY))
        if step is None:
            return
        self.last = metrics
        self.progress.update(self.task, completed=step[0], total=step[1], description=describe(metrics))


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
    return " ".join(parts) or "training"


def run_plan(plan: TrainPlan, command: Command, *, verbose: bool = False) -> dict[str, Any]:
    """Run one node's command with a live progress line; write `run.json` before and after."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from satori_cli.ui import console

    run_dir = plan.output_dir
    log_path = run_dir / "train.log"
    train_src, val_src = plan.data_sources if plan.data_sources[0] else (plan.train_path, plan.val_path)
    info: dict[str, Any] = {
        "started": runinfo.now(),
        "status": "running",
        "recipe": plan.recipe.to_dict(),
        "grammar": plan.recipe.grammar,  # what `satori eval/serve/rewards score` follow for this run
        "model": plan.model,
        "resume_from": str(plan.resume) if plan.resume else None,
        "command": runinfo.command_record([(plan.launch.node_rank or 0, command)]),
        "swift_args": plan.swift_args(),
        "launch": {
            "gpus": plan.launch.gpus,
            "nodes": plan.launch.nodes,
            "node_rank": plan.launch.node_rank or 0,
            "master_addr": plan.launch.master_addr,
            "master_port": plan.launch.master_port,
        },
        "versions": runinfo.versions(),
        "git_commit": runinfo.git_commit(),
        "data": {"train": runinfo.fingerprint(train_src), "val": runinfo.fingerprint(val_src)},
        "log": str(log_path),
    }
    runinfo.write_run_json(run_dir, info)
    start = time.monotonic()
    with Progress(
        TextColumn("[bold]step"),
        MofNCompleteColumn(),
        BarColumn(bar_width=20),
        TextColumn("{task.description}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console(),
        transient=False,
    ) as progress:
        task = progress.add_task("loading model and data ...", total=None)
        feed = ProgressFeed(progress, task)

        def on_line(line: str) -> None:
            feed(line)
            if verbose:
                progress.console.print(line, markup=False, highlight=False)

        code = run(command, on_line=on_line, log_path=log_path)
    latest = runlogs.latest_checkpoint(run_dir)
    info.update(
        {
            "finished": runinfo.now(),
            "status": "ok" if code == 0 else ("interrupted" if code == 130 else "failed"),
            "exit_code": code,
            "wall_s": round(time.monotonic() - start, 2),
            "last_checkpoint": str(latest) if latest else None,
            "last_metrics": feed.last,
        }
    )
    runinfo.write_run_json(run_dir, info)
    if code != 0:
        tail = "\n".join(feed.tail)
        if code != 130:
            console().print(tail, markup=False, highlight=False)
        raise SatoriError(
            f"swift rlhf {'was interrupted' if code == 130 else f'failed with exit code {code}'}",
            exit_code=1,
            hint=f"full log: {log_path}",
        )
    return info
