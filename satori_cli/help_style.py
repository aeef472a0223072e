"""`--help` in words people read: `--out PATH`, `--port N`, `--model NAME`, `RUN_DIR`.

Typer 0.29 shows each option's Python type (`<str>`, `<int>`, `<path>`, and `<bool>` even for a
flag that takes no value), wraps a required argument in braces (`{run_dir}`) and a variadic one
twice (`[[NAMES]...]...`). Here every parameter of the command tree gets a metavar once, when the
root group is built, so each command keeps its plain `typer.Option(...)` declarations and no
command can forget: a flag shows none, a path `PATH` (`DIR` for a `--...-dir`), a whole number
`N` (`PORT` for a port), a number `NUMBER` (`SECONDS` for a timeout), text `NAME` (`URL`, `KEY`,
`HOST` where the option's name says so). A metavar a command declares itself wins.

Typer 0.29 also keeps a docstring's own line breaks, so at 80 columns the help text came out
ragged; paragraphs are reflowed here, and indented lines (examples) are kept as written.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

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
    takes the option names `satori_cli.vocabulary` replaced, with a note, for one release."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            readable(param)
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        from satori_cli import vocabulary

        aliases = vocabulary.ALIASES.get(command_path(ctx))
        if aliases:
            valued = [
                name
                for param in self.params
                if isinstance(param, TyperOption) and not (param.is_flag or param.count)
                for name in (*param.opts, *param.secondary_opts)
            ]
            args, notes = vocabulary.rewrite(args, aliases, valued)
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


class ReadableGroup(TyperGroup):
    """The root group: makes every command and group below it a readable one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _adopt(self)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            readable(param)
        return params


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
    the subclasses only add `get_params`, so the objects stay as Typer made them."""
    for command in group.commands.values():
        if command.help:
            command.help = reflow(command.help)
        if type(command) is TyperCommand:
            command.__class__ = ReadableCommand
        elif type(command) is TyperGroup:
            command.__class__ = ReadableGroup
            _adopt(command)
