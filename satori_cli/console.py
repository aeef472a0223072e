"""Console output shared by all commands: one stdout and one stderr console, one error style.

In a terminal, rich wraps text to the window. Piped or redirected (a log file, SLURM, `| tee`),
a wrapped line would break a path in two, so there text is never wrapped: each message is one
line, however long. Tables are still laid out to the width (COLUMNS, else 80): a cell that does
not fit wraps inside its table instead of being cut off.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from satori_cli.errors import SatoriError


def _make(stderr: bool) -> Console:
    from rich.console import Console
    from rich.text import Text

    class SatoriConsole(Console):
        def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
            if soft_wrap is None and not self.is_terminal:
                # Plain text (what paths and messages are) is never wrapped when piped; a table
                # or other layout keeps rich's rendering (soft wrap would cut its cells short).
                soft_wrap = all(isinstance(o, (str, Text)) for o in objects)
            super().print(*objects, soft_wrap=soft_wrap, **kwargs)

    return SatoriConsole(stderr=stderr, highlight=False)


@cache
def console() -> Console:
    return _make(stderr=False)


@cache
def err_console() -> Console:
    return _make(stderr=True)


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
