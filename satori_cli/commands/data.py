"""`satori data sample | prepare | inspect`: get VQA-Verify into the shape GRPO training needs."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(
    name="data",
    help="Make, prepare and inspect training data (VQA-Verify-shaped rows -> ms-swift GRPO JSONL).",
    no_args_is_help=True,
)


@data_app.command("sample")
def sample(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the raw sample set into."),
    n: int = typer.Option(32, "--n", "-n", min=1, help="Number of rows."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same set."),
    form: str = typer.Option(
        "jsonl",
        "--format",
        help="Raw form: jsonl (images as files), json, parquet (embedded image bytes), zip or tar.gz.",
    ),
) -> None:
    """Write a small synthetic VQA-Verify-shaped set (coloured shapes with exact boxes).

    The output is raw data, the input of `satori data prepare`; the demo and the tests use it.
    """
    from satori_cli.data.sample import write_sample
    from satori_cli.ui import console

    path = write_sample(out, n=n, seed=seed, form=form)
    console().print(f"[green]wrote {n} sample rows:[/] {path}")
    console().print(f"next: satori data prepare {path} --out DIR")


@data_app.command("prepare")
def prepare(
    src: Path = typer.Argument(
        ..., help="A .parquet/.jsonl/.json file, a folder of them (e.g. a downloaded dataset), or a zip/tar."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder: train.jsonl, val.jsonl, rejected.jsonl, images/."
    ),
    val_ratio: float = typer.Option(
        0.0, "--val-ratio", min=0.0, max=0.99, help="Fraction of valid rows written to val.jsonl (0: none)."
    ),
    seed: int = typer.Option(0, help="Seed of the train/val split."),
    column: list[str] = typer.Option(
        None,
        "--column",
        "-c",
        help="Map a field to a raw column, FIELD=COLUMN (repeatable). Fields: question, answer, image, "
        "bboxs, width, height, caption, id, source, messages.",
    ),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first bad row instead of rejecting it."),
) -> None:
    """Validate raw rows and write ms-swift GRPO JSONL with the SATORI reward columns.

    Bad rows (missing or corrupt image, bad boxes, empty question/answer/caption, ...) go to
    rejected.jsonl with their row id and reason. Outputs appear only when complete.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from satori_cli.data.prepare import prepare_dataset
    from satori_cli.data.report import prepare_table
    from satori_cli.ui import console

    with Progress(
        TextColumn("preparing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console(),
        transient=True,
    ) as bar:
        task = bar.add_task("prepare", total=None)

        def on_progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        result = prepare_dataset(
            src, out, val_ratio=val_ratio, seed=seed, columns=column, strict=strict, progress=on_progress
        )
    console().print(prepare_table(result))
    console().print(f"[green]train:[/] {result.train_path}")
    if result.val_path:
        console().print(f"[green]val:[/] {result.val_path}")
    if result.rejected_total:
        console().print(f"[yellow]rejected:[/] {result.rejected_path}")
    if result.written == 0:
        from satori_cli.errors import SatoriError

        raise SatoriError(
            f"no valid rows in {src}: every row was rejected",
            hint=f"see {result.rejected_path}, or map columns with --column FIELD=COLUMN",
        )


@data_app.command("inspect")
def inspect(
    target: Path = typer.Argument(..., help="A prepared folder (train.jsonl, val.jsonl) or one JSONL file."),
    samples: int = typer.Option(8, "--samples", "-n", min=0, help="Samples on the contact sheet (0: none)."),
    sheet: Path = typer.Option(
        None, "--sheet", help="Where to write the contact sheet PNG (default: TARGET/contact_sheet.png)."
    ),
    seed: int = typer.Option(0, help="Seed for picking the samples."),
) -> None:
    """Print statistics of a prepared set and draw samples with their question, answer and boxes."""
    from satori_cli.data.inspect import contact_sheet, inspect_dataset
    from satori_cli.data.report import inspect_table
    from satori_cli.ui import console

    with console().status(f"reading {target} ..."):
        stats, rows = inspect_dataset(target, samples=samples, seed=seed)
    console().print(inspect_table(stats))
    if samples:
        default = (target if target.is_dir() else target.parent) / "contact_sheet.png"
        out = sheet or default
        with console().status("drawing the contact sheet ..."):
            contact_sheet(rows, out)
        console().print(
            f"[green]contact sheet ({len(rows)} samples, ground-truth boxes in magenta):[/] {out}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
