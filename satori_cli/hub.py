"""Downloads from the Hugging Face hub (or its cache) or ModelScope, every failure one line.

Shared by the model resolver (`models`, which downloads a hub model it is asked to open) and by
`satori download` (which first resolves aliases and local folders); it imports neither.
`huggingface_hub.snapshot_download` does the work: the HF cache, `HF_ENDPOINT`, `HF_TOKEN`,
`HF_HUB_OFFLINE`, retries with a Range request when a connection drops and Xet's chunk transfer
are all native there; ModelScope's `snapshot_download` does it with `source="modelscope"`. With
no network and nothing cached, the error is one line that says how to place the files by hand.

On Ctrl-C (and SIGTERM / SIGHUP, which `satori download` turns into Ctrl-C) huggingface_hub
finishes or deletes the files in flight and skips the rest; the next run fetches only what is
missing. Only a `kill -9` leaves a half-written file behind: `hf cache ls` shows it and
`hf cache prune` removes it. (An earlier version resumed such files through private
huggingface_hub internals; upstream chose process-unique partial files on purpose.)
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from satori_cli.errors import SatoriError, require

Kind = Literal["model", "data"]
SOURCES = ("hf", "modelscope")


@dataclass(frozen=True)
class Fetched:
    """Where the files are, and how they got there ("local", "hf" or "modelscope")."""

    repo: str
    path: Path
    origin: str


def manual_hint(kind: Kind, repo: str, revision: str | None, tool: str = "hf") -> str:
    """How to place the files by hand with `tool` (`hf` or `modelscope`: same command line)."""
    repo_type = "model" if kind == "model" else "dataset"
    rev = f" --revision {revision}" if revision else ""
    return (
        f"on a machine with network run `{tool} download {repo} --repo-type {repo_type}{rev} --local-dir "
        f"DIR`, copy DIR here and pass it instead of the repo id: `satori download {kind} DIR`"
    )


def fetch_hf(
    kind: Kind,
    repo: str,
    revision: str | None = None,
    local_dir: str | Path | None = None,
    tqdm_class: type | None = None,
) -> Fetched:
    """`repo` from the Hugging Face hub (or its cache), every failure one line."""
    import httpx
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_type = "model" if kind == "model" else "dataset"
    target = Path(local_dir).expanduser().resolve() if local_dir else None
    try:
        path = snapshot_download(
            repo,
            repo_type=repo_type,
            revision=revision,
            local_dir=str(target) if target else None,
            tqdm_class=tqdm_class,
            # Offline, look only on disk: otherwise a commit-hash revision still asks the hub for its
            # file list and fails although the snapshot is cached.
            local_files_only=constants.HF_HUB_OFFLINE,
        )
    except GatedRepoError as exc:
        raise SatoriError(
            f"{repo} is gated on the hub and this token has no access",
            hint="accept its terms on the repo page and set HF_TOKEN",
        ) from exc
    except RevisionNotFoundError as exc:
        raise SatoriError(f"{repo} has no revision '{revision}'") from exc
    except RepositoryNotFoundError as exc:
        raise SatoriError(
            f"{repo_type} {repo} not found on {constants.ENDPOINT} (or it is private)",
            hint="check the name, or set HF_TOKEN for a private repo",
        ) from exc
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        why = (
            "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"{constants.ENDPOINT} cannot be reached"
        )
        raise SatoriError(
            f"cannot download {repo}: {why} and it is not in the local cache",
            hint=manual_hint(kind, repo, revision),
        ) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise SatoriError(
                f"the hub refused {repo} (HTTP {status}): the token is missing, wrong or lacks access",
                hint="set HF_TOKEN to a token that can read this repo",
            ) from exc
        raise SatoriError(f"cannot download {repo}: {first_line(exc)}", exit_code=1) from exc
    except (OSError, httpx.HTTPError) as exc:  # connection lost for good, disk full, a bad size, ...
        raise SatoriError(
            f"cannot download {repo}: {first_line(exc)}",
            exit_code=1,
            hint="run the same command again: finished files are kept",
        ) from exc
    return Fetched(repo, Path(path), "hf")


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


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


def fetch_modelscope(
    kind: Kind, repo: str, revision: str | None = None, local_dir: str | Path | None = None
) -> Fetched:
    """`repo` from ModelScope (or its cache), every failure one line; an --out folder this run
    made is removed again when nothing landed in it."""
    require("modelscope", "train", "--source modelscope")
    from modelscope.hub.snapshot_download import dataset_snapshot_download, snapshot_download

    target = Path(local_dir).expanduser().resolve() if local_dir else None
    created = target is not None and not target.exists()  # only a folder satori made is removed
    kwargs = {"local_dir": str(target) if target else None}
    if revision:
        kwargs["revision"] = revision
    try:
        if kind == "model" and target is None:
            # In ModelScope's cache already: no network needed. It raises plain Exceptions (not
            # cached, bad id, ...): then the download below says what is wrong.
            with contextlib.suppress(Exception):
                return Fetched(
                    repo, Path(snapshot_download(repo, local_files_only=True, **kwargs)), "modelscope"
                )
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
    except BaseException:  # the --out folder this run made goes again if no file landed in it
        if created and target.is_dir() and not any(p.is_file() or p.is_symlink() for p in target.rglob("*")):
            shutil.rmtree(target, ignore_errors=True)
        raise
    return Fetched(repo, Path(path), "modelscope")


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
