"""The `satori` Typer app. Commands are thin; heavy libraries are imported inside them.

`satori --help` must stay instant, so nothing imported here (or by the command modules at
import time) may pull in torch, swift, vlmeval, gradio or vllm. A test enforces it.
"""

from __future__ import annotations

import errno
import signal
import sys

import typer

from satori_cli import __version__
from satori_cli.errors import Interrupted, SatoriError, one_line
from satori_cli.help_style import ReadableGroup


class _Commands(ReadableGroup):
    """The command group; Ctrl-C inside any command becomes `Interrupted`.

    Typer turns a KeyboardInterrupt into a silent exit 130, so without this `main` would never
    see it and the user would get no word of what happened. Two path errors any `Path` call can
    raise on what a user typed (a name longer than the filesystem allows, `~someone` for no such
    user) are one line here rather than a guard at every one of the commands' path checks.
    """

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            raise SatoriError(f"file name too long: {one_line(exc.filename or exc, 80)}") from None
        except RuntimeError as exc:
            if str(exc) != "Could not determine home directory.":  # pathlib's expanduser
                raise
            raise SatoriError("a path starts with ~ but that user (or $HOME) does not exist") from None


app = typer.Typer(
    name="satori",
    cls=_Commands,
    help="SATORI-R1 as one command: download, prepare data, train with GRPO, evaluate, serve.\n\n"
    "Every heavy library is loaded only by the command that needs it. "
    "Run `satori doctor` to see what this machine can do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"satori {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """SATORI-R1 as one command."""


def _register() -> None:
    # Each module adds its commands to `app`, in the order of the workflow; modules import only
    # typer/rich at module level.
    from satori_cli.commands import data, doctor, download, rewards, rollout, serve, tiny, train
    from satori_cli.commands import eval as eval_cmd

    for module in (download, data, rewards, train, rollout, eval_cmd, serve, doctor, tiny):
        module.register(app)


_register()


def interrupt_on_stop_signals() -> None:
    """From now on SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread.

    `kill PID` (SIGTERM) and a closed terminal or SSH session (SIGHUP) end a Python process on the
    spot by default: no `finally` runs, so a server child outlives `satori serve` and a download
    leaves its half-written file behind. Raised as KeyboardInterrupt instead, they take the Ctrl-C
    path: children are stopped, libraries clean up, and satori exits 130.
    """

    def handler(signum, frame):
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):  # no SIGHUP on Windows
            signal.signal(getattr(signal, name), handler)


def print_error(exc: SatoriError) -> None:
    """`error: message (hint)` on one line of stderr (`interrupted ...` for Ctrl-C)."""
    from rich.markup import escape

    from satori_cli.console import err_console

    # Messages carry file names, file contents and server replies: one line, no escapes, whole.
    message = escape(one_line(exc.message, None))
    text = message if isinstance(exc, Interrupted) else f"[bold red]error:[/] {message}"
    if exc.hint:
        text += f" [dim]({escape(one_line(exc.hint, None))})[/]"
    err_console().print(text, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors end in one line on stderr and a non-zero exit; Ctrl-C,
    SIGTERM and SIGHUP end every command the same way (`interrupted`, exit 130)."""
    interrupt_on_stop_signals()
    try:
        app(args=argv, prog_name="satori", standalone_mode=True)
    except SatoriError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
