"""Unpack a zip or tar of data files safely: inside its scratch folder, only what is read, under a cap.

Every member name is checked first: one that would land outside the scratch folder refuses
the whole archive. Then the data files (.parquet/.jsonl/.json) are extracted, their rows are
read once to learn which image members they reference, and only those are extracted: a 3 MB
zip that inflates to 3 GiB of members no row points at writes nothing. The total extracted is
capped (`default_limit`: 20x the archive's size, at least 2 GiB; `--max-extract-gb` sets it)
and a single image member over `MAX_IMAGE_MEMBER` is never extracted (its row is rejected).
Links and devices inside a tar are never extracted. Members that cannot be read (encrypted,
unsupported compression, damaged) reject the rows that use them; a data file that cannot be
read stops the run with one line.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from satori_cli.data import readers
from satori_cli.data.images import member_key
from satori_cli.data.validate import pick
from satori_cli.errors import SatoriError, one_line

MIN_LIMIT = 2 << 30
LIMIT_RATIO = 20
MAX_IMAGE_MEMBER = 512 << 20  # larger than any image PIL would decode (89 Mpx as raw BMP)
CHUNK = 1 << 20


def default_limit(archive: Path) -> int:
    """At most 20x the archive's size is extracted (at least 2 GiB): images do not compress."""
    return max(MIN_LIMIT, LIMIT_RATIO * archive.stat().st_size)


class _Reader:
    """The regular-file members of one archive by normalized relative name (in archive order),
    their sizes, and what has been written of the `limit`."""

    def __init__(self, archive: Path, root: Path, limit: int) -> None:
        self.archive, self.root, self.limit, self.written = archive, root, limit, 0
        self.members: dict[str, object] = {}
        self.sizes: dict[str, int] = {}
        self.handle: zipfile.ZipFile | tarfile.TarFile
        try:
            if archive.name.lower().endswith(".zip"):
                self.handle = zipfile.ZipFile(archive)
                entries = [(i.filename, i, i.is_dir(), True, i.file_size) for i in self.handle.infolist()]
            else:
                self.handle = tarfile.open(archive)  # noqa: SIM115 (closed by close())
                entries = [(m.name, m, m.isdir(), m.isfile(), m.size) for m in self.handle.getmembers()]
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise SatoriError(f"{archive}: cannot read the archive ({one_line(exc, 160)})") from exc
        for name, member, is_dir, is_file, size in entries:
            try:
                target = (root / name).resolve()
            except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a name too long
                raise SatoriError(f"{archive}: member '{one_line(name, 120)}' is not a usable path") from exc
            if not target.is_relative_to(root):
                raise SatoriError(f"{archive}: member '{one_line(name, 120)}' would land outside the folder")
            if is_dir or not is_file or target == root:
                continue  # folders are made as needed; links and devices are never extracted
            key = target.relative_to(root).as_posix()
            self.members.pop(key, None)  # a repeated name: the last one wins, at its place
            self.members[key], self.sizes[key] = member, size

    def close(self) -> None:
        self.handle.close()

    def extract(self, keys: set[str]) -> dict[str, str]:
        """Write `keys` under root (in archive order: a .tar.gz is read forward once);
        returns {key: why not} for members that could not be read.

        The cap is checked against the sizes the archive declares: zipfile and tarfile never
        give more bytes than that (a zip member that inflates further fails its CRC check)."""
        problems: dict[str, str] = {}
        for key in (k for k in self.members if k in keys):
            self.written += self.sizes[key]
            if self.written > self.limit:
                raise SatoriError(
                    f"{self.archive}: unpacking would write more than {self.limit / 2**30:.3g} GiB",
                    hint="the cap is 20x the archive's size (at least 2 GiB); if you trust this archive, "
                    "raise it with --max-extract-gb",
                )
            target = self.root / key
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with self._open(key) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            except OSError as exc:
                if exc.filename is not None and Path(exc.filename) == target:
                    raise  # writing failed (disk full): a run-level error, not this member's fault
                problems[key] = f"cannot read the archive member ({one_line(exc, 120)})"
                target.unlink(missing_ok=True)
            except Exception as exc:  # encrypted, unsupported compression, bad CRC, damaged stream
                problems[key] = f"cannot read the archive member ({type(exc).__name__}: {one_line(exc, 120)})"
                target.unlink(missing_ok=True)
        return problems

    def _open(self, key: str):
        member = self.members[key]  # a regular file (see __init__): a tar never gives None for it
        if isinstance(self.handle, zipfile.ZipFile):
            return self.handle.open(member)
        return self.handle.extractfile(member)


def unpack(
    archive: Path, dest: Path, limit: int | None, mapping: Mapping[str, str]
) -> tuple[list[Path], readers.Unpacked]:
    """Unpack the data files of `archive` into `dest`, then the image members their rows
    reference (columns found as `prepare` finds them, with the user's `mapping`)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    reader = _Reader(archive, root, default_limit(archive) if limit is None else limit)
    try:
        data = {k for k in reader.members if _is_data_member(k)}
        broken = reader.extract(data)
        if broken:
            key, why = next(iter(broken.items()))
            raise SatoriError(f"{archive}: data file {key}: {why}")
        files, _ = readers.data_files(root)
        wanted = _references(files, root, mapping) & reader.members.keys()
        images = wanted - data
        problems = {
            key: f"an archive member of {reader.sizes[key] >> 20} MiB, too large for an image"
            for key in images
            if reader.sizes[key] > MAX_IMAGE_MEMBER
        }
        problems.update(reader.extract(images - problems.keys()))
    finally:
        with contextlib.suppress(Exception):
            reader.close()
    return files, readers.Unpacked(root, problems)


def _is_data_member(key: str) -> bool:
    parts = key.split("/")
    if any(p.startswith(".") or p == "images" for p in parts[:-1]):
        return False
    return readers.is_data_name(parts[-1])


def _references(files: list[Path], root: Path, mapping: Mapping[str, str]) -> set[str]:
    """The archive members the rows of `files` use as images (so only those are extracted)."""
    keys = set()
    for record in readers.iter_records(files, root):
        if record.data is not None:
            key = member_key(pick(record.data, mapping)["image"], record.base_dir, root)
            if key:
                keys.add(key)
    return keys
