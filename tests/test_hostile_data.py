"""Hostile and careless input to the data commands, through the CLI as a user runs it.

Every case asserts: the exit code, a one-line message, no "Traceback", in = written +
rejected, and that files which existed before are unchanged. Everything is generated in
tmp_path; "special files" are a FIFO and a symlink to /dev/null made there (never written).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import REPO, run_satori, satori_env
from PIL import Image

from satori_cli.outputs import MANIFEST


def png(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def png_with_bad_pixels() -> bytes:
    """A PNG whose every chunk CRC is right, but whose IDAT does not inflate to the image."""
    good, out, pos = png(), png()[:8], 8
    while pos < len(good):
        (n,) = struct.unpack(">I", good[pos : pos + 4])
        kind, body = good[pos + 4 : pos + 8], good[pos + 8 : pos + 8 + n]
        if kind == b"IDAT":
            body = zlib.compress(b"\x07" * 100)  # an unknown filter type, and too short
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        pos += 12 + n
    return out


def row(i: int, **over) -> dict:
    base = {
        "id": f"r{i}",
        "question": "What color is the square?",
        "answer": "red",
        "image": "img.png",
        "bboxs": [[4, 4, 20, 20]],
        "width": 64,
        "height": 48,
        "image_caption": "A red square.",
    }
    base.update(over)
    return base


def line(obj) -> bytes:
    return (
        obj
        if isinstance(obj, bytes)
        else json.dumps(obj).encode()
        if not isinstance(obj, str)
        else obj.encode()
    )


def raw_folder(folder: Path, rows: list, name: str = "data.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img.png").write_bytes(png())
    path = folder / name
    path.write_bytes(b"".join(line(r) + b"\n" for r in rows))
    return path


def one_line_error(done: subprocess.CompletedProcess, code: int = 2, match: str = "") -> str:
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), done.stderr
    assert match in err, err
    return err


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def adds_up(out: Path) -> dict:
    """in = written + rejected, in the summary and in the files themselves."""
    summary = json.loads((out / "prepare_summary.json").read_text())
    rows = read_jsonl(out / "train.jsonl") + (
        read_jsonl(out / "val.jsonl") if (out / "val.jsonl").exists() else []
    )
    rejected = read_jsonl(out / "rejected.jsonl")
    assert summary["rows_in"] == summary["written"] + summary["rejected"]
    assert (len(rows), len(rejected)) == (summary["written"], summary["rejected"])
    assert len({r["id"] for r in rows}) == len(rows), "ids are unique"
    return {"rows": rows, "rejected": rejected, "summary": summary}


def prepare(src: Path, out: Path, *extra: str, code: int = 0, timeout: float = 120) -> dict | str:
    done = run_satori("data", "prepare", str(src), "--out", str(out), *extra, timeout=timeout)
    if code:
        return one_line_error(done, code)
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    return adds_up(out)


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


# -- rows: every hostile value is one rejected row with its reason, the good rows are written --
HOSTILE_ROWS: list[tuple[str | None, object]] = [
    (None, row(0)),
    ("non_numeric", row(1, bboxs=[[10**400, 4, 20, 20]])),
    ("non_numeric", row(2, width=10**400)),
    (
        "non_numeric",
        '{"id": "r3", "question": "q", "answer": "a", "image": "img.png", "image_caption": "c", '
        f'"bboxs": [[{"9" * 5000}, 4, 20, 20]]}}',
    ),
    (
        "bad_answer",
        '{"id": "r4", "question": "q", "image": "img.png", "image_caption": "c", '
        f'"bboxs": [[4, 4, 20, 20]], "answer": {"9" * 5000}}}',
    ),
    (
        None,
        f'{{"id": "r5", "question": "q", "answer": "a", "image": "img.png", "image_caption": "c", '
        f'"bboxs": [[4, 4, 20, 20]], "unused": {"7" * 5000}}}',
    ),  # a huge int in an unused column is fine
    ("malformed_row", '{"id": "r6", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("corrupt_image", row(7, image={"bytes": "a string", "path": None})),
    ("corrupt_image", row(8, image={"bytes": 10**9, "path": None})),  # never bytes(10**9)
    ("corrupt_image", row(9, image="badpix.png")),
    ("not_utf8", b'{"id": "r10", "question": "caf\xe9?", "answer": "a", "image": "img.png"}'),
    ("not_utf8", row(11, question="\udc80 lone surrogate")),
    (
        "bad_answer",
        '{"id": "r12", "question": "q", "answer": NaN, "image": "img.png", "image_caption": "c", '
        '"bboxs": [[4, 4, 20, 20]]}',
    ),
    ("bad_answer", row(13, answer=["4", float("inf")])),
    ("bad_answer", row(14, answer=True)),
    ("bad_id", row(15, id={"a": 1})),
    ("bad_id", row(16, id="")),
    ("bad_id", row(17, id="x" * 300)),
    ("over_limit", row(18, question="why? " * 2_000_000)),  # 10 MB
    ("over_limit", row(19, image_caption="c" * 9_000)),
    ("over_limit", row(20, bboxs=[[4, 4, 20, 20]] * 1001)),
    ("duplicate_id", row(0)),  # the id of the first row again
    ("missing_image", row(22, image="x" * 5000)),
    ("missing_image", row(23, image="a\x00b.png")),
    ("missing_image", row(24, image="fifo.png")),  # a FIFO is never opened (it would block)
    ("malformed_row", "[1, 2, 3]"),
    ("malformed_row", '{"id": "r26", "question": '),
    (None, row(27, id=28.0)),  # a pandas int column with a gap: 28.0 is id "28"
    (None, row(28, answer=[{"answer": "red"}, None, "crimson"])),
]


def test_hostile_rows_are_rejected_with_reasons_and_the_rest_is_written(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    src = raw_folder(raw, [r for _, r in HOSTILE_ROWS])
    (raw / "badpix.png").write_bytes(png_with_bad_pixels())
    os.mkfifo(raw / "fifo.png")
    before = snapshot(*(p for p in raw.iterdir() if p.is_file()))
    start = time.monotonic()
    got = prepare(src, tmp_path / "out")
    assert time.monotonic() - start < 60
    assert snapshot(*before) == before
    expected = [reason for reason, _ in HOSTILE_ROWS if reason]
    assert [r["reason"] for r in got["rejected"]] == expected
    assert [r["id"] for r in got["rows"]] == ["r0", "r5", "28", "r28"]
    assert got["rows"][3]["possible_answers"] == ["red", "crimson"]
    assert got["summary"]["rows_in"] == len(HOSTILE_ROWS)
    for rejected in got["rejected"]:  # every detail is one short line
        assert rejected["detail"] and len(rejected["detail"]) <= 300 and "\n" not in rejected["detail"]
    by_reason = {r["row"]: r["detail"] for r in got["rejected"]}
    assert "nested too deep" in by_reason["data.jsonl:6"]
    assert "0xe9" in by_reason["data.jsonl:10"]


def test_output_inside_the_input_is_never_read_back(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    src_rows = [row(i) for i in range(16)]
    raw_folder(raw, src_rows)
    for _ in range(3):  # 16 -> 16 -> 16, not 16 -> 32 -> 48
        got = prepare(raw, raw / "prepared", "--val-ratio", "0.25")
        assert got["summary"]["rows_in"] == 16 and got["summary"]["written"] == 16
        assert sorted(r["id"] for r in got["rows"]) == sorted(r["id"] for r in src_rows)
    # an earlier run into another folder inside the input is skipped too, and said so
    done = run_satori("data", "prepare", str(raw), "--out", str(raw / "second"))
    assert done.returncode == 0 and "not read" in done.stdout and "prepared" in done.stdout
    assert adds_up(raw / "second")["summary"]["rows_in"] == 16
    # the output folder is the input folder: its own train/val are skipped, the raw rows read
    prepare(raw, raw, "--val-ratio", "0.25")
    assert prepare(raw, raw, "--val-ratio", "0.25")["summary"]["rows_in"] == 16
    # and an output file as the source is refused
    one_line_error(
        run_satori("data", "prepare", str(raw / "train.jsonl"), "--out", str(raw)), match="an output of"
    )


def test_json_shapes(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw_folder(raw, [])
    single = raw / "one.json"
    single.write_text(json.dumps(row(1)))  # a single object is one row, not its lists as rows
    assert prepare(single, tmp_path / "o1")["summary"]["rows_in"] == 1
    wrapped = raw / "wrapped.json"
    wrapped.write_text(json.dumps({"data": [row(1), row(2)]}))
    assert prepare(wrapped, tmp_path / "o2")["summary"]["written"] == 2
    # an array with a damaged element, one nested too deep, and a cut end: those rows rejected
    array = raw / "array.json"
    deep = "[" * 50_000 + "]" * 50_000
    array.write_text(
        f'[{json.dumps(row(1))}, {{"id": tru}}, {{"id": {deep}}}, {json.dumps(row(4))}, {{"id": "r5", '
    )
    got = prepare(array, tmp_path / "o3")
    assert [r["id"] for r in got["rows"]] == ["r1", "r4"]
    assert [r["reason"] for r in got["rejected"]] == ["malformed_row"] * 3
    one_line_error(
        run_satori("data", "prepare", str(raw / "nope.json"), "--out", str(tmp_path / "o4")), match="no such"
    )
    scalar = raw / "scalar.json"
    scalar.write_text("42")
    one_line_error(
        run_satori("data", "prepare", str(scalar), "--out", str(tmp_path / "o5")), match="expected"
    )


def test_a_large_array_element_is_read_in_linear_time(tmp_path: Path) -> None:
    """A 24 MB element read in 1 MiB chunks: the buffer grows geometrically, so this is seconds."""
    raw = tmp_path / "raw"
    raw_folder(raw, [])
    big = raw / "big.json"
    big.write_text(f"[{json.dumps(row(1, notes='n' * 24_000_000))}, {json.dumps(row(2))}]")
    start = time.monotonic()
    assert prepare(big, tmp_path / "out")["summary"]["written"] == 2
    assert time.monotonic() - start < 60


def test_no_rows_and_all_rejected_say_so(tmp_path: Path) -> None:
    empty = raw_folder(tmp_path / "raw", [])
    one_line_error(
        run_satori("data", "prepare", str(empty), "--out", str(tmp_path / "o1")), match="no rows found"
    )
    assert not (tmp_path / "o1" / "train.jsonl").exists()
    bad = raw_folder(tmp_path / "raw2", [row(1, answer=None)])
    err = one_line_error(run_satori("data", "prepare", str(bad), "--out", str(tmp_path / "o2")))
    assert "every row was rejected" in err


@pytest.mark.parametrize("content", [b"", b"not parquet at all" * 10, b"PAR1" + b"\x00" * 100])
def test_unreadable_parquet_is_one_line_before_any_work(tmp_path: Path, content: bytes) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.parquet").write_bytes(content)
    one_line_error(run_satori("data", "prepare", str(raw), "--out", str(tmp_path / "out")), match="a.parquet")
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_a_damaged_parquet_row_group_rejects_only_its_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = tmp_path / "raw"
    raw_folder(raw, [])
    path = raw / "data.parquet"
    pq.write_table(pa.Table.from_pylist([row(i) for i in range(20)]), path, row_group_size=10)
    data = bytearray(path.read_bytes())
    offset = pq.ParquetFile(path).metadata.row_group(0).column(1).data_page_offset
    data[offset : offset + 40] = b"\xff" * 40  # the first group's page header; the footer is intact
    path.write_bytes(bytes(data))
    got = prepare(path, tmp_path / "out")
    assert [r["id"] for r in got["rows"]] == [f"r{i}" for i in range(10, 20)]
    assert {r["reason"] for r in got["rejected"]} == {"malformed_row"} and len(got["rejected"]) == 10


def _flag_zip_member(path: Path, name: str, *, encrypted: bool = False, method: int | None = None) -> None:
    """Mark a member encrypted, or give it a compression method zipfile cannot read, in both its
    local header (flags at +6, method at +8) and its central directory entry (+8, +10)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        headers = [(zf.getinfo(name).header_offset, 6, 8)]
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (length,) = struct.unpack_from("<H", data, at + 28)
        if data[at + 46 : at + 46 + length] == name.encode():
            headers.append((at, 8, 10))
        at = data.find(b"PK\x01\x02", at + 4)
    for start, flags_at, method_at in headers:
        if encrypted:
            (flags,) = struct.unpack_from("<H", data, start + flags_at)
            struct.pack_into("<H", data, start + flags_at, flags | 1)
        if method is not None:
            struct.pack_into("<H", data, start + method_at, method)
    path.write_bytes(bytes(data))


def test_archive_members_that_cannot_be_read(tmp_path: Path) -> None:
    src = tmp_path / "data.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("data.jsonl", "".join(json.dumps(row(i, image=f"{i}.png")) + "\n" for i in range(3)))
        for i in range(3):
            zf.writestr(f"{i}.png", png())
    _flag_zip_member(src, "1.png", encrypted=True)
    _flag_zip_member(src, "2.png", method=99)  # AES: not supported by zipfile
    got = prepare(src, tmp_path / "out")
    assert [r["id"] for r in got["rows"]] == ["r0"]
    assert [r["reason"] for r in got["rejected"]] == ["corrupt_image", "corrupt_image"]
    assert "encrypted" in got["rejected"][0]["detail"]
    # the data file itself unreadable: one line, before any row
    _flag_zip_member(src, "data.jsonl", encrypted=True)
    one_line_error(run_satori("data", "prepare", str(src), "--out", str(tmp_path / "o2")), match="data.jsonl")


def test_archive_bomb_is_capped_and_unreferenced_members_are_not_extracted(tmp_path: Path) -> None:
    src = tmp_path / "bomb.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.jsonl", json.dumps(row(0, image="img.png")) + "\n")
        zf.writestr("img.png", png())
        zf.writestr("padding.bin", b"\x00" * (40 << 20))  # 40 MiB of zeros, ~40 KiB zipped
    assert src.stat().st_size < 1 << 20
    out = tmp_path / "out"
    got = prepare(src, out, "--max-extract-gb", "0.01")  # 10 MiB: enough for what rows use
    assert got["summary"]["written"] == 1
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 1 << 20
    # a row that uses the big member: the cap stops the run before 10 MiB are written
    with zipfile.ZipFile(src, "a") as zf:
        zf.writestr("more.jsonl", json.dumps(row(1, image="padding.bin")) + "\n")
    err = prepare(src, tmp_path / "o2", "--max-extract-gb", "0.01", code=2)
    assert "more than" in err and "--max-extract-gb" in err
    assert sum(p.stat().st_size for p in (tmp_path / "o2").rglob("*") if p.is_file()) < 11 << 20


def test_out_paths_that_cannot_be_used(tmp_path: Path) -> None:
    src = raw_folder(tmp_path / "raw", [row(0)])
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    one_line_error(run_satori("data", "prepare", str(src), "--out", str(a_file)), match="is a file")
    one_line_error(run_satori("data", "prepare", str(src), "--out", str(a_file / "x")), match="is a file")
    one_line_error(
        run_satori("data", "prepare", str(src), "--out", str(tmp_path / ("x" * 300))), match="not writable"
    )
    assert a_file.read_text() == "keep me"
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        done = run_satori("data", "prepare", str(src), "--out", str(read_only))
        if os.geteuid() == 0:  # permissions do not bind root: the run succeeds
            assert done.returncode == 0 and adds_up(read_only)["summary"]["written"] == 1
        else:
            one_line_error(done, match="not writable")
    finally:
        read_only.chmod(0o755)


def test_existing_files_satori_did_not_write_are_not_replaced(tmp_path: Path) -> None:
    src = raw_folder(tmp_path / "raw", [row(0)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("my own file\n")
    one_line_error(run_satori("data", "prepare", str(src), "--out", str(out)), match="--overwrite")
    assert (out / "train.jsonl").read_text() == "my own file\n"
    prepare(src, out, "--overwrite")
    prepare(src, out)  # now it is ours: a second run needs no flag
    (out / "val.jsonl").write_text("edited by hand\n")
    one_line_error(run_satori("data", "prepare", str(src), "--out", str(out)), match="val.jsonl")
    assert (out / "val.jsonl").read_text() == "edited by hand\n"


def test_stale_scratch_is_cleaned_only_when_its_process_is_gone(tmp_path: Path) -> None:
    src = raw_folder(tmp_path / "raw", [row(0)])
    out = tmp_path / "out"
    prepare(src, out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [out / f".rows.partial-{dead.pid}", out / f".train.jsonl.partial-{dead.pid}"]
    for path in stale:
        path.write_text("half")
    (out / f".unpack-{dead.pid}").mkdir()
    (out / f".unpack-{dead.pid}" / "x.png").write_bytes(png())
    (out / "images" / f".{'a' * 32}.png.{dead.pid}.partial").write_bytes(b"half")
    keep = [out / f".rows.partial-{os.getpid()}", out / ".rows.partial-x", out / "notes.partial-1"]
    for path in keep:
        path.write_text("keep")
    prepare(src, out)
    assert not [p for p in stale if p.exists()] and not (out / f".unpack-{dead.pid}").exists()
    assert not list((out / "images").glob(".*"))
    assert all(p.read_text() == "keep" for p in keep)


SIGTERM_CHILD = """
import os, signal, sys
import satori_cli.data.prepare as prepare
real = prepare.prepare_dataset
def at_row(*args, progress=None, **kwargs):
    def hook(done, total):
        progress(done, total)
        if done >= 256:
            os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, progress=hook, **kwargs)
prepare.prepare_dataset = at_row
from satori_cli.app import main
main(sys.argv[1:])
"""


def test_sigterm_ends_prepare_in_one_line_and_leaves_no_scratch(tmp_path: Path) -> None:
    src = raw_folder(tmp_path / "raw", [row(i) for i in range(600)])
    out = tmp_path / "out"
    prepare(src, out, "--val-ratio", "0.1")
    before = snapshot(*(out / n for n in ("train.jsonl", "val.jsonl", "rejected.jsonl")))
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_CHILD, "data", "prepare", str(src), "--out", str(out)],
        env=satori_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    one_line_error(done, 143, "SIGTERM")
    assert snapshot(*before) == before
    assert sorted(p.name for p in out.glob(".*")) == [MANIFEST]


# -- sample, sample-bench, inspect --out: never over a file satori did not write ----------
def test_sample_bench_never_replaces_what_it_did_not_write(tmp_path: Path) -> None:
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    one_line_error(run_satori("data", "sample-bench", "--out", str(victim)), match="--overwrite")
    assert victim.read_text() == "root:x:0:0\n"
    link = tmp_path / "null.tsv"
    link.symlink_to("/dev/null")
    fifo = tmp_path / "fifo.tsv"
    os.mkfifo(fifo)
    for special in (link, fifo, tmp_path):
        done = run_satori("data", "sample-bench", "--out", str(special), "--overwrite", timeout=30)
        one_line_error(done)
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    one_line_error(run_satori("data", "sample-bench", "--out", str(victim / "x.tsv")), match="is a file")
    # what it wrote itself it may replace; with --overwrite, the user's file too
    ours = tmp_path / "lmu" / "TinyBench.tsv"
    for _ in range(2):
        assert run_satori("data", "sample-bench", "--out", str(ours)).returncode == 0
    assert run_satori("data", "sample-bench", "--out", str(victim), "--overwrite").returncode == 0
    assert victim.read_text().startswith("index\t")


def test_sample_never_replaces_what_it_did_not_write(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line_error(run_satori("data", "sample", "--out", str(a_file / "x"), "--rows", "2"), match="is a file")
    out = tmp_path / "raw"
    out.mkdir()
    (out / "data.jsonl").write_text("mine\n")
    (out / "vqa-verify-sample").mkdir()  # a folder of the user's with the archive's inner name
    (out / "vqa-verify-sample" / "keep.txt").write_text("keep")
    one_line_error(run_satori("data", "sample", "--out", str(out), "--rows", "2"), match="data.jsonl")
    assert (out / "data.jsonl").read_text() == "mine\n"
    assert run_satori("data", "sample", "--out", str(out), "--rows", "2", "--format", "zip").returncode == 0
    assert (out / "vqa-verify-sample" / "keep.txt").read_text() == "keep"
    for _ in range(2):  # its own files it replaces (make demo twice)
        assert (
            run_satori("data", "sample", "--out", str(out), "--rows", "2", "--format", "zip").returncode == 0
        )
    assert run_satori("data", "sample", "--out", str(out), "--rows", "2", "--overwrite").returncode == 0
    assert len(read_jsonl(out / "data.jsonl")) == 2


def test_inspect_sheet_never_replaces_what_it_did_not_write(tmp_path: Path) -> None:
    src = raw_folder(tmp_path / "raw", [row(0)])
    out = tmp_path / "out"
    prepare(src, out)
    photo = tmp_path / "holiday.png"
    photo.write_bytes(png(8, 8, "blue"))
    one_line_error(run_satori("data", "inspect", str(out), "--out", str(photo)), match="--overwrite")
    assert photo.read_bytes() == png(8, 8, "blue")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    one_line_error(run_satori("data", "inspect", str(out), "--out", str(fifo), "--overwrite", timeout=30))
    for _ in range(2):  # the default sheet is its own
        assert run_satori("data", "inspect", str(out)).returncode == 0


# -- limits too large to build in a test, checked at the library level with the limit lowered --
def test_a_line_over_the_row_cap_is_rejected_unread(tmp_path: Path, monkeypatch) -> None:
    from satori_cli.data import readers
    from satori_cli.data.prepare import prepare_dataset

    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 4096)
    src = raw_folder(tmp_path / "raw", [row(0), row(1, notes="n" * 10_000), row(2)])
    result = prepare_dataset(src, tmp_path / "out")
    assert (result.written, dict(result.rejected)) == (2, {"over_limit": 1})
    rejected = read_jsonl(result.rejected_path)
    assert rejected[0]["row"] == "data.jsonl:1" and "MiB" in rejected[0]["detail"]


def test_tar_archives_extract_only_what_rows_use_under_the_cap(tmp_path: Path, monkeypatch) -> None:
    import tarfile

    from satori_cli.data import archives
    from satori_cli.data.prepare import prepare_dataset
    from satori_cli.errors import SatoriError

    folder = tmp_path / "src"
    folder.mkdir()
    rows = [row(0, image="img.png"), row(1, image="huge.png"), row(2, image="link.png")]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "img.png").write_bytes(png())
    (folder / "huge.png").write_bytes(b"\x00" * (3 << 20))
    (folder / "unused.bin").write_bytes(b"\x00" * (8 << 20))
    src = tmp_path / "data.tar.gz"
    with tarfile.open(src, "w:gz") as tf:
        for name in ("data.jsonl", "img.png", "huge.png", "unused.bin"):
            tf.add(folder / name, name)
        link = tarfile.TarInfo("link.png")  # a link is never extracted, so never followed
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    # 2 MiB is enough: the 8 MiB member no row uses is never extracted, and an image member over
    # the per-image limit (lowered to 1 MiB here) rejects its row without being extracted
    monkeypatch.setattr(archives, "MAX_IMAGE_MEMBER", 1 << 20)
    result = prepare_dataset(src, tmp_path / "out", max_extract_bytes=2 << 20)
    assert result.written == 1 and result.rejected == {"corrupt_image": 1, "missing_image": 1}
    assert "too large" in read_jsonl(result.rejected_path)[0]["detail"]
    monkeypatch.undo()  # now huge.png (3 MiB) must be extracted: over the 2 MiB cap, nothing is written
    with pytest.raises(SatoriError, match="more than"):
        prepare_dataset(src, tmp_path / "out2", max_extract_bytes=2 << 20)
    assert not (tmp_path / "out2" / "train.jsonl").exists()
    assert not list((tmp_path / "out2").glob(".unpack-*"))


def test_special_files_are_never_opened(tmp_path: Path) -> None:
    from satori_cli.data.prepare import prepare_dataset
    from satori_cli.errors import SatoriError

    raw = tmp_path / "raw"
    raw_folder(raw, [row(0)])
    os.mkfifo(raw / "blocked.jsonl")  # a FIFO named like data: opening it would block forever
    assert prepare_dataset(raw, tmp_path / "out").written == 1
    with pytest.raises(SatoriError, match="not a regular file"):
        prepare_dataset(raw / "blocked.jsonl", tmp_path / "out2")
