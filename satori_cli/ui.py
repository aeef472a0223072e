"""Console output shared by all commands: one stderr console, one error style."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from satori_cli.errors import SatoriError


@cache
def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_error(exc: SatoriError) -> None:
    """`error: message (hint)` on one line of stderr."""
    from rich.markup import escape

    text = f"[bold red]error:[/] {escape(exc.message)}"
    if exc.hint:
        text += f" [dim]({escape(exc.hint)})[/]"
    err_console().print(text, soft_wrap=True)
