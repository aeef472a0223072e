"""The SATORI prompts, word for word as the released SATORI-3B was trained and evaluated.

The text lives in `prompts/` (data, not Python constants) so that it can be read and diffed;
`load_prompt` is the only reader. A user can replace them everywhere at once (training, evaluation,
serving, and the child processes these start) by setting
`SATORI_PROMPTS_DIR` to a folder holding their own `system.txt` and/or `eval_suffix.txt`.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from satori_cli.errors import SatoriError

PROMPT_NAMES = ("system", "eval_suffix")


def prompts_dir() -> Path:
    """Where the bundled prompt files are: inside the wheel, or `prompts/` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_prompts", here.parent / "prompts"):
        if (candidate / "system.txt").is_file():
            return candidate
    raise SatoriError("the bundled prompts are missing from this installation", exit_code=1)


def prompt_path(name: str = "system") -> Path:
    """The file a prompt is read from: `$SATORI_PROMPTS_DIR/<name>.txt` if set and present, else bundled."""
    if name not in PROMPT_NAMES:
        raise SatoriError(f"unknown prompt {name!r}; choose one of {', '.join(PROMPT_NAMES)}")
    override = os.environ.get("SATORI_PROMPTS_DIR")
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise SatoriError(f"SATORI_PROMPTS_DIR is not a folder: {folder}")
        own = folder / f"{name}.txt"
        if own.is_file():
            return own.resolve()
    return prompts_dir() / f"{name}.txt"


@cache
def _read(path: Path, strip: bool) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SatoriError(f"cannot read prompt file {path}: {exc.strerror or exc}") from exc
    return text.strip() if strip else text


def load_prompt(name: str = "system", path: str | Path | None = None) -> str:
    """The prompt text. `system` is stripped; `eval_suffix` is verbatim (it starts with " \\n").

    `path` overrides the bundled file, for users with their own prompt.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise SatoriError(f"prompt file not found: {p}")
    else:
        p = prompt_path(name)
    return _read(p.resolve(), strip=(name == "system"))
