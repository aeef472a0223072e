"""Where satori writes: never over a file it did not create, never into a special file.

Each folder a data command writes into keeps `.satori-outputs.json`: the name, size and mtime
of every file satori wrote there. A later run replaces those freely (they are its own, e.g.
`make demo` twice); any other existing file is the user's and is replaced only with
`--overwrite`. A target that is a symlink or not a regular file (a folder, a FIFO, a device)
is refused even then. Files are written to a hidden scratch name and renamed into place, so
nothing is ever written *through* an existing path, and a killed run leaves no half file.

Scratch names carry the writer's pid and host (`.NAME.partial-PID@HOST`, `.unpack-PID@HOST`);
`clean_stale` removes those whose process is gone, on the next run in the same folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from satori_cli.errors import SatoriError, one_line

MANIFEST = ".satori-outputs.json"
_HOST = re.sub(r"[^A-Za-z0-9.-]", "", socket.gethostname())[:64] or "host"
# Our scratch names: `.NAME.partial-PID@HOST` and `.unpack-PID@HOST`, and the names earlier
# versions used without the host (prepare's outputs, `.HASH.EXT.PID.partial` images). Nothing
# else is ever removed.
_SCRATCH = re.compile(r"^\.(?:unpack|.+\.partial)-(?P<pid>\d+)@(?P<host>[A-Za-z0-9.-]+)$")
_OLD_SCRATCH = re.compile(
    r"^\.(?:unpack|(?:rows|train\.jsonl|val\.jsonl|rejected\.jsonl|prepare_summary\.json)\.partial)-(?P<pid>\d+)$"
    r"|^\.[0-9a-f]{32}\.\w+\.(?P<image_pid>\d+)\.partial$"
)


def tag() -> str:
    """`PID@HOST`: what makes this process's scratch names its own."""
    return f"{os.getpid()}@{_HOST}"


def scratch_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{tag()}")


def missing_root(path: Path) -> Path | None:
    """The topmost folder of `path` that does not exist yet (what creating it would make), or None."""
    path = Path(path).expanduser().absolute()
    root = None
    for folder in [path, *path.parents]:
        if os.path.lexists(folder):
            break
        root = folder
    return root


def remove_made(root: Path | None) -> None:
    """Remove a folder this command made (`missing_root` before making it), with all it holds."""
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def check_folder(path: Path, what: str = "--out") -> bool:
    """An output folder must be a folder (or not exist yet), never a file or a special file;
    each missing parent must be creatable under a folder. True when it exists and holds anything."""
    path = Path(path).expanduser()
    for parent in [path, *path.parents]:
        try:
            st = parent.stat()
        except (FileNotFoundError, NotADirectoryError):  # missing, or under a file (found further up)
            continue
        except OSError:  # a name too long, a loop: making the folder says it in one line
            return False
        if not stat.S_ISDIR(st.st_mode):
            detail = "is a file" if stat.S_ISREG(st.st_mode) else "is not a folder"
            where = f"{path}" if parent == path else f"{path}: {parent}"
            raise SatoriError(f"{what} {where} {detail}", hint="give a folder path")
        break
    try:
        return path.is_dir() and any(os.scandir(path))
    except OSError as exc:
        raise SatoriError(f"{what} {path} cannot be read ({one_line(exc.strerror or exc)})") from exc


def ensure_dir(path: Path, what: str = "--out") -> Path:
    """Create `path` (and parents) and prove it is writable, or fail in one line before any work
    (leaving behind none of the folders it made)."""
    path = Path(path).expanduser()
    check_folder(path, what)
    made = missing_root(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".satori-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        remove_made(made)
        raise SatoriError(
            f"{what} {path} is not writable ({one_line(exc.strerror or exc)})",
            hint="choose a folder you can write to",
        ) from exc
    return path


def _manifest(folder: Path) -> dict[str, list[int]]:
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def ours(path: Path) -> bool:
    """True when satori wrote `path` and nobody changed it since (same size and mtime)."""
    entry = _manifest(path.parent).get(path.name)
    try:
        st = path.lstat()
    except OSError:
        return False
    return isinstance(entry, list) and stat.S_ISREG(st.st_mode) and entry == [st.st_size, st.st_mtime_ns]


def check_target(path: Path, overwrite: bool, what: str = "--out") -> None:
    """Refuse a target that exists and is not ours (unless `overwrite`), or is not a plain file."""
    path = Path(path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SatoriError(f"{what} {path}: {one_line(exc.strerror or exc)}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise SatoriError(f"{what} {path} is a symbolic link; satori does not write through links")
    if stat.S_ISDIR(st.st_mode):
        raise SatoriError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise SatoriError(f"{what} {path} is not a regular file (a device, FIFO or socket)")
    if not overwrite and not ours(path):
        raise SatoriError(
            f"{what} {path} already exists and satori did not write it",
            hint="pass --overwrite to replace it, or choose another path",
        )


def check_targets(paths: Iterable[Path], overwrite: bool, what: str = "--out") -> None:
    for path in paths:
        check_target(path, overwrite, what)


def record(paths: Iterable[Path]) -> None:
    """Remember `paths` as written by satori (in their folders' manifests)."""
    by_folder: dict[Path, list[Path]] = {}
    for path in paths:
        by_folder.setdefault(Path(path).parent, []).append(Path(path))
    for folder, files in by_folder.items():
        _update_manifest(folder, files)


def forget(path: Path) -> None:
    """Delete `path` (the caller checked it is ours) and its manifest entry."""
    path.unlink(missing_ok=True)
    _update_manifest(path.parent, [])


def _update_manifest(folder: Path, written: list[Path]) -> None:
    entries = _manifest(folder)
    for path in written:
        with contextlib.suppress(OSError):
            st = path.stat()
            entries[path.name] = [st.st_size, st.st_mtime_ns]
    entries = {name: e for name, e in entries.items() if (folder / name).is_file()}
    target = folder / MANIFEST
    tmp = scratch_name(target)
    tmp.write_text(json.dumps({"files": entries}, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def replace(partial: Path, target: Path, remember: bool = True) -> None:
    """Move a finished scratch file into place and (unless the caller batches it) remember it as ours."""
    os.replace(partial, target)
    if remember:
        record([target])


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w", remember: bool = True, newline: str | None = None) -> Iterator:
    """Write `path` through a scratch file renamed into place on success (removed on failure).
    With `remember=False` the caller calls `record` once for many files."""
    partial = scratch_name(path)
    try:
        text = "b" not in mode
        with open(partial, mode, encoding="utf-8" if text else None, newline=newline if text else None) as fh:
            yield fh
        replace(partial, path, remember)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def staging(folder: Path, overwrite: bool = False, what: str = "--out") -> Iterator[Path]:
    """A scratch folder inside `folder` to write many files into; on success each moves into
    `folder` (all targets are checked first: nothing moves if one is refused) and is remembered
    as ours. For writers that name their own files (plots, reports)."""
    clean_stale(folder)  # what a killed earlier run left
    scratch = Path(folder) / f".staging.partial-{tag()}"
    scratch.mkdir()
    try:
        yield scratch
        made = sorted(p for p in scratch.iterdir() if p.is_file())
        check_targets([Path(folder) / p.name for p in made], overwrite, what)
        for path in made:
            os.replace(path, Path(folder) / path.name)
        record([Path(folder) / p.name for p in made])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def clean_stale(folder: Path) -> list[Path]:
    """Remove scratch that runs killed by SIGTERM/SIGKILL left in `folder` (only our names,
    only this host's, only when that process is gone). Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _SCRATCH.match(entry.name) or _OLD_SCRATCH.match(entry.name)
        if not match:
            continue
        found = match.groupdict()
        pid = int(found["pid"] or found["image_pid"])
        if found.get("host", _HOST) != _HOST or _alive(pid):  # another host's, or still running
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed
