"""It learns: a short cold-start SFT teaches the miniature SATORI's format on rows it never saw.

Held-out rows (another sample seed) are answered greedily by `satori eval --data` (the grounding
benchmark, scored by the training rewards) in the run's pixel budget, asked as in training
(benchmarks/learn.py, the `make learn` recipe with half its SFT rows: 200 steps of 8, about 4 minutes
on 2 cores). Measured: held-out format 0 -> 1.0, caption 0 -> 0.55. With 100 steps of 8 the
miniature still wrote `[[5,5,5,5,5,1]]` and stopped after `<answer>` (format 0), so this is about
the shortest run that shows it. A wrong prompt, template or target would leave the format at zero.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from satori_cli.train.recipe import resolve_recipe

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SFT_STEPS, SFT_BATCH = 200, 8  # the preset's 200 x 16 rows, halved to fit CI
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
