"""`run.json`: what a run folder was made with, so a result can be traced and repeated.

It records the resolved recipe, the exact command and environment, the versions of satori,
ms-swift, torch and transformers (read from package metadata, nothing heavy is imported),
satori's git commit when run from a checkout, and a fingerprint of the training data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from satori_cli import __version__
from satori_cli.models import RUN_JSON, run_for
from satori_cli.process import Command

PACKAGES = ("ms-swift", "torch", "transformers", "trl", "deepspeed", "vllm")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"satori": __version__}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> str | None:
    """satori's commit when it runs from a git checkout (None from a wheel)."""
    here = Path(__file__).resolve().parents[2]
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def fingerprint(path: Path | None, chunk: int = 1 << 20) -> dict[str, Any] | None:
    """sha256 and count of non-blank lines of a data file: same fingerprint, same data.

    Read in fixed chunks, not lines: a raw source may be a parquet file or an archive, whose
    "lines" can be hundreds of megabytes long.
    """
    if path is None:
        return None
    digest, rows, open_line = hashlib.sha256(), 0, False
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            *ended, rest = block.split(b"\n")
            for part in ended:
                rows += open_line or bool(part.strip())
                open_line = False
            open_line = open_line or bool(rest.strip())
    return {"path": str(path), "sha256": digest.hexdigest(), "rows": rows + open_line}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def write_run_json(run_dir: Path, info: dict[str, Any]) -> Path:
    """Write `run.json`; an earlier invocation's record (a resume) moves into `history`."""
    path = Path(run_dir) / RUN_JSON
    history: list[dict[str, Any]] = []
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            previous = {}
        if previous.get("started") != info.get("started"):
            history = [*previous.pop("history", []), previous]
        else:
            history = previous.get("history", [])
    path.write_text(json.dumps({**info, "history": history}, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def command_record(commands: list[tuple[int, Command]]) -> list[dict[str, Any]]:
    return [
        {"node_rank": rank, "argv": cmd.argv, "env": cmd.env, "display": cmd.display()}
        for rank, cmd in commands
    ]


def read_run_json(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def recorded_grammar(model: str | Path | None) -> str | None:
    """The output grammar recorded by the `satori train` run that made `model`, else None.

    `model` is a run folder or a checkpoint inside one (`satori_cli.models.run_for`, the one
    reader of run folders); anything else (a hub id, a served name) has none.
    """
    run = run_for(model)
    return run.grammar if run is not None else None


def model_grammar(chosen: str | None, model: str | Path | None = None):
    """The grammar to talk to `model` in: `chosen` (--grammar) if given, else the one its run
    recorded, else the default (`satori`). An unknown name is a user error."""
    from satori_cli.grammar import get_grammar

    return get_grammar(chosen or recorded_grammar(model))
