"""`satori data inspect`: statistics, and a contact sheet whose boxes are where the data says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from satori_cli.data.inspect import BOX_COLOR, BOX_WIDTH, contact_sheet, inspect_dataset
from satori_cli.data.prepare import prepare_dataset
from satori_cli.data.sample import write_sample
from satori_cli.errors import SatoriError


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    prepare_dataset(write_sample(tmp_path / "raw", n=20, seed=5), tmp_path / "prep", val_ratio=0.25)
    return tmp_path / "prep"


def test_statistics_count_every_row(prepared: Path) -> None:
    stats, rows = inspect_dataset(prepared, samples=6, seed=0)
    assert stats.files == {"train.jsonl": 15, "val.jsonl": 5} and stats.rows == 20
    assert stats.sources == {"synthetic-shapes": 20}
    assert sum(stats.boxes_per_row.values()) == 20 and set(stats.boxes_per_row) <= {1, 2, 3}
    assert sum(stats.sizes.values()) == 20 and (320, 240) in stats.sizes
    assert sum(stats.caption_words.values()) == 20 and min(stats.caption_words) >= 5
    assert stats.lines == 20 and stats.bad_rows == 0 and not stats.problems
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    assert [r["id"] for r in inspect_dataset(prepared, samples=6, seed=0)[1]] == [r["id"] for r in rows]


def test_contact_sheet_draws_each_box_where_the_data_says(prepared: Path, tmp_path: Path) -> None:
    _, rows = inspect_dataset(prepared, samples=5)
    out = tmp_path / "sheet.png"
    tiles = contact_sheet(rows, out, cell=200, columns=3)
    sheet = Image.open(out).convert("RGB")
    assert len(tiles) == 5
    checked = 0
    for tile in tiles:
        for box in tile.row["bboxs"]:
            x1, y1, x2, y2 = (round(v) for v in tile.to_sheet(box))
            # the outline's corners and edge midpoints are magenta ...
            for px in [
                (x1 + 1, y1 + 1),
                ((x1 + x2) // 2, y1 + 1),
                (x1 + 1, (y1 + y2) // 2),
                (x2 - 1, y2 - 1),
            ]:
                assert sheet.getpixel(px) == BOX_COLOR, (tile.row["id"], box, px)
            checked += 1
        # ... and nothing magenta is drawn where no box is: the tile's far corner from every box
        corner = (tile.x + 1, tile.y + 1)
        if all(tile.to_sheet(b)[0] > corner[0] + BOX_WIDTH + 1 for b in tile.row["bboxs"]):
            assert sheet.getpixel(corner) != BOX_COLOR
    assert checked >= 5


def test_drawn_box_matches_a_known_box_exactly(tmp_path: Path) -> None:
    img = tmp_path / "white.png"
    Image.new("RGB", (400, 200), "white").save(img)
    row = {
        "id": "x",
        "messages": [{"role": "user", "content": "<image>Q?"}],
        "images": [str(img)],
        "bboxs": [[100, 50, 300, 150]],
        "width": 400,
        "height": 200,
        "possible_answers": ["a"],
    }
    (tile,) = contact_sheet([row], tmp_path / "s.png", cell=200)
    assert tile.scale == 0.5
    sheet = Image.open(tmp_path / "s.png").convert("RGB")
    # box [100,50,300,150] at scale 0.5 -> [50,25,150,75] relative to the tile
    assert sheet.getpixel((tile.x + 50, tile.y + 50)) == BOX_COLOR
    assert sheet.getpixel((tile.x + 100, tile.y + 25)) == BOX_COLOR
    assert sheet.getpixel((tile.x + 100, tile.y + 50)) == (255, 255, 255)  # inside: untouched
    assert sheet.getpixel((tile.x + 40, tile.y + 50)) == (255, 255, 255)  # left of it: untouched


def test_inspect_needs_a_prepared_set(tmp_path: Path) -> None:
    with pytest.raises(SatoriError, match=r"no train\.jsonl"):
        inspect_dataset(tmp_path)


def test_cli_inspect(satori, prepared: Path) -> None:
    done = satori("data", "inspect", str(prepared), "--rows", "4")
    assert done.returncode == 0, done.stderr
    assert "synthetic-shapes" in done.stdout and "boxes per row" in done.stdout
    sheet = prepared / "contact_sheet.png"
    assert sheet.is_file() and Image.open(sheet).size[0] > 400
    done = satori("data", "inspect", str(prepared / "nothing"))
    assert done.returncode == 2 and done.stderr.startswith("error:")
    json.loads((prepared / "prepare_summary.json").read_text())


# -- a hand-edited or foreign JSONL: every broken line or field is counted, never a traceback --
BOM = b"\xef\xbb\xbf"
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "id",
    "messages",
    "images",
    "bboxs",
    "width",
    "height",
    "possible_answers",
    "image_caption",
    "source",
]
RAW_LINES = [
    b"{not json",
    b"[1, 2]",
    b'"a string"',
    b"\xff\xfe\x00garbage",
    b'{"id": "\\udc80"}',
    b'{"width": ' + b"9" * 5000 + b"}",
    b"[" * 5000 + b"]" * 5000,
    b'{"messages": NaN, "bboxs": Infinity}',
    b"\x1b[31mred\x1b[0m",
    b"   ",
]


def _base_row(image: Path, i: int) -> dict:
    return {
        "id": f"r{i}",
        "messages": [{"role": "user", "content": "<image>Q?"}],
        "images": [str(image)],
        "bboxs": [[1.0, 1.0, 10.0, 10.0]],
        "width": 64,
        "height": 48,
        "possible_answers": ["a"],
        "image_caption": "c",
        "source": "s",
    }


@st.composite
def jsonl_lines(draw, image: Path) -> bytes:
    lines = []
    for i in range(draw(st.integers(min_value=0, max_value=6))):
        kind = draw(st.sampled_from(["good", "field", "drop", "raw", "bytes"]))
        row = _base_row(image, i)
        if kind == "field":
            row[draw(st.sampled_from(FIELDS))] = draw(json_values)
        elif kind == "drop":
            del row[draw(st.sampled_from(FIELDS))]
        if kind == "raw":
            lines.append(draw(st.sampled_from(RAW_LINES)))
        elif kind == "bytes":
            lines.append(draw(st.binary(max_size=40)).replace(b"\n", b""))
        else:
            lines.append(json.dumps(row, allow_nan=True).encode())
    prefix = draw(st.sampled_from([b"", BOM]))
    return prefix + b"\n".join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


def _non_blank(data: bytes) -> int:
    parts = data.split(b"\n")
    parts[0] = parts[0].removeprefix(BOM)
    return sum(1 for part in parts if part.strip())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_inspect_counts_every_broken_line_and_never_raises(tmp_path: Path, data) -> None:
    image = tmp_path / "img.png"
    if not image.exists():
        Image.new("RGB", (64, 48), "white").save(image)
    content = data.draw(jsonl_lines(image))
    path = tmp_path / "hand.jsonl"
    path.write_bytes(content)
    expected = _non_blank(content)
    if expected == 0:
        with pytest.raises(SatoriError, match="empty"):
            inspect_dataset(path)
        return
    stats, rows = inspect_dataset(path, samples=3)
    assert stats.lines == expected and stats.rows + stats.bad_rows == expected
    assert sum(stats.problems.values()) >= stats.bad_rows
    assert all(places for places in stats.examples.values())
    from satori_cli.commands.data import inspect_table

    inspect_table(stats)  # renders whatever was counted
    if rows:
        contact_sheet(rows, tmp_path / "sheet.png", cell=64, overwrite=True)


def _broken_corpus(folder: Path, image: Path) -> list[Path]:
    """Many small files, each one kind of damage to a good prepared file."""
    good = [_base_row(image, i) for i in range(3)]
    text = "".join(json.dumps(r) + "\n" for r in good)
    variants: dict[str, bytes] = {
        "truncated": text[: len(text) // 2].encode(),
        "crlf": text.replace("\n", "\r\n").encode(),
        "bom": BOM + text.encode(),
        "latin1": text.replace("Q?", "caf\u00e9?").encode("latin-1"),
        "nul": text.replace("Q?", "Q\u0000?").encode(),
        "binary": bytes(range(256)) * 4,
        "no newline": text.rstrip("\n").encode(),
        "blank lines": ("\n\n" + text.replace("\n", "\n\n\n")).encode(),
        "dup ids": (text + json.dumps(good[0]) + "\n").encode(),
        "huge int": text.replace('"width": 64', '"width": ' + "9" * 5000).encode(),
        "deep": (text + "[" * 100_000 + "]" * 100_000 + "\n").encode(),
        "nan": text.replace('"width": 64', '"width": NaN').encode(),
        "ansi": text.replace('"s"', '"\\u001b[2J\\u001b[31m"').encode(),
        "markup": text.replace('"s"', '"[bold][/]"').encode(),
    }
    for i, field in enumerate(FIELDS):
        for j, value in enumerate(
            [None, [], {}, "", 0, -1, True, 1e308, "x" * 10_000, [[]], [[1, 2]], {"a": 1}]
        ):
            rows = [dict(r) for r in good]
            rows[1][field] = value
            variants[f"{field}-{j}"] = "".join(json.dumps(r) + "\n" for r in rows).encode()
        variants[f"no-{field}-{i}"] = "".join(
            json.dumps({k: v for k, v in r.items() if k != field}) + "\n" for r in good
        ).encode()
    paths = []
    for n, (name, content) in enumerate(variants.items()):
        path = folder / f"{n:03d}.jsonl"
        path.write_bytes(content)
        paths.append(path)
        assert name  # every variant is named for debugging
    return paths


def test_a_corpus_of_broken_files_is_reported_not_raised(tmp_path: Path, satori) -> None:
    image = tmp_path / "img.png"
    Image.new("RGB", (64, 48), "white").save(image)
    (tmp_path / "corpus").mkdir()
    corpus = _broken_corpus(tmp_path / "corpus", image)
    assert len(corpus) > 100
    for path in corpus:
        content = path.read_bytes()
        stats, rows = inspect_dataset(path, samples=2)
        assert stats.rows + stats.bad_rows == stats.lines == _non_blank(content), path
        if rows:
            contact_sheet(rows, tmp_path / f"{path.stem}.png", cell=64)
    # and through the CLI: a table, a one-line error, exit 1, no traceback, no escape sequences
    for path in corpus[:: len(corpus) // 6]:
        done = satori(
            "data", "inspect", str(path), "--rows", "2", "--out", str(tmp_path / "s.png"), "--overwrite"
        )
        assert "Traceback" not in done.stdout + done.stderr and "\x1b[2J" not in done.stdout
        if done.returncode:
            assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert "rows with problems" in done.stdout
