"""The prompts of each output grammar: for `satori`, word for word as the released SATORI-3B
was trained and evaluated.

The text lives in `prompts/` (data, not Python constants) so that it can be read and diffed;
`load_prompt` is the only reader. The default grammar's files are `prompts/system.txt` and
`prompts/eval_suffix.txt`; another grammar's sit in its own folder, `prompts/<grammar>/` (see
`satori_cli.grammar.GRAMMARS`; `prompts/README.md` says where each wording comes from). A user
can replace them everywhere at once (training, evaluation, serving, and the child processes
these start) by setting `SATORI_PROMPTS_DIR` to a folder laid out the same way: its own
`system.txt` and/or `eval_suffix.txt`, and `<grammar>/system.txt` etc. for other grammars.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from satori_cli.errors import SatoriError
from satori_cli.grammar import Grammar, get_grammar

PROMPT_NAMES = ("system", "eval_suffix")


def prompts_dir() -> Path:
    """Where the bundled prompt files are: inside the wheel, or `prompts/` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_prompts", here.parent / "prompts"):
        if (candidate / "system.txt").is_file():
            return candidate
    raise SatoriError("the bundled prompts are missing from this installation", exit_code=1)


def prompt_path(name: str = "system", grammar: str | Grammar | None = None) -> Path:
    """The file a prompt is read from: `$SATORI_PROMPTS_DIR/[<grammar>/]<name>.txt` if set and
    present, else the bundled one (the grammar's folder is empty for the default grammar)."""
    if name not in PROMPT_NAMES:
        raise SatoriError(f"unknown prompt {name!r}; choose one of {', '.join(PROMPT_NAMES)}")
    relative = Path(get_grammar(grammar).prompts) / f"{name}.txt"
    override = os.environ.get("SATORI_PROMPTS_DIR")
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise SatoriError(f"SATORI_PROMPTS_DIR is not a folder: {folder}")
        own = folder / relative
        if own.is_file():
            return own.resolve()
    return prompts_dir() / relative


@cache
def _read(path: Path, strip: bool) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SatoriError(f"cannot read prompt file {path}: {exc.strerror or exc}") from exc
    return text.strip() if strip else text


def load_prompt(name: str = "system", grammar: str | Grammar | None = None) -> str:
    """The prompt text of a grammar (default `satori`). `system` is stripped; `eval_suffix` is
    verbatim (it starts with " \\n")."""
    return _read(prompt_path(name, grammar).resolve(), strip=(name == "system"))
