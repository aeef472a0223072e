"""Streaming readers: one record at a time from parquet, JSONL, JSON or an archive of them.

Memory stays flat in the number of rows: parquet is read in record batches, JSONL line by
line, and a JSON array is decoded element by element. A record that cannot be decoded (bad
JSON, not UTF-8, nested too deep, a line over `MAX_ROW_BYTES`, an unreadable parquet row
group) becomes a `Record` with `data=None` and a reason, never an exception: one bad row
does not stop a run. Archives are unpacked by `archives`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from satori_cli.errors import SatoriError, one_line

DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
PREPARED_MARKER = "prepare_summary.json"  # a folder holding it was written by `satori data prepare`
# Files in a folder that are ours or the hub's, never training data.
SKIP_NAMES = {"rejected.jsonl", PREPARED_MARKER, "dataset_infos.json", "dataset_info.json"}
PARQUET_BATCH = 256
MAX_ROW_BYTES = 64 << 20  # a JSONL line or JSON array element; room for an embedded base64 photo


class HugeInt(float):
    """An integer literal longer than Python's int() accepts (4300 digits): kept as +inf, so
    every numeric check rejects it, and printed as what it was."""

    digits: int

    def __new__(cls, digits: int) -> HugeInt:
        obj = super().__new__(cls, math.inf)
        obj.digits = digits
        return obj

    def __repr__(self) -> str:
        return f"<an integer of {self.digits} digits>"

    __str__ = __repr__


_INT_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 0)() or sys.maxsize


def _parse_int(text: str) -> int | HugeInt:
    return int(text) if len(text) <= _INT_DIGITS else HugeInt(len(text))


_DECODER = json.JSONDecoder(parse_int=_parse_int)


def loads(text: str) -> object:
    """`json.loads` that cannot raise on an integer's length (a `HugeInt` instead)."""
    return _DECODER.decode(text)


def describe_json_error(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nested too deep to decode"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc.msg} at column {exc.colno})"
    return f"invalid JSON ({one_line(exc, 120)})"


@dataclass(frozen=True)
class Unpacked:
    """An archive unpacked into a scratch folder: image paths must stay inside `root`;
    `problems` says why a member was not extracted (encrypted, too large, ...)."""

    root: Path
    problems: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """One raw row: its position (for error reports), its columns, and where its paths resolve."""

    row_id: str
    data: dict | None  # None: the row could not be decoded (see `reason`, `error`)
    base_dir: Path
    jail: Unpacked | None = None  # image paths must stay inside this folder (archives)
    error: str = ""
    reason: str = "malformed_row"


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def is_data_name(name: str) -> bool:
    return name.lower().endswith(DATA_SUFFIXES) and name not in SKIP_NAMES and not name.startswith(".")


def data_files(src: Path, exclude: tuple[Path, ...] = ()) -> tuple[list[Path], list[Path]]:
    """(data files of a file or folder, sorted; folders skipped as our own outputs).

    Never read: hidden folders, `images/` folders, any folder in `exclude` (this run's output
    folder), and any subfolder a `satori data prepare` wrote (it holds `prepare_summary.json`):
    re-reading an earlier run's output would duplicate every row.
    """
    if src.is_file():
        if not src.name.lower().endswith(DATA_SUFFIXES):
            raise SatoriError(
                f"{src}: not a data file",
                hint="give a .parquet, .jsonl or .json file, an archive of them, or a folder",
            )
        return [src], []
    excluded = {p.resolve() for p in exclude}
    found: list[Path] = []
    skipped: list[Path] = []
    for root, dirs, files in os.walk(src):
        here = Path(root)
        keep = []
        for d in sorted(dirs):
            sub = here / d
            if d.startswith(".") or d == "images":
                continue
            if sub.resolve() in excluded or (sub / PREPARED_MARKER).is_file():
                skipped.append(sub)
                continue
            keep.append(d)
        dirs[:] = keep
        own_outputs = here.resolve() in excluded  # src is the output folder: skip what we write there
        for name in sorted(files):
            path = here / name
            if not is_data_name(name) or not path.is_file():  # a FIFO or device is never opened
                continue
            if own_outputs and name in ("train.jsonl", "val.jsonl"):
                skipped.append(path)
                continue
            found.append(path)
    return found, skipped


def check_readable(path: Path) -> None:
    """Fail before any work on a file that cannot even be opened (or a parquet without a footer)."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            pq.ParquetFile(path).close()
        else:
            with open(path, "rb") as fh:
                fh.read(1)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise SatoriError(f"{path}: not readable ({one_line(exc, 160)})") from exc


def column_names(path: Path) -> list[str]:
    """The columns of a data file, from its schema or its first record (for --column checks)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    for record in itertools.islice(_iter_file(path, None, path.name), 101):
        if record.data is not None:
            return list(record.data)
    return []  # the first 101 records are all broken: nothing to check against


def count_rows(files: list[Path]) -> int | None:
    """Total rows when cheap to know (parquet metadata, JSONL newlines), else None."""
    total = 0
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(path).metadata.num_rows
        elif suffix == ".jsonl":
            with open(path, "rb") as fh:
                last = b"\n"
                while chunk := fh.read(1 << 20):
                    total += chunk.count(b"\n")
                    last = chunk[-1:]
                total += last != b"\n"
        else:
            return None
    return total


def iter_records(files: list[Path], root: Path, jail: Unpacked | None = None) -> Iterator[Record]:
    """Every record of every file, in order; row ids are `RELATIVE/PATH.jsonl:INDEX`."""
    for path in files:  # all under root: `data_files` found them there
        yield from _iter_file(path, jail, path.relative_to(root).as_posix())


def _iter_file(path: Path, jail: Unpacked | None, name: str) -> Iterator[Record]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _parquet_rows(path)
    elif suffix == ".jsonl":
        rows = (line[1:] for line in jsonl_lines(path))  # without the line number
    else:
        rows = _json_rows(path)
    for index, (data, reason, error) in enumerate(rows):
        yield Record(f"{name}:{index}", data, path.parent, jail, error, reason)


Row = tuple[dict | None, str, str]  # (data, reason, error): data None when it could not be decoded


def _parquet_rows(path: Path) -> Iterator[Row]:
    """Row group by row group: a damaged group rejects its own rows and the next one is read."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise SatoriError(f"{path}: not a readable parquet file ({one_line(exc, 160)})") from exc
    for group in range(parquet.num_row_groups):
        expected = parquet.metadata.row_group(group).num_rows
        done = 0
        try:
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH, row_groups=[group]):
                for row in batch.to_pylist():
                    done += 1
                    yield row, "", ""
        except Exception as exc:
            error = f"parquet row group {group} unreadable ({one_line(exc, 120)})"
            for _ in range(expected - done):
                yield None, "malformed_row", error


def _decoded(value: object) -> Row:
    if isinstance(value, dict):
        return value, "", ""
    return None, "malformed_row", f"a JSON {type(value).__name__}, not an object"


def jsonl_lines(path: Path) -> Iterator[tuple[int, dict | None, str, str]]:
    """(line number, data, reason, error) for every non-blank line, read in binary: strict
    UTF-8, and a line over MAX_ROW_BYTES is skipped unread."""
    with open(path, "rb") as fh:
        number = 0
        while line := fh.readline(MAX_ROW_BYTES + 1):
            number += 1
            if len(line) > MAX_ROW_BYTES:
                if not line.endswith(b"\n"):  # skip the rest of the line, a MiB at a time
                    while (more := fh.readline(1 << 20)) and not more.endswith(b"\n"):
                        pass
                yield number, None, "over_limit", f"a line over {MAX_ROW_BYTES >> 20} MiB"
                continue
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, "not_utf8", f"byte 0x{line[exc.start]:02x} at column {exc.start + 1}"
                continue
            try:
                yield (number, *_decoded(loads(text)))
            except (ValueError, RecursionError) as exc:
                yield number, None, "malformed_row", describe_json_error(exc)


def _json_rows(path: Path, chunk_size: int = 1 << 20) -> Iterator[Row]:
    """A `.json` file: an array of rows (decoded element by element, so a large file is never
    held whole), an object wrapping one such array (`{"data": [...]}`), or a single row.

    Invalid bytes become lone surrogates (`surrogateescape`) that the writer rejects as
    not_utf8; a damaged element is skipped to the next `,` at its depth and rejected.
    """
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as fh:
        buf = fh.read(chunk_size)
        pos = _WS.match(buf).end()
        if pos >= len(buf):
            return  # an empty file: no rows
        if buf[pos] == "{":
            yield from _json_object_rows(path, buf + fh.read())
            return
        if buf[pos] != "[":
            raise SatoriError(
                f"{path}: expected a JSON array of rows, an object with one list of rows, or one row object"
            )
        pos += 1
        eof = False
        while True:
            pos = _GAP.match(buf, pos).end()
            if pos >= len(buf):
                if eof:
                    yield None, "malformed_row", "the JSON array is truncated (no closing ])"
                    return
                buf, pos, eof = _more(fh, buf, pos, chunk_size)
                continue
            if buf[pos] == "]":
                return
            try:
                row, end = _DECODER.raw_decode(buf, pos)
                error = ""
            except (ValueError, RecursionError) as exc:
                row, end, error = None, _element_end(buf, pos), describe_json_error(exc)
            # Incomplete (cut at the chunk edge, or no delimiter yet): read more and decode again.
            if not eof and (end is None or end >= len(buf)):
                if len(buf) - pos > MAX_ROW_BYTES:
                    raise SatoriError(
                        f"{path}: an array element over {MAX_ROW_BYTES >> 20} MiB",
                        hint="write such data as JSONL (one row per line) or parquet",
                    )
                buf, pos, eof = _more(fh, buf, pos, max(chunk_size, len(buf) - pos))
                continue
            if end is None:
                yield None, "malformed_row", f"{error or 'invalid JSON'}; the array is truncated"
                return
            yield _decoded(row) if not error else (None, "malformed_row", error)
            pos = end
            if pos > chunk_size:
                buf, pos = buf[pos:], 0


def _more(fh, buf: str, pos: int, size: int) -> tuple[str, int, bool]:
    """Drop what was consumed and read `size` more characters (growing geometrically: linear)."""
    more = fh.read(size)
    return buf[pos:] + more, 0, not more


def _json_object_rows(path: Path, text: str) -> Iterator[Row]:
    from satori_cli.data.validate import ALIASES

    try:
        obj = loads(text)
    except (ValueError, RecursionError) as exc:
        raise SatoriError(f"{path}: {describe_json_error(exc)}") from exc
    known = {name for names in ALIASES.values() for name in names}
    lists = [v for v in obj.values() if isinstance(v, list)]
    if not known & set(obj) and len(lists) == 1 and all(isinstance(r, dict) for r in lists[0]):
        for row in lists[0]:
            yield row, "", ""
    else:
        yield obj, "", ""  # one object with row fields is one row


_WS = re.compile(r"[ \t\r\n]*")  # JSON's whitespace
_GAP = re.compile(r"[ \t\r\n,]*")  # what separates array elements (extra commas are skipped)
# A JSON string, a bracket, or a delimiter: enough to find where a damaged element ends.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{},]')


def _element_end(buf: str, pos: int) -> int | None:
    """Index of the `,` or `]` that ends the array element starting at `pos` (None: not in buf)."""
    depth = 0
    for match in _TOKEN.finditer(buf, pos):
        tok = match.group()
        if tok == '"':
            return None  # an unterminated string: the element continues past the buffer
        if len(tok) > 1:
            continue  # a whole string
        if tok in "[{":
            depth += 1
        elif tok in "]}":
            if depth > 0:
                depth -= 1
            elif tok == "]":
                return match.start()  # the array's end
        elif depth == 0:  # ","
            return match.start()
    return None
