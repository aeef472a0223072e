"""Console output shared by all commands: one stdout and one stderr console.

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
