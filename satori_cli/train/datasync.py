"""Multi-node data: node 0 prepares and tags the training data once; the other nodes wait and verify.

Every node of a multi-node run shares one run folder (`--out` on a shared filesystem). If each
node prepared the data itself, they would truncate and rewrite the same files while the others
read them. Instead node 0 writes the files (each atomically: a temporary file, then a rename)
and then `data/ready.json`: what the data was made from and the sha256 of each file. The other
nodes wait for it, check that they were given the same data, and check the files' hashes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from satori_cli import outputs
from satori_cli.errors import SatoriError
from satori_cli.train.runfolder import fingerprint

READY = "ready.json"
DEFAULT_TIMEOUT = 3600.0  # preparing a raw data set (images and all) on node 0 can take a while


def ready_path(run_dir: Path) -> Path:
    return Path(run_dir) / "data" / READY


def source_of(data: str | None, val_data: str | None) -> dict[str, Any]:
    """What a node was told to train on: each file's path and sha256 (a folder: its path)."""

    def one(name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        path = Path(name).expanduser().resolve()
        found: dict[str, Any] = {"path": str(path)}
        if path.is_file():
            found["sha256"] = fingerprint(path)["sha256"]
        return found

    return {"data": one(data) or {"path": "(the built-in sample set)"}, "val": one(val_data)}


def _same(mine: dict[str, Any] | None, theirs: dict[str, Any] | None) -> bool:
    """The same data: equal hashes where both have one (mount points may differ), else equal paths."""
    if mine is None or theirs is None:
        return mine is theirs
    if "sha256" in mine and "sha256" in theirs:
        return mine["sha256"] == theirs["sha256"]
    return mine.get("path") == theirs.get("path")


def _describe(source: dict[str, Any] | None) -> str:
    if source is None:
        return "none"
    sha = f" (sha256 {source['sha256'][:12]})" if "sha256" in source else ""
    return f"{source.get('path')}{sha}"


def _entry(run_dir: Path, path: Path | None) -> dict[str, Any] | None:
    """A prepared file by its place in the run folder (mount points may differ between nodes)."""
    found = fingerprint(path)
    if found is None:
        return None
    found["path"] = os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())
    return found


def publish(run_dir: Path, source: dict[str, Any], train: Path, val: Path | None) -> Path:
    """Node 0: record the prepared files and their hashes, after they are complete."""
    record = {
        "source": source,
        "train": _entry(run_dir, train),
        "val": _entry(run_dir, val),
        "written_by": {"node_rank": 0, "host": os.uname().nodename, "pid": os.getpid()},
    }
    path = ready_path(run_dir)
    with outputs.atomic_file(path, remember=False) as handle:  # readers see all of it or none
        handle.write(json.dumps(record, indent=2) + "\n")
    return path


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not there yet, or (on a filesystem without atomic rename) half-written
    return data if isinstance(data, dict) else None


def _problem(run_dir: Path, record: dict[str, Any], source: dict[str, Any]) -> str | None:
    """Why the published data is not (yet) this node's: None when it is, complete and intact."""
    theirs = record.get("source") or {}
    for key, what in (("data", "data"), ("val", "validation data")):
        if not _same(source.get(key), theirs.get(key)):
            return (
                f"node 0 prepared its {what} from {_describe(theirs.get(key))}, "
                f"but this node was given {_describe(source.get(key))}"
            )
    if not isinstance(record.get("train"), dict):
        return "node 0's record has no training file"
    for key in ("train", "val"):
        want = record.get(key)
        if not isinstance(want, dict):
            continue
        path = Path(run_dir) / want["path"]
        if not path.is_file():
            return f"{path} (recorded by node 0) does not exist on this node"
        have = fingerprint(path)
        if have is None or have["sha256"] != want["sha256"]:
            return f"{path} does not match the sha256 node 0 recorded ({want['sha256'][:12]})"
    return None


def wait_for_data(
    run_dir: Path, source: dict[str, Any], timeout: float = DEFAULT_TIMEOUT, interval: float = 1.0
) -> tuple[Path, Path | None]:
    """Nodes 1..N-1: wait until node 0 has published this node's data, verified; its (train, val).

    A record from an earlier run with other data is waited past (node 0 may not have replaced it
    yet); at the deadline the last reason is the one-line error.
    """
    path = ready_path(run_dir)
    deadline = time.monotonic() + timeout
    problem = f"node 0 has not published the prepared data ({path} does not exist)"
    while True:
        record = _read(path)
        if record is not None:
            problem = _problem(run_dir, record, source) or ""
            if not problem:
                val = record.get("val")
                train = Path(run_dir) / record["train"]["path"]
                return train, Path(run_dir) / val["path"] if val else None
        if time.monotonic() >= deadline:
            raise SatoriError(
                f"waited {timeout:g} s for node 0's data: {problem}",
                hint="start node 0 too, with the same --data and the same --out on a filesystem "
                "every node shares (or raise --data-timeout)",
            )
        time.sleep(interval)
