"""It learns: a short cold-start SFT teaches the miniature SATORI's format on rows it never saw.

Held-out rows (another sample seed) are answered greedily by `satori eval --data` (the grounding
benchmark, scored by the training rewards) in the run's pixel budget, asked as in training
(benchmarks/learn.py; the `make learn` SFT's 1,600 rows as 200 steps of 8, about 4 minutes on 2
cores). Measured: held-out format 0 -> 1.0, caption 0 -> 0.55. With 100 steps of 8 the
miniature still wrote `[[5,5,5,5,5,1]]` and stopped after `<answer>` (format 0), so this is about
the shortest run that shows it. A wrong prompt, template or target would leave the format at zero.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from satori_cli.train.recipe import resolve_recipe

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SFT_STEPS, SFT_BATCH = 200, 8  # the preset's 100 x 16 rows, in smaller steps
TRAIN_ROWS, HELDOUT_ROWS = 320, 16


@pytest.fixture(scope="module")
def learn():
    spec = importlib.util.spec_from_file_location("learn_bench", REPO / "benchmarks" / "learn.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["learn_bench"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("learn_bench", None)


def test_a_short_sft_teaches_the_format_on_held_out_rows(satori, tmp_path, learn):
    model = tmp_path / "model"
    built = satori(
        "tiny-model", "--hidden-size", str(learn.HIDDEN), "--layers", str(learn.LAYERS), "--out", str(model)
    )
    assert built.returncode == 0, built.stderr
    for name, n, seed in (("train", TRAIN_ROWS, 0), ("heldout", HELDOUT_ROWS, 1)):
        raw_dir = tmp_path / f"{name}-raw"
        made = satori("data", "sample", "--out", str(raw_dir), "--rows", str(n), "--seed", str(seed))
        assert made.returncode == 0, made.stderr
        raw = tmp_path / f"{name}-raw" / "data.jsonl"
        prepared = satori("data", "prepare", str(raw), "--out", str(tmp_path / name))
        assert prepared.returncode == 0, prepared.stderr
    heldout = tmp_path / "heldout" / "train.jsonl"
    budget = resolve_recipe("learn").budget

    before = learn.measure(model, heldout, tmp_path / "eval-before", budget)
    assert before["format"] <= 0.1  # random weights: noise, never the format

    run = tmp_path / "sft"
    steps = ("--max_steps", str(SFT_STEPS), "--save_steps", str(SFT_STEPS))
    steps += ("--per_device_train_batch_size", str(SFT_BATCH))
    train = tmp_path / "train" / "train.jsonl"
    done = satori(
        "train", "--preset", "learn", "--stage", "sft", "--model", str(model), "--data", str(train),
        "-o", str(run), "--", *steps,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    after = learn.measure(run, heldout, tmp_path / "eval-after")
    assert after["format"] >= 0.5, after
    assert after["caption"] >= before["caption"] + 0.3, (before, after)


def test_the_blank_image_control_keeps_every_row_and_blanks_only_the_image(tmp_path, learn):
    """The control that tells reading the picture from the language prior: same rows, white images."""
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (50, 30), (200, 10, 10)).save(src / "a.png")
    row = {"id": "r1", "images": [str(src / "a.png")], "width": 50, "height": 30, "bboxs": [[1, 2, 3, 4]]}
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(row) + "\n")
    out = learn.blank_copy(rows, tmp_path / "blank")
    (copy,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert {k: v for k, v in copy.items() if k != "images"} == {k: v for k, v in row.items() if k != "images"}
    with Image.open(copy["images"][0]) as img:
        assert img.size == (50, 30) and img.convert("RGB").getcolors() == [(1500, (255, 255, 255))]
    with Image.open(src / "a.png") as img:
        assert img.getpixel((0, 0)) == (200, 10, 10)  # the original is untouched


def test_the_vision_gap_diagnostic_trains_and_measures_both_ways(tiny_model, tmp_path, satori):
    """benchmarks/vision_gap.py (README "It learns" quotes it): two steps on the tiny model print the
    held-out loss with the real and the blank images, and their difference."""
    assert satori("data", "sample", "--out", str(tmp_path / "raw"), "--rows", "6").returncode == 0
    assert (
        satori(
            "data", "prepare", str(tmp_path / "raw" / "data.jsonl"), "--out", str(tmp_path / "d")
        ).returncode
        == 0
    )
    rows = tmp_path / "d" / "train.jsonl"
    script = REPO / "benchmarks" / "vision_gap.py"
    args = ["--model", str(tiny_model), "--data", str(rows), "--steps", "2", "--every", "1", "--batch", "2"]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--held-out", "2"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in lines] == ["step 1", "step 2"]
    for line in lines:
        real, blank, gap = (float(x) for x in re.findall(r"(?:loss|images|gap) ([-+]?\d+\.\d+)", line)[1:])
        assert real > 0 and blank > 0 and abs(gap - (blank - real)) < 2e-4, line
        assert real != blank, line  # the blank images reach the model (random weights: a small gap)
