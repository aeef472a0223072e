"""Console output shared by all commands: one stderr console, one error style."""

from __future__ import annotations

import re
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


# Terminal escape sequences (CSI `ESC [ ... letter`, OSC `ESC ] ... BEL/ST`, two-byte `ESC x`).
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def printable(text: str) -> str:
    """`text` as one plain line: escape sequences removed, control characters (newlines too)
    turned into spaces. Error messages carry file names, file contents and server replies; none
    of them may recolour, retitle or clear the user's terminal, or break the one-line rule."""
    text = _ESCAPES.sub("", str(text))
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def print_error(exc: SatoriError) -> None:
    """`error: message (hint)` on one line of stderr (`interrupted ...` for Ctrl-C)."""
    from rich.markup import escape

    from satori_cli.errors import Interrupted

    message = escape(printable(exc.message))
    text = message if isinstance(exc, Interrupted) else f"[bold red]error:[/] {message}"
    if exc.hint:
        text += f" [dim]({escape(printable(exc.hint))})[/]"
    err_console().print(text, soft_wrap=True)
