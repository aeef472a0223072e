"""One name per concept on every command; the names it replaced still work for one release.

The vocabulary: `--out/-o` (what a command writes), `--gpus/-g`, `--rows/-n`, `--max-new-tokens`,
`-c` = `--config`. An old name is rewritten to its new one before the command parses its
arguments (`help_style.ReadableCommand.parse_args`), so it never shows in `--help`, and using it
prints one note on stderr. Arguments after a bare `--` belong to another program (swift) and are
never touched; neither is the value of an option (`--data --output` keeps its value).

Remove an entry here, and its note, in the release after the one that renamed it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

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
