"""`satori rewards`: where the ms-swift plugin is, which rewards it registers, and scoring a file."""

from __future__ import annotations

from pathlib import Path

import typer

from satori_cli.pixels import PAPER_MAX_PIXELS, PAPER_MIN_PIXELS

rewards_app = typer.Typer(
    no_args_is_help=True,
    help="The four SATORI rewards: the ms-swift plugin path, and scoring completions from a file.",
)

_CLASSES = {
    "external_format": ("SatoriFormat", "format: caption, [[boxes]], answer in order, nothing else"),
    "external_bbox_acc": ("SatoriBoxIoU", "IoU of the union of predicted and of ground-truth boxes"),
    "extern_vqa_acc": ("SatoriAnswer", "first <answer> equals one of possible_answers exactly"),
    "external_caption_acc": ("SatoriCaption", "½ smoothed BLEU-4 + ½ ROUGE-L F1 against image_caption"),
    "external_vqa_norm_acc": (
        "SatoriAnswerNormalized",
        "like extern_vqa_acc after case/punctuation/articles",
    ),
}


@rewards_app.command("path")
def path() -> None:
    """Print the plugin file for `swift rlhf --external_plugins $(satori rewards path)`."""
    from satori_cli.rewards import plugin_path

    typer.echo(str(plugin_path()))


@rewards_app.command("list")
def list_rewards() -> None:
    """Show the reward names the plugin registers, their log names and the columns they read."""
    from rich.markup import escape
    from rich.table import Table

    from satori_cli.rewards import COLUMNS
    from satori_cli.ui import console

    table = Table(title="rewards registered by `satori rewards path`")
    table.add_column("--reward_funcs name", no_wrap=True)
    table.add_column("logged as (class)", no_wrap=True)
    table.add_column("reads columns")
    table.add_column("what it scores")
    for name, (cls, what) in _CLASSES.items():
        table.add_row(name, cls, ", ".join(COLUMNS[name]) or "-", escape(what))
    console().print(table)


def _run_folder(run_dir: Path, env):
    """A train run's completions.jsonl, its pixel budget and its data rows by id."""
    from satori_cli.errors import SatoriError
    from satori_cli.pixels import PixelBudget
    from satori_cli.train.report import dataset_rows
    from satori_cli.train.runinfo import read_run_json
    from satori_cli.train.runlogs import swift_dirs

    run = read_run_json(run_dir)
    logged = [d / "completions.jsonl" for d in swift_dirs(run_dir) if (d / "completions.jsonl").is_file()]
    if not logged:
        raise SatoriError(f"{run_dir} has no completions.jsonl", hint="train with log_completions on")
    recipe = run.get("recipe") or {}
    if recipe.get("min_pixels") and recipe.get("max_pixels"):
        env = PixelBudget(int(recipe["min_pixels"]), int(recipe["max_pixels"]))
    return logged[-1], env, dataset_rows(run, run_dir)


@rewards_app.command("score")
def score(
    file: Path = typer.Argument(
        ...,
        help="JSONL rows with 'completion' plus bboxs, width, height, possible_answers, image_caption; "
        "or a `satori train` run folder (its completions.jsonl, joined to its data, in its pixel budget).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Where to write one JSON line of scores per input row "
        "(default: FILE's name with .scores.jsonl).",
    ),
    min_pixels: int = typer.Option(
        None, help=f"Budget the boxes were predicted in (default: $MIN_PIXELS, else {PAPER_MIN_PIXELS})."
    ),
    max_pixels: int = typer.Option(
        None, help=f"Budget the boxes were predicted in (default: $MAX_PIXELS, else {PAPER_MAX_PIXELS})."
    ),
    normalized_vqa: bool = typer.Option(
        False,
        "--normalized-vqa",
        help="Also score external_vqa_norm_acc (case, punctuation, articles ignored).",
    ),
    show_malformed: int = typer.Option(10, help="How many malformed lines to list by number."),
) -> None:
    """Score every completion of FILE with the four rewards: a table of means, and per-row scores."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from satori_cli.errors import SatoriError
    from satori_cli.pixels import PixelBudget
    from satori_cli.rewards.score_file import score_jsonl
    from satori_cli.ui import console

    env = PixelBudget.from_env()
    data_rows = None
    if file.is_dir():
        file, env, data_rows = _run_folder(file, env)
    try:
        budget = PixelBudget(min_pixels or env.min_pixels, max_pixels or env.max_pixels)
    except ValueError as exc:
        raise SatoriError(str(exc), hint="check --min-pixels/--max-pixels") from exc
    if not file.is_file():
        raise SatoriError(f"no such file: {file}", hint="pass a JSONL file of completions")
    total = sum(1 for line in file.open("rb") if line.strip())
    with Progress(
        TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), console=console(), transient=True
    ) as progress:
        task = progress.add_task("score", total=total)
        report = score_jsonl(
            file,
            out,
            budget=budget,
            normalized_vqa=normalized_vqa,
            on_progress=lambda n: progress.advance(task, n),
            data_rows=data_rows,
        )

    table = Table(
        title=f"{file.name}: {report.rows} rows, pixel budget {budget.min_pixels}-{budget.max_pixels}"
    )
    for col, justify in (
        ("reward", "left"),
        ("logged as", "left"),
        ("mean", "right"),
        ("=1", "right"),
        ("=0", "right"),
        ("rows scored", "right"),
    ):
        table.add_column(col, justify=justify)
    for name, s in report.rewards.items():
        mean = f"{s.mean:.4f}" if s.scored else "-"
        table.add_row(name, _CLASSES[name][0], mean, str(s.full), str(s.zero), str(s.scored))
    console().print(table)
    for name, s in report.rewards.items():
        if s.missing_columns:
            console().print(
                f"[yellow]{name}:[/] {s.lacking} row(s) lack column(s) "
                f"{', '.join(sorted(s.missing_columns))}: not scored"
            )
    if report.malformed:
        console().print(f"[yellow]{len(report.malformed)} malformed line(s)[/] (null scores in the output):")
        for number, why in report.malformed[:show_malformed]:
            console().print(f"  line {number}: {why}")
    console().print(f"per-row scores: {report.out_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(
        rewards_app, name="rewards", help="The four SATORI rewards: plugin path, list, scoring a file."
    )
