"""`satori doctor`: what this machine has for train, eval and serve, and what is missing."""

from __future__ import annotations

from typing import Annotated

import typer


def doctor(
    hub: Annotated[
        bool, typer.Option("--hub/--no-hub", help="Probe the Hugging Face hub (3 s timeout).")
    ] = True,
) -> None:
    """Show what this machine has for train, eval and serve, and what is missing.

    Checks python, torch, GPUs, ms-swift, VLMEvalKit, vLLM, gradio, deepspeed, flash-attn,
    disk space and hub reachability, each with the install hint, without importing any of them.
    """
    from rich.markup import escape
    from rich.table import Table

    from satori_cli.config import satori_home
    from satori_cli.console import console
    from satori_cli.doctor import diagnose

    report = diagnose(satori_home(), check_hub=hub)
    table = Table(title="satori doctor", title_justify="left")
    table.add_column("", width=2)
    table.add_column("component")
    table.add_column("found")
    table.add_column("hint", style="dim")
    for c in report.checks:
        table.add_row("[green]✓[/]" if c.ok else "[yellow]✗[/]", c.name, escape(c.detail), escape(c.hint))
    console().print(table)
    jobs = Table(title="ready for", title_justify="left")
    jobs.add_column("", width=2)
    jobs.add_column("job")
    jobs.add_column("missing")
    for job, missing in report.jobs.items():
        jobs.add_row("[green]✓[/]" if not missing else "[yellow]✗[/]", job, ", ".join(missing) or "-")
    console().print(jobs)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
