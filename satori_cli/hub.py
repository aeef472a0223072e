"""Fetch the SATORI checkpoint, the base model or VQA-Verify, or accept a folder placed by hand.

Downloads go through `huggingface_hub.snapshot_download` (in `hf_download`; the HF cache,
`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`, retries with a Range request when a connection drops,
Xet's chunk transfer are all native there) or, with `source="modelscope"`, through ModelScope's
`snapshot_download`. A folder that already exists is used as is, wherever a repo id is
accepted. With no network and nothing cached, the error is one line that says how to place
the files by hand.

On Ctrl-C (and SIGTERM / SIGHUP, which `satori download` turns into Ctrl-C) huggingface_hub
finishes or deletes the files in flight and skips the rest; the next run fetches only what is
missing. Only a `kill -9` leaves a half-written file behind: `hf cache ls` shows it and
`hf cache prune` removes it. (An earlier version resumed such files through private
huggingface_hub internals; upstream chose process-unique partial files on purpose.)
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from satori_cli import models
from satori_cli.config import DEFAULT_DATASET, DEFAULT_MODEL
from satori_cli.errors import SatoriError, require
from satori_cli.hf_download import Fetched, Kind, fetch_hf, first_line, manual_hint

SOURCES = ("hf", "modelscope")
ALIASES = {**models.ALIASES, "vqa-verify": DEFAULT_DATASET}


def local_folder(kind: Kind, repo: str) -> Path | None:
    """The folder `repo` names, checked to hold a model or data; None when it is a repo id."""
    path = models.local_path(repo, kind=kind)
    if path is None:
        return None
    if kind == "model":
        return Path(models.resolve(str(path), flag="").path)
    from satori_cli.data.readers import ARCHIVE_SUFFIXES, DATA_SUFFIXES

    suffixes = DATA_SUFFIXES + ARCHIVE_SUFFIXES
    if not any(p.name.lower().endswith(suffixes) for p in path.rglob("*") if p.is_file()):
        raise SatoriError(f"{path} holds no .parquet, .jsonl, .json or archive file, so it is not a dataset")
    return path


def fetch(
    kind: Kind,
    repo: str | None = None,
    *,
    revision: str | None = None,
    local_dir: str | Path | None = None,
    source: str = "hf",
    tqdm_class: type | None = None,
) -> Fetched:
    """Return the local path of `repo` (a model or dataset), downloading what is missing."""
    repo = ALIASES.get(repo or "", repo) or (DEFAULT_MODEL if kind == "model" else DEFAULT_DATASET)
    if source not in SOURCES:
        raise SatoriError(f"unknown --source '{source}'", hint=f"choose one of: {', '.join(SOURCES)}")
    folder = local_folder(kind, repo)
    if folder is not None:
        return Fetched(repo, folder, "local")
    if source == "modelscope":
        return _fetch_modelscope(kind, repo, revision, local_dir)
    return fetch_hf(kind, repo, revision, local_dir, tqdm_class)


MODELSCOPE_PROBE_S = 4.0  # seconds to wait for ModelScope to answer before saying it cannot be reached


def modelscope_endpoints() -> list[str]:
    """Where ModelScope's client reads: $MODELSCOPE_ENDPOINT, else the deprecated
    $MODELSCOPE_DOMAIN, else its two public sites (it tries modelscope.cn, then modelscope.ai)."""
    for var in ("MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN"):
        value = os.environ.get(var, "").strip().rstrip("/")
        if value:
            return [value if value.lower().startswith(("http://", "https://")) else f"https://{value}"]
    from modelscope_hub.constants import DEFAULT_ENDPOINT, DEFAULT_INTL_ENDPOINT

    return [DEFAULT_ENDPOINT, DEFAULT_INTL_ENDPOINT]


def _unreachable(endpoint: str) -> str | None:
    """Why `endpoint` cannot be reached (one short request, no retries), or None when it answers.

    ModelScope's client retries every listing call with growing pauses (25 s of warnings
    offline); this probe says the same in a few seconds at most.
    """
    import httpx

    try:
        httpx.head(endpoint, timeout=MODELSCOPE_PROBE_S, follow_redirects=False)
    except httpx.TimeoutException:
        return f"no answer within {MODELSCOPE_PROBE_S:.0f} s"
    except httpx.HTTPError as exc:
        return first_line(exc)
    return None


def _fetch_modelscope(kind, repo, revision, local_dir) -> Fetched:
    require("modelscope", "train", "--source modelscope")
    from modelscope.hub.snapshot_download import dataset_snapshot_download, snapshot_download

    target = Path(local_dir).expanduser().resolve() if local_dir else None
    created = target is not None and not target.exists()  # only a folder satori made is removed
    kwargs = {"local_dir": str(target) if target else None}
    if revision:
        kwargs["revision"] = revision
    try:
        if kind == "model" and target is None:
            try:  # in ModelScope's cache already: no network needed
                cached = snapshot_download(repo, local_files_only=True, **kwargs)
                return Fetched(repo, Path(cached), "modelscope")
            except Exception:  # modelscope raises plain Exceptions (not cached, bad id, ...)
                pass
        endpoints = modelscope_endpoints()
        reasons = [_unreachable(endpoint) for endpoint in endpoints]
        if all(reasons):
            raise SatoriError(
                f"cannot reach ModelScope ({', '.join(endpoints)}) to download {repo}: {reasons[0]}",
                hint=manual_hint(kind, repo, revision, "modelscope"),
            )
        try:
            path = (snapshot_download if kind == "model" else dataset_snapshot_download)(repo, **kwargs)
        except Exception as exc:  # modelscope raises plain Exceptions for network and not-found errors
            raise SatoriError(
                f"cannot download {repo} from ModelScope: {first_line(exc)}",
                hint=manual_hint(kind, repo, revision, "modelscope"),
            ) from exc
    except BaseException:
        if created:
            _remove_if_empty(target)
        raise
    return Fetched(repo, Path(path), "modelscope")


def _remove_if_empty(folder: Path) -> None:
    """Remove `folder` (which this run created) if no file landed in it."""
    if folder.is_dir() and not any(p.is_file() or p.is_symlink() for p in folder.rglob("*")):
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def rich_tqdm(progress) -> type:
    """A tqdm class that draws huggingface_hub's progress bars as tasks of a rich `Progress`."""
    from tqdm.std import tqdm as std_tqdm

    class RichTqdm(std_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()  # tqdm keeps counting; rich does the drawing
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)
            self._task = progress.add_task(
                self.desc or "", total=self.total or None, completed=self.n, unit=self.unit
            )

        def display(self, msg=None, pos=None):
            task = getattr(self, "_task", None)
            if task is not None:
                progress.update(task, completed=self.n, total=self.total or None, description=self.desc)
            return True

        def close(self):
            self.display()
            super().close()

    return RichTqdm
