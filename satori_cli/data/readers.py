"""Streaming readers: one record at a time from parquet, JSONL, JSON or an archive of them.

Memory stays flat in the number of rows: parquet is read in record batches, JSONL line by
line, and a JSON array is decoded element by element. Archives (zip, tar, tar.gz, ...) are
unpacked into a scratch folder first, refusing members that would land outside it.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from satori_cli.errors import SatoriError

DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# Files in a folder that are ours or the hub's, never training data.
SKIP_NAMES = {"rejected.jsonl", "prepare_summary.json", "dataset_infos.json", "dataset_info.json"}
PARQUET_BATCH = 256


@dataclass(frozen=True)
class Record:
    """One raw row: its position (for error reports), its columns, and where its paths resolve."""

    row_id: str
    data: dict | None  # None: the row could not be decoded (see `error`)
    base_dir: Path
    jail: Path | None = None  # image paths must stay inside this folder (archives)
    error: str = ""


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(ARCHIVE_SUFFIXES)


def data_files(src: Path) -> list[Path]:
    """The data files of a file or folder (sorted; hidden folders and our own outputs skipped)."""
    if src.is_file():
        if not src.name.lower().endswith(DATA_SUFFIXES):
            raise SatoriError(
                f"{src}: not a data file",
                hint="give a .parquet, .jsonl or .json file, an archive of them, or a folder",
            )
        return [src]
    found = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "images")
        for name in sorted(files):
            if name.lower().endswith(DATA_SUFFIXES) and name not in SKIP_NAMES and not name.startswith("."):
                found.append(Path(root) / name)
    return found


def column_names(path: Path) -> list[str]:
    """The columns of a data file, from its schema or its first record (for --column checks)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    for record in _iter_file(path, path.parent, None):
        return list(record.data) if record.data else []
    return []


def count_rows(files: list[Path]) -> int | None:
    """Total rows when cheap to know (parquet metadata, JSONL lines), else None."""
    total = 0
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(path).metadata.num_rows
        elif suffix == ".jsonl":
            with open(path, "rb") as fh:
                total += sum(1 for line in fh if line.strip())
        else:
            return None
    return total


def iter_records(files: list[Path], jail: Path | None = None) -> Iterator[Record]:
    """Every record of every file, in order."""
    for path in files:
        yield from _iter_file(path, path.parent, jail)


def _iter_file(path: Path, base: Path, jail: Path | None) -> Iterator[Record]:
    suffix = path.suffix.lower()
    stem = path.stem
    if suffix == ".parquet":
        rows = _parquet_rows(path)
    elif suffix == ".jsonl":
        rows = _jsonl_rows(path)
    else:
        rows = _json_rows(path)
    for index, (data, error) in enumerate(rows):
        yield Record(f"{stem}:{index}", data, base, jail, error)


def _parquet_rows(path: Path) -> Iterator[tuple[dict | None, str]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise SatoriError(f"{path}: not a readable parquet file ({exc})") from exc
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            yield row, ""


def _jsonl_rows(path: Path) -> Iterator[tuple[dict | None, str]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield None, f"invalid JSON: {exc.msg}"
                continue
            yield (row, "") if isinstance(row, dict) else (None, "a JSON line that is not an object")


def _json_rows(path: Path, chunk_size: int = 1 << 20) -> Iterator[tuple[dict | None, str]]:
    """Elements of a top-level JSON array (or of the first array value of a top-level object),
    decoded incrementally so a large file is never held whole in memory."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8", errors="replace") as fh:
        buf = fh.read(chunk_size)
        pos = _skip_ws(buf, 0)
        if pos < len(buf) and buf[pos] == "{":
            # {"data": [...]} or {"train": [...]}: small wrappers; decode whole (rare form).
            buf += fh.read()
            try:
                obj = json.loads(buf)
            except json.JSONDecodeError as exc:
                raise SatoriError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
            rows = next((v for v in obj.values() if isinstance(v, list)), None)
            if rows is None:
                yield obj, ""
                return
            for row in rows:
                yield (row, "") if isinstance(row, dict) else (None, "an array element that is not an object")
            return
        if pos >= len(buf) or buf[pos] != "[":
            raise SatoriError(f"{path}: expected a JSON array of records")
        pos += 1
        while True:
            pos = _skip_ws(buf, pos)
            while pos < len(buf) and buf[pos] == ",":
                pos = _skip_ws(buf, pos + 1)
            if pos < len(buf) and buf[pos] == "]":
                return
            try:
                row, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                more = fh.read(chunk_size)
                if not more:
                    raise SatoriError(f"{path}: invalid or truncated JSON array ({exc.msg})") from exc
                buf = buf[pos:] + more
                pos = 0
                continue
            # A number cut at the chunk edge decodes "successfully": make sure something follows.
            if end >= len(buf):
                more = fh.read(chunk_size)
                if more:
                    buf = buf[pos:] + more
                    pos = 0
                    continue
            yield (row, "") if isinstance(row, dict) else (None, "an array element that is not an object")
            pos = end
            if pos > chunk_size:
                buf, pos = buf[pos:], 0


def _skip_ws(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in " \t\r\n":
        pos += 1
    return pos


def unpack_archive(archive: Path, dest: Path) -> Path:
    """Unpack a zip or tar archive into `dest`, refusing links and members outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    target = (root / info.filename).resolve()
                    if not target.is_relative_to(root):
                        raise SatoriError(
                            f"{archive}: member '{info.filename}' would land outside the folder"
                        )
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        else:
            with tarfile.open(archive) as tf:
                # The "data" filter refuses absolute paths, "..", links out and device files.
                tf.extractall(root, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise SatoriError(f"{archive}: cannot unpack ({exc})") from exc
    return root
