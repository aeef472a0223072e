"""`satori data sample | prepare | inspect`: get VQA-Verify into the shape GRPO training needs."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from satori_cli.commands.options import OUT, ROWS, Overwrite, Seed
from satori_cli.errors import one_line

if TYPE_CHECKING:
    from rich.table import Table

    from satori_cli.data.inspect import Stats
    from satori_cli.data.prepare import PrepareResult

data_app = typer.Typer(
    name="data",
    help="Make, prepare and inspect training data (VQA-Verify-shaped rows -> ms-swift GRPO JSONL).",
    no_args_is_help=True,
)


@data_app.command("sample")
def sample(
    out: Annotated[Path, typer.Option(*OUT, metavar="DIR", help="Folder to write the raw sample set into.")],
    rows: Annotated[int, typer.Option(*ROWS, min=1, help="Number of rows.")] = 32,
    seed: Seed = 0,
    form: Annotated[
        str,
        typer.Option(
            "--format",
            help="Raw form: jsonl (images as files), json, parquet (embedded image bytes), zip or tar.gz.",
        ),
    ] = "jsonl",
    overwrite: Overwrite = False,
) -> None:
    """Write a small synthetic VQA-Verify-shaped set (coloured shapes with exact boxes).

    The output is raw data, the input of `satori data prepare`; the demo and the tests use it.
    """
    from satori_cli.console import console
    from satori_cli.data.sample import write_sample

    path = write_sample(out, n=rows, seed=seed, form=form, overwrite=overwrite)
    console().print(f"[green]wrote {rows} sample rows:[/] {path}")
    console().print(f"next: satori data prepare {path} --out DIR")


@data_app.command("sample-bench")
def sample_bench(
    out: Annotated[Path, typer.Option(*OUT, help="TSV file to write, e.g. lmu/TinyBench.tsv.")],
    overwrite: Overwrite = False,
) -> None:
    """Write a small MMBench-style TSV (8 rows, 3 categories, rotated options) to try `satori eval`.

    Its file name (without .tsv) is the benchmark name to pass to `satori eval --data`.
    """
    from satori_cli.console import console
    from satori_cli.evaluation.sample_bench import write_tiny_bench

    console().print(f"[green]wrote[/] {write_tiny_bench(out, overwrite=overwrite)}")


@data_app.command("prepare")
def prepare(
    src: Annotated[
        Path,
        typer.Argument(
            help="A .parquet/.jsonl/.json file, a folder of them (e.g. a downloaded dataset), or a zip/tar."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            *OUT, metavar="DIR", help="Output folder: train.jsonl, val.jsonl, rejected.jsonl, images/."
        ),
    ],
    val_ratio: Annotated[
        float,
        typer.Option(
            "--val-ratio", min=0.0, max=0.99, help="Fraction of valid rows written to val.jsonl (0: none)."
        ),
    ] = 0.0,
    seed: Seed = 0,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            help="Map a field to a raw column, FIELD=COLUMN (repeatable). Fields: question, answer, image, "
            "bboxs, width, height, caption, id, source, messages.",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on the first bad row instead of rejecting it.")
    ] = False,
    max_extract_gb: Annotated[
        float | None,
        typer.Option(
            "--max-extract-gb",
            min=0.0,
            help="Most an archive SRC may unpack, in GiB (default: 20x the archive's size, at least 2). "
            "Only data files and the images rows use are unpacked.",
        ),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Validate raw rows and write ms-swift GRPO JSONL with the SATORI reward columns.

    Bad rows (missing or corrupt image, bad boxes, empty question/answer/caption, a duplicate
    id, text over its cap, ...) go to rejected.jsonl with their row id and reason. Outputs
    appear only when complete; an earlier prepare's output folder is never read as input.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from satori_cli.console import console
    from satori_cli.data.prepare import prepare_dataset
    from satori_cli.errors import SatoriError

    if max_extract_gb is not None and not 0 <= max_extract_gb < 2**33:  # also NaN and inf
        raise SatoriError(f"--max-extract-gb must be a number of GiB, got {max_extract_gb}")
    limit = None if max_extract_gb is None else int(max_extract_gb * 2**30)
    with (
        _sigterm_as_error(),
        Progress(
            TextColumn("preparing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            console=console(),
            transient=True,
        ) as bar,
    ):
        task = bar.add_task("prepare", total=None)

        def on_progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        result = prepare_dataset(
            src,
            out,
            val_ratio=val_ratio,
            seed=seed,
            columns=column,
            strict=strict,
            progress=on_progress,
            overwrite=overwrite,
            max_extract_bytes=limit,
        )
    console().print(prepare_table(result))
    for path in result.skipped:
        console().print(f"[dim]not read (an output of `satori data prepare`): {printable(str(path))}[/]")
    console().print(f"[green]train:[/] {result.train_path}")
    if result.val_path:
        console().print(f"[green]val:[/] {result.val_path}")
    if result.rejected_total:
        console().print(f"[yellow]rejected:[/] {result.rejected_path}")
    if result.rejected["duplicate_id"]:
        console().print("[yellow]ids repeat in this data: map a unique column with --column id=COLUMN[/]")
    if result.written == 0:
        raise SatoriError(
            f"no valid rows in {src}: every row was rejected",
            hint=f"see {result.rejected_path}, or map columns with --column FIELD=COLUMN",
        )


@data_app.command("inspect")
def inspect(
    target: Annotated[
        Path, typer.Argument(help="A prepared folder (train.jsonl, val.jsonl) or one JSONL file.")
    ],
    rows: Annotated[int, typer.Option(*ROWS, min=0, help="Rows drawn on the contact sheet (0: none).")] = 8,
    sheet: Annotated[
        Path | None,
        typer.Option(*OUT, help="Where to write the contact sheet PNG (default: TARGET/contact_sheet.png)."),
    ] = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Print statistics of a prepared set and draw samples with their question, answer and boxes.

    Works on any JSONL: lines that are not well-formed prepared rows are counted by what is
    wrong with them (with their line numbers), and the exit code is then 1.
    """
    from satori_cli.console import console
    from satori_cli.data.inspect import contact_sheet, inspect_dataset
    from satori_cli.errors import SatoriError

    with console().status("reading ..."):
        stats, drawn = inspect_dataset(target, samples=rows, seed=seed)
    console().print(inspect_table(stats))
    if rows and drawn:
        out = sheet or (target if target.is_dir() else target.parent) / "contact_sheet.png"
        with console().status("drawing the contact sheet ..."):
            contact_sheet(drawn, out, overwrite=overwrite)
        console().print(
            f"[green]contact sheet ({len(drawn)} samples, ground-truth boxes in magenta):[/] {out}"
        )
    if stats.bad_rows:
        raise SatoriError(
            f"{stats.bad_rows} of {stats.lines} lines are not well-formed prepared rows (see the table)",
            exit_code=1,
            hint="`satori data prepare FILE --out DIR` validates and rewrites them",
        )


@contextlib.contextmanager
def _sigterm_as_error() -> Iterator[None]:
    """SIGTERM ends a prepare like Ctrl-C does: its scratch files are removed on the way out."""
    from satori_cli.errors import SatoriError

    def stop(signum, frame):
        raise SatoriError("terminated by SIGTERM; the previous outputs are unchanged", exit_code=143)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- the tables (rich is imported only when one is drawn) --
def printable(text: str) -> str:
    """User text as one line of a table cell: no control characters (escape sequences), no markup."""
    from rich.markup import escape

    return escape(one_line(text, None))


def prepare_table(result: PrepareResult) -> Table:
    """Rows in, written (train/val) and rejected by reason; in = written + rejected."""
    from rich.table import Table

    from satori_cli.data.validate import REASONS

    table = Table(title="satori data prepare", show_footer=False)
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_column("meaning", style="dim")
    table.add_row("in", str(result.rows_in), "records read")
    table.add_row("written", str(result.written), f"train {result.train_rows}, val {result.val_rows}")
    table.add_row("rejected", str(result.rejected_total), "see rejected.jsonl")
    for reason, count in result.rejected.most_common():
        table.add_row(f"  {reason}", str(count), REASONS[reason])
    return table


def inspect_table(stats: Stats, top: int = 6) -> Table:
    """One table: rows per file, source mix, boxes per row, image sizes, text lengths."""
    from rich.table import Table

    from satori_cli.data.inspect import summarize

    def mix(counter, fmt=str) -> str:
        total = sum(counter.values())
        items = [f"{printable(fmt(k))}: {v} ({100 * v / total:.0f}%)" for k, v in counter.most_common(top)]
        if len(counter) > top:
            items.append(f"... {len(counter) - top} more")
        return "\n".join(items)

    table = Table(title="satori data inspect")
    table.add_column("statistic")
    table.add_column("value")
    table.add_row(
        "rows", f"{stats.rows} ({printable(', '.join(f'{k}: {v}' for k, v in stats.files.items()))})"
    )
    if stats.bad_rows:
        table.add_row(
            "[yellow]rows with problems[/]",
            "\n".join(
                printable(line)
                for line in [
                    f"{stats.bad_rows} of {stats.lines} lines (not counted above)",
                    *(
                        f"{kind}: {count} (e.g. {'; '.join(stats.examples[kind])})"
                        for kind, count in stats.problems.most_common()
                    ),
                ]
            ),
        )
    table.add_row("sources", mix(stats.sources))
    table.add_row("boxes per row", mix(stats.boxes_per_row))
    table.add_row("image sizes (w x h)", mix(stats.sizes, lambda wh: f"{wh[0]}x{wh[1]}"))
    table.add_row("question words (min / median / max)", summarize(stats.question_words))
    table.add_row("answer chars (min / median / max)", summarize(stats.answer_chars))
    table.add_row("caption words (min / median / max)", summarize(stats.caption_words))
    return table


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
