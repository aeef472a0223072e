"""Console output shared by all commands: one stdout and one stderr console, one error style.

In a terminal, rich wraps text to the window. Piped or redirected (a log file, SLURM, `| tee`),
a wrapped line would break a path in two, so there text is never wrapped: each message is one
line, however long. Tables are still laid out to the width (COLUMNS, else 80): a cell that does
not fit wraps inside its table instead of being cut off.
"""

from __future__ import annotations

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


def print_error(exc: SatoriError) -> None:
    """`error: message (hint)` on one line of stderr (`interrupted ...` for Ctrl-C)."""
    from rich.markup import escape

    from satori_cli.errors import Interrupted, one_line

    # Messages carry file names, file contents and server replies: one line, no escapes, whole.
    message = escape(one_line(exc.message, None))
    text = message if isinstance(exc, Interrupted) else f"[bold red]error:[/] {message}"
    if exc.hint:
        text += f" [dim]({escape(one_line(exc.hint, None))})[/]"
    err_console().print(text, soft_wrap=True)
