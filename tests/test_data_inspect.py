"""`satori data inspect`: statistics, and a contact sheet whose boxes are where the data says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
    done = satori("data", "inspect", str(prepared), "--samples", "4")
    assert done.returncode == 0, done.stderr
    assert "synthetic-shapes" in done.stdout and "boxes per row" in done.stdout
    sheet = prepared / "contact_sheet.png"
    assert sheet.is_file() and Image.open(sheet).size[0] > 400
    done = satori("data", "inspect", str(prepared / "nothing"))
    assert done.returncode == 2 and done.stderr.startswith("error:")
    json.loads((prepared / "prepare_summary.json").read_text())
