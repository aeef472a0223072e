"""One download from the Hugging Face hub (or its cache), every failure one line.

Shared by the model resolver (`models`, which downloads a hub model it is asked to open) and by
`satori download` (`hub`, which adds aliases, local folders and ModelScope); it imports neither.
Retries with a Range request, `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` and Xet's chunk transfer
are all huggingface_hub's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from satori_cli.errors import SatoriError

Kind = Literal["model", "data"]


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
