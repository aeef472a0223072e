"""A run folder holds one run: never two runs mixed, never a user's folder wiped.

`satori train -o RUN` on a folder that already holds a run is refused: swift would replace its
checkpoints and append to its logs, and `satori report` would then mix two runs. `--resume`
continues it; `--overwrite` replaces it, removing only what a run writes (the names in
`RUN_ENTRIES`) and only from a folder satori made (it has `run.json`). A non-empty folder that
is not a run is never written into.

A resumed run that already reached its step or epoch limit is complete: nothing is launched
(`RunComplete`) unless the limit is raised. A checkpoint is checked before anything starts
(`satori_cli.models.checkpoint_problem`): a truncated file fails in a second, not minutes into swift.

`run.json` records what the folder was made with, so a result can be traced and repeated: the
resolved recipe, the exact command and environment, the versions of satori, ms-swift, torch and
transformers (read from package metadata, nothing heavy is imported), satori's git commit when
run from a checkout, and a fingerprint of the training data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from satori_cli import __version__, outputs
from satori_cli.errors import SatoriError, one_line
from satori_cli.models import RUN_JSON, is_run_folder, run_for
from satori_cli.process import Command
from satori_cli.train import runlogs

# What `satori train` and the swift run it launches write at the top of a run folder: satori's
# record, logs and data, `satori report`'s default folder, and swift's outputs (its arguments and
# model card, metrics, completions, plots, TensorBoard events, checkpoints and their link, and
# the `vN-...` folders of swift's default layout); trackers' local folders.
RUN_ENTRIES = re.compile(
    r"^(?:run\.json|train(?:-node\d+)?\.log|rollout\.log|data|report"
    r"|args\.json|README\.md|logging\.jsonl|completions\.jsonl|val_dataset\.jsonl|images|runs"
    r"|checkpoint-\d+|last-checkpoint|v\d+-\d{8}-\d{6}|wandb|swanlog)$"
)


class RunComplete(Exception):
    """A resumed run has nothing left to do: said in one line, exit 0."""


@dataclass
class Claim:
    """What the run folder check decided: `replace` are an earlier run's entries that
    `--overwrite` removes once the preflight has passed (`data` goes at once: it is remade)."""

    run_dir: Path
    replace: list[Path]
    kept: list[str]
    empty: bool = False  # the folder was there and empty: a failed start empties it again


def describe(run_dir: Path) -> str:
    """`status ok, last checkpoint checkpoint-2`: what an earlier run left, in a few words."""
    status = read_run_json(run_dir).get("status") or "unknown"
    latest = runlogs.latest_checkpoint(run_dir)
    return f"status {status}, " + (f"last checkpoint {latest.name}" if latest else "no checkpoint")


def claim_new(run_dir: Path, overwrite: bool) -> Claim:
    """Check that a new run may use `run_dir` (writes nothing); one line if it may not."""
    if not outputs.check_folder(run_dir, "--out"):
        return Claim(run_dir, [], [], empty=run_dir.is_dir())
    if not is_run_folder(run_dir):
        raise SatoriError(
            f"--out {run_dir} is not empty and is not a satori run folder (no {RUN_JSON}): "
            "satori neither writes into it nor wipes it",
            hint="choose a new or empty folder",
        )
    if not overwrite:
        resume = "--resume to continue it, " if runlogs.latest_checkpoint(run_dir) else ""
        raise SatoriError(
            f"--out {run_dir} already holds a run ({describe(run_dir)})",
            hint=f"{resume}--overwrite to replace it, or choose another --out",
        )
    entries = sorted(run_dir.iterdir())
    ours = [p for p in entries if RUN_ENTRIES.match(p.name)]
    kept = [p.name for p in entries if not RUN_ENTRIES.match(p.name)]
    return Claim(run_dir, ours, kept)


def abandon(made: Path | None, claim: Claim | None) -> None:
    """A start that failed before training leaves no run behind: the folder it made goes, or,
    in a folder that was empty, what it wrote there."""
    if made is not None:
        outputs.remove_made(made)
    elif claim is not None and claim.empty:
        remove([p for p in claim.run_dir.iterdir() if RUN_ENTRIES.match(p.name)])


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def clear_data(claim: Claim) -> None:
    """--overwrite: the earlier run's data goes before this run prepares its own (so no stale
    file mixes in); its checkpoints and logs stay until the preflight has passed."""
    data = [p for p in claim.replace if p.name == "data"]
    remove(data)
    claim.replace = [p for p in claim.replace if p.name != "data"]


def replace_earlier_run(claim: Claim | None) -> str | None:
    """--overwrite, after the preflight: remove the earlier run's entries; a note for the user."""
    if claim is None or not claim.replace:
        return None
    remove(claim.replace)
    note = f"replaced the earlier run in {claim.run_dir}"
    if claim.kept:
        shown = ", ".join(claim.kept[:5]) + (" ..." if len(claim.kept) > 5 else "")
        note += f" (kept what satori did not write: {shown})"
    return note


# -- resuming ------------------------------------------------------------------------------------
def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def trainer_state(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / "trainer_state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SatoriError(
            f"cannot resume from {checkpoint}: {path.name} cannot be read ({one_line(exc, 120)})",
            hint="resume from an earlier one (--resume-from RUN/checkpoint-N), or start over (--overwrite)",
        ) from exc
    if not isinstance(state, dict):
        raise SatoriError(f"cannot resume from {checkpoint}: {path.name} holds no trainer state")
    return state


def check_resumable(checkpoint: Path, swift: Mapping[str, Any]) -> None:
    """Raise `RunComplete` when resuming would train past the run's end: it stopped at its limit
    (or has trained `max_steps` already) and the limit asked for now (`max_steps`, else
    `num_train_epochs`) is no higher."""
    state = trainer_state(checkpoint)
    done = int(state.get("global_step") or 0)
    limit = int(state.get("max_steps") or 0)
    control = (state.get("stateful_callbacks") or {}).get("TrainerControl") or {}
    stopped = bool((control.get("args") or {}).get("should_training_stop"))
    finished = stopped or 0 < limit <= done
    steps = _positive(swift.get("max_steps"))
    if steps is not None:
        if steps > done:
            return
        asked, hint = f"max_steps {steps:g}", f"-- --max_steps N with N > {done}"
    else:
        trained = _positive(state.get("num_train_epochs")) or 0.0
        epochs = _positive(swift.get("num_train_epochs"))
        if not finished or (epochs is not None and epochs > trained):
            return
        asked = f"num_train_epochs {epochs:g}" if epochs else "the recipe"
        hint = f"-- --num_train_epochs N with N > {trained:g}"
    raise RunComplete(
        f"the run in {runlogs.run_dir_of(checkpoint)} is complete ({done} steps, {checkpoint.name}; "
        f"{asked}): nothing trained; to train on, raise the limit: {hint}"
    )


# -- the newest run ------------------------------------------------------------------------------
def newest_run(what: str, has: str | None = None) -> Path:
    """The most recently started run under $SATORI_HOME/runs (the default of `satori report` and
    `satori rewards score`); `has`: a file it must hold (e.g. completions.jsonl). One line if none."""
    from satori_cli.config import paths

    root = paths().runs
    found = []
    if root.is_dir():
        for folder in root.iterdir():
            record = folder / RUN_JSON
            if record.is_file() and (
                has is None or any((d / has).is_file() for d in runlogs.swift_dirs(folder))
            ):
                found.append((record.stat().st_mtime, folder))
    if not found:
        raise SatoriError(
            f"no run folder under {root} to {what}",
            hint="pass a run folder (e.g. the --out of `satori train`)",
        )
    return max(found)[1]


# -- run.json --------------------------------------------------------------------------------------
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


def command_record(rank: int, cmd: Command) -> dict[str, Any]:
    return {"node_rank": rank, "argv": cmd.argv, "env": cmd.env, "display": cmd.display()}


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
