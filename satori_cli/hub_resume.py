"""Finish files that a killed `satori download` left half-written, from the byte where it stopped.

huggingface_hub 1.x resumes a dropped connection within one run (HTTP Range), but it writes each file
to a process-unique `<etag>.<random>.incomplete` and never looks at it again once the process dies: the
next run starts that file from byte 0 and the partial stays on disk for good. For a multi-GB checkpoint
that hurts, so before `snapshot_download` runs we complete such partials with a Range request and put
them where huggingface_hub expects the finished file (a cache blob, or the file in `--local-dir` with
its metadata); it then only links them. Files are checked against their etag (sha256 for LFS files,
the git blob sha1 otherwise) before they are used; a partial that does not check out is deleted.

This leans on huggingface_hub's private cache layout (`_tree_cache`, `_local_folder`), pinned `<2`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Partial:
    """One leftover `.incomplete` file and the repo file it belongs to."""

    path: Path
    filename: str
    etag: str
    size: int
    commit: str


def _commit_for(storage: Path, revision: str) -> str | None:
    from huggingface_hub.file_download import REGEX_COMMIT_HASH

    if REGEX_COMMIT_HASH.fullmatch(revision):
        return revision
    ref = storage / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None


def find_partials(repo_id: str, repo_type: str, revision: str, local_dir: Path | None) -> list[Partial]:
    """The largest leftover partial of each file of `revision` (as listed in the cached tree)."""
    from huggingface_hub import constants
    from huggingface_hub._tree_cache import read_tree_cache, tree_cache_folder_for_local_dir
    from huggingface_hub.file_download import repo_folder_name

    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    commit = _commit_for(storage, revision)
    if commit is None:
        return []
    tree_folder = tree_cache_folder_for_local_dir(str(local_dir)) if local_dir else str(storage)
    entries = read_tree_cache(tree_folder, commit) or {}
    by_etag = {(e.lfs_sha256 or e.blob_id): (name, e.lfs_size or e.size) for name, e in entries.items()}
    where = local_dir / ".cache" / "huggingface" / "download" if local_dir else storage / "blobs"
    best: dict[str, Partial] = {}
    for path in where.rglob("*.incomplete") if where.is_dir() else ():
        parts = path.name.split(".")  # cache: <etag>.<rnd>.incomplete; local: <hash>.<etag>.<rnd>.incomplete
        etag = parts[-3] if len(parts) >= 3 else ""
        if etag not in by_etag or path.stat().st_size == 0:
            continue
        name, size = by_etag[etag]
        found = Partial(path, name, etag, size, commit)
        if etag not in best or path.stat().st_size > best[etag].path.stat().st_size:
            best[etag] = found
    return [p for p in best.values() if p.path.stat().st_size <= p.size]


def _matches_etag(path: Path, etag: str) -> bool:
    size = path.stat().st_size
    digest = hashlib.sha256() if len(etag) == 64 else hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == etag


def resume_partials(
    repo_id: str,
    repo_type: str,
    revision: str | None,
    *,
    local_dir: Path | None = None,
    token: str | None = None,
    tqdm_class: type | None = None,
) -> list[str]:
    """Complete leftover partials of `repo_id@revision`; return the repo files finished this way.

    Best effort: anything that goes wrong leaves the work to `snapshot_download`, which reports it.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return []
    finished = []
    for partial in find_partials(repo_id, repo_type, revision or constants.DEFAULT_REVISION, local_dir):
        try:
            if _resume_one(repo_id, repo_type, partial, local_dir, token, tqdm_class):
                finished.append(partial.filename)
        except Exception as exc:  # best effort: the full download follows and reports errors
            log.warning("could not resume %s: %s", partial.filename, exc)
    return finished


def _resume_one(repo_id, repo_type, partial: Partial, local_dir, token, tqdm_class) -> bool:
    from filelock import FileLock, Timeout
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get, repo_folder_name
    from huggingface_hub.utils import build_hf_headers

    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    if local_dir:
        from huggingface_hub._local_folder import get_local_download_paths

        lock = get_local_download_paths(local_dir, partial.filename).lock_path
    else:
        lock = Path(constants.HF_HUB_CACHE) / ".locks" / storage.name / f"{partial.etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:  # huggingface_hub holds this lock while it downloads: a held lock means a live download
        held = FileLock(str(lock), timeout=0).acquire()
    except Timeout:
        return False
    with held:
        url = hf_hub_url(repo_id, partial.filename, repo_type=repo_type, revision=partial.commit)
        meta = get_hf_file_metadata(url, token=token)
        # The file changed on the hub, or it comes over Xet, which may write out of order and keeps its
        # own chunk cache (a rerun fetches little): either way this partial is of no use.
        if meta.etag != partial.etag or meta.xet_file_data is not None:
            partial.path.unlink(missing_ok=True)
            return False
        headers = build_hf_headers(token=token)
        target = meta.location
        if _host(target) != _host(url):  # a CDN: like huggingface_hub, do not send the token there
            headers.pop("authorization", None)
        with partial.path.open("r+b") as f:
            done = f.seek(0, os.SEEK_END)
            http_get(
                target,
                f,
                resume_size=done,
                headers=headers,
                expected_size=meta.size,
                displayed_filename=partial.filename,
                tqdm_class=tqdm_class,
            )
        if not _matches_etag(partial.path, partial.etag):
            partial.path.unlink(missing_ok=True)
            return False
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial.path, 0o666 & ~umask)
        dest = Path(local_dir) / partial.filename if local_dir else storage / "blobs" / partial.etag
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial.path, dest)
    if local_dir:  # after the lock is released: write_download_metadata takes it itself
        from huggingface_hub._local_folder import write_download_metadata

        write_download_metadata(
            local_dir=local_dir, filename=partial.filename, commit_hash=partial.commit, etag=partial.etag
        )
    return True


def _host(url: str) -> str:
    return urlsplit(url).netloc
