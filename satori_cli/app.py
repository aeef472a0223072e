"""The `satori` Typer app: the command tree, how each command reads its options and shows its
help, and how a run ends (one line and a non-zero exit for a user error; `interrupted` and 130 for
Ctrl-C, SIGTERM and SIGHUP).

Commands are thin; heavy libraries are imported inside them. `satori --help` must stay instant,
so nothing imported here (or by the command modules at import time) may pull in torch, swift,
vlmeval, gradio or vllm. A test enforces it.

**Readable help**: `--out PATH`, `--port N`, `--model NAME`, `RUN_DIR`. Typer 0.29 shows each
option's Python type (`<str>`, `<int>`, `<path>`, and `<bool>` even for a flag that takes no
value), wraps a required argument in braces (`{run_dir}`) and a variadic one twice
(`[[NAMES]...]...`). Here every parameter of the command tree gets a metavar once, when the root
group is built, so each command keeps its plain `typer.Option(...)` declarations and no command
can forget: a flag shows none, a path `PATH` (`DIR` for a `--...-dir`), a whole number `N` (`PORT`
for a port), a number `NUMBER` (`SECONDS` for a timeout), text `NAME` (`URL`, `KEY`, `HOST` where
the option's name says so). A metavar a command declares itself wins. Typer 0.29 also keeps a
docstring's own line breaks, so at 80 columns the help text came out ragged; paragraphs are
reflowed here, and indented lines (examples) are kept as written.

**One name per concept** on every command; the names it replaced still work for one release. The
vocabulary: `--out/-o` (what a command writes), `--gpus/-g`, `--rows/-n`, `--max-new-tokens`,
`-c` = `--config`. An old name (`ALIASES`) is rewritten to its new one before the command parses
its arguments (`ReadableCommand.parse_args`), so it never shows in `--help`, and using it prints
one note on stderr. Arguments after a bare `--` belong to another program (swift) and are never
touched; neither is the value of an option (`--data --output` keeps its value). Remove an entry,
and its note, in the release after the one that renamed it.
"""

from __future__ import annotations

import errno
import inspect
import itertools
import re
import signal
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from satori_cli import __version__
from satori_cli.errors import Interrupted, SatoriError, one_line

# -- old option names ------------------------------------------------------------------------------
# {command path: {old name: new name}}
ALIASES: dict[str, dict[str, str]] = {
    "train": {"--output": "--out"},
    "eval": {"--work-dir": "--out", "--procs": "--gpus", "-n": "--gpus"},
    "download model": {"--local-dir": "--out"},
    "download data": {"--local-dir": "--out"},
    "data sample": {"--n": "--rows"},
    "data inspect": {"--samples": "--rows", "--sheet": "--out"},
    "data prepare": {"-c": "--column"},
    "predict": {"--max-tokens": "--max-new-tokens", "--save": "--out"},
}


def note(old: str, new: str) -> str:
    """The one line an old name prints.

    >>> note("--output", "--out")
    'note: --output is now --out (the old name will be removed in the next release)'
    """
    return f"note: {old} is now {new} (the old name will be removed in the next release)"


def rewrite(
    args: Iterable[str], aliases: Mapping[str, str], takes_value: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """`args` with each old option name replaced by its new one, and the notes to print (one per
    old name used).

    `takes_value` names the options (old or new) whose next argument is their value: that value
    is never rewritten. A short old name with its value attached (`-n4`) and `--old=value` are
    rewritten too. Nothing after a bare `--` is touched.

    >>> rewrite(["--output", "r", "--", "--output"], {"--output": "--out"}, {"--out"})[0]
    ['--out', 'r', '--', '--output']
    >>> rewrite(["-n4", "--procs=2"], {"-n": "--gpus", "--procs": "--gpus"}, {"--gpus"})[0]
    ['--gpus=4', '--gpus=2']
    >>> rewrite(["--data", "--output"], {"--output": "--out"}, {"--data"})[0]
    ['--data', '--output']
    """
    valued = set(takes_value) | {aliases.get(name, name) for name in takes_value}
    out: list[str] = []
    notes: list[str] = []
    items = iter(args)
    for token in items:
        if token == "--":
            out += [token, *items]
            break
        name, value = _split(token, aliases, valued)
        if name in aliases:
            new = aliases[name]
            if note(name, new) not in notes:
                notes.append(note(name, new))
            name, token = new, new if value is None else f"{new}={value}"
        out.append(token)
        if value is None and name in valued:
            out += itertools.islice(items, 1)  # the option's value, as given
    return out, notes


def _split(token: str, aliases: Mapping[str, str], valued: set[str]) -> tuple[str, str | None]:
    """(option name, attached value or None) of one argument: `--x=v`, `-nV` (a short option
    that takes a value), or the token itself."""
    if token.startswith("--") and "=" in token:
        name, value = token.split("=", 1)
        return name, value
    if token.startswith("-") and not token.startswith("--") and len(token) > 2:
        short = token[:2]
        if short in valued or aliases.get(short) in valued:
            return short, token[2:]
    return token, None


# -- readable help ---------------------------------------------------------------------------------
_TEXT = {"URL": "URL", "KEY": "KEY", "HOST": "HOST", "ADDR": "HOST", "BIN": "PATH"}


def _last_word(param: Any) -> str:
    names = [o for o in param.opts if o.startswith("--")] or [param.name or ""]
    return re.split(r"[-_]", names[0].lstrip("-"))[-1].upper()


def option_metavar(param: TyperOption) -> str:
    """The metavar of an option that declares none ("" for a flag: it takes no value)."""
    if param.is_flag or param.count:
        return ""
    kind = param.bare_type().removeprefix("list[").removesuffix("]")
    last = _last_word(param)
    if kind.endswith("Path"):
        return "DIR" if last == "DIR" else "PATH"
    if kind == "int":
        return "PORT" if last == "PORT" else "N"
    if kind == "float":
        return "SECONDS" if last in ("TIMEOUT", "WAIT") else "NUMBER"
    return _TEXT.get(last, "NAME")


def argument_metavar(param: TyperArgument) -> str:
    """`RUN_DIR`, `NAMES...`; a declared metavar such as `[-- SWIFT_ARGS...]` is kept."""
    if param.metavar and (" " in param.metavar or "--" in param.metavar):
        return param.metavar  # a shape of its own, e.g. `[-- SWIFT_ARGS...]`
    base = re.sub(r"[\[\].]", "", param.metavar or param.name or "ARG").upper()
    return base + ("..." if param.nargs != 1 else "")


def _usage(param: TyperArgument) -> list[str]:
    name = param.metavar or ""
    if param.required or name.startswith("["):
        return [name]
    return [f"[{name.removesuffix('...')}]" + ("..." if name.endswith("...") else "")]


def readable(param: Any) -> None:
    """Give `param` a metavar people read (once; idempotent)."""
    if getattr(param, "_satori_readable", False):
        return
    if isinstance(param, TyperOption):
        if param.metavar is None:
            param.metavar = option_metavar(param)
    elif isinstance(param, TyperArgument):
        param.metavar = argument_metavar(param)
        # Typer prints an argument's Python type beside its name and builds its usage from the
        # name in braces; neither can be switched off, so this instance answers for itself.
        param.display_type_rich = lambda ctx: None
        param.get_usage_pieces = lambda ctx, p=param: _usage(p)
    param._satori_readable = True


class ReadableCommand(TyperCommand):
    """A command whose help shows readable metavars (its `--help` flag included), and which
    takes the option names `ALIASES` replaced, with a note, for one release."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            readable(param)
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        aliases = ALIASES.get(command_path(ctx))
        if aliases:
            valued = [
                name
                for param in self.params
                if isinstance(param, TyperOption) and not (param.is_flag or param.count)
                for name in (*param.opts, *param.secondary_opts)
            ]
            args, notes = rewrite(args, aliases, valued)
            for line in notes:
                typer.echo(line, err=True)
        return super().parse_args(ctx, args)


def command_path(ctx: Any) -> str:
    """The command's names below the root, e.g. `data sample` (whatever the program is called)."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def reflow(text: str) -> str:
    r"""Join the lines of each paragraph; a paragraph with an indented line is kept as is.

    >>> reflow("One\nparagraph.\n\n  satori x\n  satori y")
    'One paragraph.\n\n  satori x\n  satori y'
    """
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if any(line.startswith((" ", "\b")) for line in p.splitlines()) else " ".join(p.split("\n"))
        for p in paragraphs
    )


def _adopt(group: TyperGroup) -> None:
    """Re-class the commands Typer built (plain TyperCommand / TyperGroup) as readable ones:
    the subclasses only add methods, so the objects stay as Typer made them."""
    for command in group.commands.values():
        if command.help:
            command.help = reflow(command.help)
        if type(command) is TyperCommand:
            command.__class__ = ReadableCommand
        elif type(command) is TyperGroup:
            command.__class__ = ReadableGroup
            _adopt(command)


# -- the app ---------------------------------------------------------------------------------------
class ReadableGroup(TyperGroup):
    """The root group (and, re-classed, each group below it): makes every command below it a
    readable one, and Ctrl-C inside any command becomes `Interrupted`.

    Typer turns a KeyboardInterrupt into a silent exit 130, so without this `main` would never
    see it and the user would get no word of what happened. Two path errors any `Path` call can
    raise on what a user typed (a name longer than the filesystem allows, `~someone` for no such
    user) are one line here rather than a guard at every one of the commands' path checks.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _adopt(self)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            readable(param)
        return params

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
    cls=ReadableGroup,
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
