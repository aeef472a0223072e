"""`satori rewards`: where the ms-swift plugin is, which rewards it registers, and scoring a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from satori_cli.commands.options import OUT, Grammar, MaxPixels, MinPixels, Overwrite

rewards_app = typer.Typer(
    no_args_is_help=True,
    help="The SATORI rewards: the ms-swift plugin path, and scoring completions from a file.",
)


@rewards_app.command("path")
def path() -> None:
    """Print the plugin file for `swift rlhf --external_plugins $(satori rewards path)`."""
    from satori_cli.rewards import plugin_path

    typer.echo(str(plugin_path()))


DOC_WIDTH = 24  # narrowest description column of the `rewards list` table


@rewards_app.command("list")
def list_rewards() -> None:
    """Show the reward names the plugin registers, their log names, the columns they read and
    the output grammars (`--grammar`) whose training uses them."""
    import textwrap

    from rich.markup import escape
    from rich.table import Table

    from satori_cli.console import console
    from satori_cli.rewards import REWARDS, grammars_using

    out = console()
    title = "rewards registered by `satori rewards path`"
    headers = ("--reward_funcs name", "logged as (class)", "reads columns", "grammars")
    rows = []
    for r in REWARDS:
        grammars = ", ".join(grammars_using(r.name)) or "(optional)"
        rows.append((r.name, r.class_name, ", ".join(r.columns) or "-", grammars, r.doc))
    # Each cell but the description whole, the description at least DOC_WIDTH wide (+3 per column
    # for padding and border).
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    if sum(w + 3 for w in widths) + DOC_WIDTH + 4 <= out.width:
        table = Table(title=title)
        for header in headers:
            table.add_column(header, no_wrap=True)
        table.add_column("what it scores", min_width=DOC_WIDTH)
        for *cells, doc in rows:
            table.add_row(*cells, escape(doc))
        out.print(table)
        return
    # Too narrow for the table without cutting names (80 columns): one block per reward.
    out.print(f"[italic]{escape(title)}[/]")
    for name, class_name, columns, grammars, doc in rows:
        out.print(f"[bold]{name}[/]  logged as {class_name}", soft_wrap=True)
        for text in (f"reads: {columns}; grammars: {grammars}", doc):
            width = max(40, out.width)
            lines = textwrap.wrap(text, width - 2, break_long_words=False, break_on_hyphens=False)
            out.print(escape("\n".join("  " + line for line in lines)), soft_wrap=True)


@rewards_app.command("score")
def score(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="JSONL rows with 'completion' plus bboxs, width, height, possible_answers, image_caption; "
            "or a `satori train` run folder (its completions.jsonl, joined to its data, in its pixel "
            "budget). Boxes in the completions are read in the model's resized-input pixels (Qwen2.5-VL's "
            "convention: the image resized to the pixel budget) and mapped to the original image, where "
            "bboxs are; see --boxes. Default: the newest run under $SATORI_HOME/runs.",
        ),
    ] = None,
    boxes: Annotated[
        str,
        typer.Option(
            "--boxes",
            help="Where the completions' boxes are: `resized` (the model's input at --min/--max-pixels, "
            "as SATORI and Qwen2.5-VL answer; mapped with the budget) or `original` (original-image "
            "pixels, e.g. another model family's or hand-written boxes; compared as they are).",
        ),
    ] = "resized",
    out: Annotated[
        Path | None,
        typer.Option(
            *OUT,
            help="Also write one JSON line of scores per input row to this file (default: only the summary).",
        ),
    ] = None,
    overwrite: Overwrite = False,
    min_pixels: MinPixels = None,
    max_pixels: MaxPixels = None,
    normalized_vqa: Annotated[
        bool,
        typer.Option(
            "--normalized-vqa", help="Also score external_vqa_norm_acc (case, punctuation, articles ignored)."
        ),
    ] = False,
    show_malformed: Annotated[
        int, typer.Option("--show-malformed", help="How many rejected lines to list by number.")
    ] = 10,
    grammar: Grammar = None,
) -> None:
    """Score every completion of FILE with a grammar's rewards (satori: the paper's four): a table
    of means; per-row scores with --out.

    Predicted boxes are taken in the model's resized-input pixels, as SATORI is trained (Qwen2.5-VL
    answers in the pixels of the image it was fed, resized to the pixel budget); --boxes original
    scores boxes given in the original image's pixels."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from satori_cli.console import console
    from satori_cli.errors import SatoriError, install_hint
    from satori_cli.rewards import BY_NAME, missing_libraries
    from satori_cli.rewards.reward_functions import BOX_SPACES
    from satori_cli.rewards.score_file import check_out_path, count_lines, score_jsonl, scoring_input
    from satori_cli.train.runfolder import model_grammar

    if boxes not in BOX_SPACES:
        raise SatoriError(f"--boxes must be resized or original, not {boxes!r}")
    if missing_libraries():
        raise SatoriError(
            f"the rewards need {', '.join(missing_libraries())}",
            hint=install_hint("rewards"),
        )

    if file is None:
        from satori_cli.train.runfolder import newest_run

        file = newest_run("score", has="completions.jsonl")
        console().print(f"run: {file} (the newest)", markup=False, soft_wrap=True)
    chosen = model_grammar(grammar, file if file.is_dir() else None)
    file, budget, data_rows = scoring_input(file, min_pixels, max_pixels)
    if not file.is_file():
        raise SatoriError(f"no such file: {file}", hint="pass a JSONL file of completions")
    if out is not None:
        check_out_path(out, file, overwrite)  # before reading anything
    with Progress(
        TextColumn("scoring lines"), BarColumn(), MofNCompleteColumn(), console=console(), transient=True
    ) as progress:
        task = progress.add_task("score", total=count_lines(file))
        report = score_jsonl(
            file,
            out,
            budget=budget,
            normalized_vqa=normalized_vqa,
            on_progress=lambda line: progress.update(task, completed=line),
            data_rows=data_rows,
            grammar=chosen,
            boxes=boxes,
        )

    where = (
        "boxes in original pixels"
        if boxes == "original"
        else f"boxes in resized-input pixels, budget {budget.min_pixels}-{budget.max_pixels}"
    )
    summary = f"{file.name}: {report.rows} rows, grammar {chosen.name}, {where}"
    console().print(escape(summary), style="italic")
    table = Table("reward", "logged as")
    for col in ("mean", "=1", "=0", "rows scored"):
        table.add_column(col, justify="right")
    for name, s in report.rewards.items():
        mean = f"{s.total / s.scored:.4f}" if s.scored else "-"
        table.add_row(name, BY_NAME[name].class_name, mean, str(s.full), str(s.zero), str(s.scored))
    console().print(table)
    for name, s in report.rewards.items():
        if s.missing_columns:
            console().print(
                f"[yellow]{name}:[/] {s.lacking} row(s) lack column(s) "
                f"{', '.join(sorted(s.missing_columns))}: not scored"
            )
    if report.malformed:
        console().print(f"[yellow]{len(report.malformed)} rejected row(s)[/] (null scores):")
        for number, why in report.malformed[:show_malformed]:
            console().print(f"  line {number}: {escape(why)}")
    if out is not None:
        console().print(f"per-row scores: {escape(str(out))}")


def register(app: typer.Typer) -> None:
    app.add_typer(rewards_app, name="rewards", help="The SATORI rewards: plugin path, list, scoring a file.")
