"""Errors a user can cause, reported as one line and a non-zero exit instead of a traceback."""

from __future__ import annotations

import re

# The distribution's name on PyPI (the import package is satori_cli, the command `satori`);
# "satori-cli" there is an unrelated project.
DIST = "satori-r1"


# Terminal escape sequences: CSI (`ESC [` or the C1 byte 0x9b, then parameters and a letter), OSC
# (`ESC ]` up to BEL or `ESC \\`) and the two-character `ESC x`.
_ESCAPES = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b(?:\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def one_line(text: object, limit: int | None = 300) -> str:
    """An exception or a value from a file or a server as one printable line, cut to `limit`.

    Messages must stay one line, and such text must never reach a terminal as an escape
    sequence: whole escape sequences are dropped, and every other character that is not
    printable (C1 codes, NUL, CR, newlines, bidi controls) becomes a space.
    """
    raw = str(text) if limit is None else str(text)[: 4 * limit]
    flat = " ".join("".join(c if c.isprintable() else " " for c in _ESCAPES.sub("", raw)).split())
    return flat if limit is None or len(flat) <= limit else flat[: limit - 3] + "..."


def install_hint(extra: str) -> str:
    """The pip command that adds an extra to this installation.

    pip completes the extras of the installed satori-r1 (a wheel or an editable clone) from its
    own metadata, so this works whether or not satori-r1 is on the package index.
    """
    command = f"pip install '{DIST}[{extra}]'"
    if extra == "gpu":  # vLLM needs pillow>=13, gradio 6 pillow<13: see README "GPU machine"
        command += " in a CUDA environment without the serve extra"
    return command


class SatoriError(Exception):
    """An error with a message meant for the user.

    `exit_code` follows a simple convention: 2 for bad input or a failed preflight
    check (the user can fix it), 1 for a tool that ran and failed.
    """

    def __init__(self, message: str, exit_code: int = 2, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class Interrupted(SatoriError):
    """Ctrl-C (or SIGTERM/SIGHUP, see `satori_cli.app`): `interrupted` on stderr, exit 130.

    Raised by a command that stopped its tools and has something to add (where the log is);
    a bare KeyboardInterrupt becomes one of these in `satori_cli.app`.
    """

    def __init__(self, detail: str = "", hint: str | None = None) -> None:
        super().__init__(f"interrupted: {detail}" if detail else "interrupted", exit_code=130, hint=hint)


class MissingDependency(SatoriError):
    """An optional package is not installed; the message says which extra brings it."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed",
            exit_code=2,
            hint=f"install it with: {install_hint(extra)}",
        )


def require(module: str, extra: str, purpose: str):
    """Import an optional module or raise a one-line MissingDependency."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Only a missing top-level package is the user's to fix; a broken import
        # inside an installed package is a real bug and must keep its traceback.
        missing = getattr(exc, "name", None) or ""
        if missing and missing.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingDependency(module.split(".")[0], extra, purpose) from exc
