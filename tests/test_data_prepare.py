"""`satori data sample` and `prepare`: every raw form, every kind of bad row, column mapping,
the validation split and atomic outputs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from satori_cli.data.prepare import prepare_dataset
from satori_cli.data.sample import FORMS, write_sample
from satori_cli.errors import SatoriError
from satori_cli.outputs import MANIFEST

CONTRACT_KEYS = {"id", "messages", "images", "bboxs", "width", "height", "possible_answers", "image_caption"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def png(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def good_row(i: int = 0, **over) -> dict:
    row = {
        "id": f"r{i}",
        "question": "What color is the square?",
        "answer": "red",
        "image": "img.png",
        "bboxs": [[4, 4, 20, 20]],
        "width": 64,
        "height": 48,
        "image_caption": "A red square.",
        "dataset": "unit",
    }
    row.update(over)
    return row


def write_jsonl(folder: Path, rows: list, name: str = "data.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("form", FORMS)
def test_every_raw_form_prepares_to_contract_rows(tmp_path: Path, form: str) -> None:
    src = write_sample(tmp_path / "raw", n=12, seed=3, form=form)
    result = prepare_dataset(src, tmp_path / "out")
    rows = read_jsonl(result.train_path)
    assert (result.rows_in, result.train_rows, result.rejected_total) == (12, 12, 0)
    assert len(rows) == 12 and result.val_path is None
    for row in rows:
        assert CONTRACT_KEYS <= set(row) <= CONTRACT_KEYS | {"source"}
        assert row["source"] == "synthetic-shapes"
        (turn,) = row["messages"]
        assert turn["role"] == "user" and turn["content"].startswith("<image>")
        assert turn["content"].count("<image>") == 1 and len(turn["content"]) > len("<image>")
        (image,) = row["images"]
        assert Path(image).is_absolute() and Path(image).is_file()
        with Image.open(image) as img:
            assert img.size == (row["width"], row["height"])
        assert isinstance(row["possible_answers"], list) and row["possible_answers"]
        for x1, y1, x2, y2 in row["bboxs"]:
            assert 0 <= x1 < x2 <= row["width"] and 0 <= y1 < y2 <= row["height"]
        if form in ("parquet", "zip", "tar.gz"):  # embedded or archived: copied, named by content hash
            assert Path(image).parent == result.out_dir / "images" and len(Path(image).stem) == 32
    # no partial or scratch files left behind: only the record of what satori wrote there
    assert [p.name for p in result.out_dir.glob(".*")] == [MANIFEST]


def test_sample_is_deterministic_and_varied(tmp_path: Path) -> None:
    a = write_sample(tmp_path / "a", n=40, seed=7).read_text()
    b = write_sample(tmp_path / "b", n=40, seed=7).read_text()
    c = write_sample(tmp_path / "c", n=40, seed=8).read_text()
    assert a == b and a != c
    rows = [json.loads(line) for line in a.splitlines()]
    assert {(r["width"], r["height"]) for r in rows} >= {(320, 240), (500, 375)}
    assert {len(r["bboxs"]) for r in rows} >= {1, 2}
    assert any(r["question"].startswith("How many") for r in rows)
    assert all(r["image_caption"].endswith("on a white background.") for r in rows)


def test_sample_boxes_cover_the_drawn_shapes(tmp_path: Path) -> None:
    src = write_sample(tmp_path, n=10, seed=1)
    for row in read_jsonl(src):
        with Image.open(src.parent / row["image"]) as img:
            rgb = img.convert("RGB")
        for x1, _y1, x2, y2 in row["bboxs"]:
            centre = rgb.getpixel((int((x1 + x2) / 2), int(y2) - 2))  # bottom centre is inside every shape
            assert centre != (255, 255, 255)
            if x1 >= 1:
                assert rgb.getpixel((int(x1) - 1, int(y2) - 1)) == (255, 255, 255)


def test_width_and_height_are_read_from_the_image_when_absent(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "img.png").write_bytes(png(64, 48))
    row = good_row()
    del row["width"], row["height"]
    result = prepare_dataset(write_jsonl(tmp_path / "raw", [row]), tmp_path / "out")
    (out,) = read_jsonl(result.train_path)
    assert (out["width"], out["height"]) == (64, 48)
    assert out["images"] == [str((tmp_path / "raw" / "img.png").resolve())]  # paths are not copied


HOSTILE = {
    "missing_image": good_row(image="nope.png"),
    "corrupt_image": good_row(image="garbage.png"),
    "corrupt_image ": good_row(image="truncated.png"),
    "multiple_images": good_row(image=["img.png", "img.png"]),
    "box_arity": good_row(bboxs=[[1, 2, 3]]),
    "box_arity ": good_row(bboxs=[[1, 2, 3, 4, 5]]),
    "box_zero_area": good_row(bboxs=[[4, 4, 4, 20]]),
    "box_inverted": good_row(bboxs=[[20, 4, 4, 20]]),
    "box_outside_image": good_row(bboxs=[[4, 4, 65, 20]]),
    "box_outside_image ": good_row(bboxs=[[-1, 4, 10, 20]]),
    "non_numeric": good_row(bboxs=[[4, "a", 20, 20]]),
    "non_numeric ": good_row(bboxs=[[4, 4, True, 20]]),
    "non_numeric  ": good_row(width="wide"),
    "missing_boxes": good_row(bboxs=[]),
    "missing_question": good_row(question="  <image> "),
    "missing_answer": good_row(answer=["", "  "]),
    "missing_caption": good_row(image_caption=""),
    "size_mismatch": good_row(width=640),
    "aspect_ratio": good_row(image="thin.png", width=402, height=2, bboxs=[[0, 0, 10, 1]]),
    "malformed_row": "{not json",
}


def _hostile_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "img.png").write_bytes(png())
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    (folder / "truncated.png").write_bytes(png(200, 200, "blue")[:200])
    (folder / "thin.png").write_bytes(png(402, 2))
    rows = [good_row(0), *HOSTILE.values(), good_row(99, bboxs=[4, 4, 20, 20])]  # flat box = one box
    rows.append(json.dumps(["a list, not an object"]))
    return write_jsonl(folder, rows)


def test_every_kind_of_bad_row_is_rejected_with_its_reason(tmp_path: Path) -> None:
    result = prepare_dataset(_hostile_folder(tmp_path / "raw"), tmp_path / "out")
    written = read_jsonl(result.train_path)
    assert [r["id"] for r in written] == ["r0", "r99"]
    assert written[1]["bboxs"] == [[4.0, 4.0, 20.0, 20.0]]
    rejected = read_jsonl(result.rejected_path)
    expected = [reason.strip() for reason in HOSTILE] + ["malformed_row"]
    assert [r["reason"] for r in rejected] == expected
    assert all(r["row"].startswith("data.jsonl:") and r["detail"] for r in rejected)
    assert result.rows_in == result.written + result.rejected_total == len(expected) + 2
    summary = json.loads(result.summary_path.read_text())
    assert summary["rejected_by_reason"]["corrupt_image"] == 2
    assert summary["rows_in"] == summary["written"] + summary["rejected"]


def test_strict_fails_on_the_first_bad_row_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(SatoriError, match=r"row data\.jsonl:1 rejected: missing_image"):
        prepare_dataset(_hostile_folder(tmp_path / "raw"), tmp_path / "out", strict=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["images"]  # and no scratch


def test_a_failed_prepare_stops_its_converter_threads_before_it_raises(tmp_path: Path) -> None:
    """The caller's cleanup (train removes the run folder it made) must not race image
    conversions still running: the pool is shut down before the error leaves prepare."""
    import threading

    rows = [good_row(0, bboxs="nonsense"), *(good_row(i) for i in range(1, 64))]
    raw = write_jsonl(tmp_path / "raw", rows)
    Image.open(io.BytesIO(png())).save(tmp_path / "raw" / "img.png")
    before = set(threading.enumerate())
    with pytest.raises(SatoriError, match="rejected") as caught:  # held, as a caller's handler holds it
        prepare_dataset(raw, tmp_path / "out", strict=True, workers=2)
    assert not [t.name for t in set(threading.enumerate()) - before if t.name.startswith("satori-prepare")], (
        caught
    )


def test_column_mapping_and_unknown_columns(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "pic.png").write_bytes(png())
    row = {
        "prompt_text": "Which colour?",
        "gold": ["red", "crimson"],
        "file": "pic.png",
        "regions": [[1, 1, 9, 9]],
        "desc": "A red picture.",
        "key": 17,
    }
    src = write_jsonl(tmp_path / "raw", [row])
    mapping = ["question=prompt_text", "answer=gold", "image=file", "bboxs=regions", "caption=desc", "id=key"]
    result = prepare_dataset(src, tmp_path / "out", columns=mapping)
    (out,) = read_jsonl(result.train_path)
    assert out["id"] == "17" and out["possible_answers"] == ["red", "crimson"]
    assert (
        out["messages"][0]["content"] == "<image>Which colour?" and out["image_caption"] == "A red picture."
    )
    # without the mapping, nothing is recognised and every row says why
    bare = prepare_dataset(src, tmp_path / "out2")
    assert bare.written == 0 and bare.rejected == {"missing_question": 1}
    with pytest.raises(SatoriError, match="no such column"):
        prepare_dataset(src, tmp_path / "out3", columns=["question=nothing_like_it"])
    with pytest.raises(SatoriError, match="unknown field"):
        prepare_dataset(src, tmp_path / "out3", columns=["colour=gold"])
    with pytest.raises(SatoriError, match="FIELD=COLUMN"):
        prepare_dataset(src, tmp_path / "out3", columns=["question"])


def test_usual_column_names_are_detected(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "img.png").write_bytes(png())
    row = {"query": "Q?", "solution": 3, "image_path": "img.png", "boxes": [[1, 1, 9, 9]], "caption": "C."}
    result = prepare_dataset(write_jsonl(tmp_path / "raw", [row]), tmp_path / "out")
    (out,) = read_jsonl(result.train_path)
    assert out["possible_answers"] == ["3"] and out["messages"][0]["content"] == "<image>Q?"


def test_ms_swift_rows_pass_through_after_validation(tmp_path: Path) -> None:
    first = prepare_dataset(write_sample(tmp_path / "raw", n=8, form="parquet"), tmp_path / "once")
    again = prepare_dataset(first.train_path, tmp_path / "twice")
    assert read_jsonl(again.train_path) == read_jsonl(first.train_path)
    # and a swift row with a bad box is still caught
    bad = read_jsonl(first.train_path)[0]
    bad["bboxs"] = [[0, 0, bad["width"] + 5, 10]]
    third = prepare_dataset(write_jsonl(tmp_path / "swift", [bad]), tmp_path / "thrice")
    assert third.rejected == {"box_outside_image": 1}


def test_val_split_is_exact_and_seeded(tmp_path: Path) -> None:
    src = write_sample(tmp_path / "raw", n=50)
    a = prepare_dataset(src, tmp_path / "a", val_ratio=0.2, seed=1)
    b = prepare_dataset(src, tmp_path / "b", val_ratio=0.2, seed=1)
    c = prepare_dataset(src, tmp_path / "c", val_ratio=0.2, seed=2)
    ids = lambda r: [row["id"] for row in read_jsonl(r.val_path)]  # noqa: E731
    assert (a.train_rows, a.val_rows) == (40, 10)
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert not set(ids(a)) & {row["id"] for row in read_jsonl(a.train_path)}
    # a later run without a split removes the stale val.jsonl
    prepare_dataset(src, tmp_path / "a")
    assert not (tmp_path / "a" / "val.jsonl").exists()


def test_hostile_archive_members_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("data.jsonl", json.dumps(good_row()) + "\n")
        zf.writestr("../../escaped.png", png())
    with pytest.raises(SatoriError, match="outside the folder"):
        prepare_dataset(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.png").exists()
    # an image path inside the data that climbs out of the archive is a rejected row
    (tmp_path / "secret.png").write_bytes(png())
    sneaky = tmp_path / "sneaky.zip"
    with zipfile.ZipFile(sneaky, "w") as zf:
        zf.writestr("d/data.jsonl", json.dumps(good_row(image="../../../secret.png")) + "\n")
    result = prepare_dataset(sneaky, tmp_path / "out2")
    assert result.rejected == {"image_outside_archive": 1}


# A child that prepares and kills itself with SIGKILL once N rows are written (from the
# progress hook, so the moment is exact: no sleeping, no racing the writer).
KILL_CHILD = """
import os, signal, sys
from satori_cli.data.prepare import prepare_dataset
def hook(done, total):
    if done >= int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
prepare_dataset(sys.argv[1], sys.argv[2], val_ratio=0.25, progress=hook, workers=2)
"""


@pytest.mark.parametrize("form", ["jsonl", "zip"])
def test_interrupted_run_leaves_no_partial_jsonl(tmp_path: Path, form: str) -> None:
    """SIGKILL in the middle: the previous outputs stay intact, nothing appears half-written,
    and the next run removes the dead run's scratch (only that) and finishes."""
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "images" / "img.png").write_bytes(png())
    src = write_jsonl(raw, [good_row(i, image="images/img.png") for i in range(2_000)])
    if form == "zip":
        src = tmp_path / "raw.zip"
        with zipfile.ZipFile(src, "w") as zf:
            zf.write(raw / "data.jsonl", "data.jsonl")
            zf.write(raw / "images" / "img.png", "images/img.png")
    out = tmp_path / "out"
    prepare_dataset(src, out, val_ratio=0.25)  # the previous run
    before = {name: (out / name).read_bytes() for name in ("train.jsonl", "val.jsonl", "rejected.jsonl")}
    live = out / f".train.jsonl.partial-{os.getpid()}"  # a live process's scratch: never touched
    live.write_text("mine")
    (out / ".notes.partial").write_text("not ours")  # not our name: never touched

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", KILL_CHILD, str(src), str(out), "640"], env=env, timeout=120)
    assert done.returncode == -signal.SIGKILL
    left = sorted(p.name for p in out.glob(".*.partial-*") if p != live) + [
        p.name for p in out.glob(".unpack-*")
    ]
    assert any(name.startswith(".rows.partial-") for name in left), left
    assert any(name.startswith(".unpack-") for name in left) == (form == "zip"), left
    assert {name: (out / name).read_bytes() for name in before} == before

    result = prepare_dataset(src, out, val_ratio=0.25)
    assert (result.train_rows, result.val_rows) == (1_500, 500)
    assert not [p for p in out.iterdir() if p.name in left]
    assert live.read_text() == "mine" and (out / ".notes.partial").read_text() == "not ours"


def test_missing_source_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(SatoriError, match="no such file"):
        prepare_dataset(tmp_path / "absent", tmp_path / "out")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(SatoriError, match="not a data file"):
        prepare_dataset(tmp_path / "notes.txt", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SatoriError, match=r"no \.parquet"):
        prepare_dataset(tmp_path / "empty", tmp_path / "out")


def test_cli_sample_then_prepare(satori, tmp_path: Path) -> None:
    done = satori("data", "sample", "--out", str(tmp_path / "raw"), "--rows", "10", "--format", "parquet")
    assert done.returncode == 0, done.stderr
    done = satori(
        "data",
        "prepare",
        str(tmp_path / "raw" / "data.parquet"),
        "--out",
        str(tmp_path / "out"),
        "--val-ratio",
        "0.2",
    )
    assert done.returncode == 0, done.stderr
    assert "written" in done.stdout and "train 8, val 2" in done.stdout
    assert len(read_jsonl(tmp_path / "out" / "val.jsonl")) == 2


def test_cli_errors_are_one_line(satori, tmp_path: Path) -> None:
    done = satori("data", "prepare", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.startswith("error:") and len(done.stderr.splitlines()) == 1
    src = _hostile_folder(tmp_path / "raw")
    done = satori("data", "prepare", str(src), "--out", str(tmp_path / "o2"), "--strict")
    assert done.returncode == 2 and "missing_image" in done.stderr and "Traceback" not in done.stderr
    done = satori("data", "prepare", str(src), "--out", str(tmp_path / "o3"), "--column", "question=zzz")
    assert done.returncode == 2 and "no such column" in done.stderr
