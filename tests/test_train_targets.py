"""Gold SFT completions: the rewards give them full marks, in the frame the bbox reward assumes."""

from __future__ import annotations

import json
import statistics

import pytest

from satori_cli.data.prepare import prepare_dataset
from satori_cli.data.sample import write_sample
from satori_cli.errors import SatoriError
from satori_cli.grammar import format_completion, parse
from satori_cli.pixels import PAPER_BUDGET, PixelBudget
from satori_cli.rewards import score_all
from satori_cli.train.recipe import resolve_recipe
from satori_cli.train.rundata import gold_completion, sft_row, write_sft_jsonl

SMOKE = resolve_recipe("smoke").budget
LEARN = resolve_recipe("learn").budget
BUDGETS = {"paper": PAPER_BUDGET, "smoke": SMOKE, "learn": LEARN}
# Sizes that are not multiples of 28 (and one that is), wide and tall.
ODD_SIZES = [(333, 251), (97, 530), (1001, 77), (448, 448)]


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    """Prepared rows: the sample generator's own sizes (320x240, 500x375, 640x480, 448x448) and odd ones."""
    base = tmp_path_factory.mktemp("gold")
    out = []
    sources = [("mixed", None, 160)] + [(f"{w}x{h}", (w, h), 24) for w, h in ODD_SIZES]
    for name, size, n in sources:
        raw = write_sample(base / name / "raw", n=n, seed=7, size=size)
        prepared = prepare_dataset(raw, base / name / "prepared")
        for line in prepared.train_path.read_text().splitlines():
            row = json.loads(line)
            out.append({**row, "id": f"{name}/{row['id']}"})
    assert {(r["width"], r["height"]) for r in out} >= {(320, 240), (500, 375), (640, 480), *ODD_SIZES}
    return out


def scores(completions: list[str], rows: list[dict], budget: PixelBudget) -> dict[str, list[float]]:
    names = ("bboxs", "width", "height", "possible_answers", "image_caption")
    return score_all(completions, budget=budget, **{k: [r[k] for r in rows] for k in names})


def rounding_bound(row: dict, budget: PixelBudget) -> float:
    """The lowest union IoU that moving every edge by up to half a resized pixel can give:
    area of the union of the boxes shrunk by that much over the area of them grown by it."""
    from shapely import box, union_all

    in_h, in_w = budget.resized_hw(row["height"], row["width"])
    dx, dy = 0.5 * row["width"] / in_w, 0.5 * row["height"] / in_h
    inner = union_all([box(x1 + dx, y1 + dy, x2 - dx, y2 - dy) for x1, y1, x2, y2 in row["bboxs"]])
    outer = union_all([box(x1 - dx, y1 - dy, x2 + dx, y2 + dy) for x1, y1, x2, y2 in row["bboxs"]])
    return inner.area / outer.area


@pytest.mark.parametrize("name", list(BUDGETS))
def test_gold_completions_score_full_marks(rows, name):
    budget = BUDGETS[name]
    gold = [gold_completion(r, budget) for r in rows]
    s = scores(gold, rows, budget)
    assert s["external_format"] == [1.0] * len(rows)
    assert s["extern_vqa_acc"] == [1.0] * len(rows)
    assert s["external_caption_acc"] == pytest.approx([1.0] * len(rows))
    for completion in gold:  # whole pixels, inside the resized image
        assert all(float(v).is_integer() for b in parse(completion).boxes for v in b), completion
    for row, completion, iou in zip(rows, gold, s["external_bbox_acc"], strict=True):
        in_h, in_w = budget.resized_hw(row["height"], row["width"])
        assert all(0 <= b[0] <= b[2] <= in_w and 0 <= b[1] <= b[3] <= in_h for b in parse(completion).boxes)
        # Whole pixels cost at most half a resized pixel per edge; nothing else is lost.
        assert iou >= rounding_bound(row, budget) - 1e-9, (row["id"], completion)
    if name == "paper":  # the paper's budget, the sample's own sizes: boxes of 48 to 260 pixels
        ious = zip(rows, s["external_bbox_acc"], strict=True)
        own = [iou for r, iou in ious if r["id"].startswith("mixed")]
        assert len(own) == 160 and statistics.mean(own) >= 0.99 and min(own) >= 0.95


@pytest.mark.parametrize("name", list(BUDGETS))
def test_the_frame_is_exact_before_rounding(rows, name):
    """The same mapping without rounding to whole pixels scores IoU 1: the frame is the reward's."""
    budget = BUDGETS[name]
    exact = [  # full float precision (format_boxes would keep 6 significant digits)
        f"<caption>c</caption> <bbox>{json.dumps(budget.to_resized(r['bboxs'], r['width'], r['height']))}"
        "</bbox> <answer>x</answer>"
        for r in rows
    ]
    assert min(scores(exact, rows, budget)["external_bbox_acc"]) >= 0.999999


def test_boxes_in_original_pixels_would_score_low(rows):
    """The test can tell frames apart: original-pixel boxes are far off under a small budget."""
    wrong = [format_completion(r["image_caption"], r["bboxs"], r["possible_answers"][0]) for r in rows]
    assert statistics.mean(scores(wrong, rows, SMOKE)["external_bbox_acc"]) < 0.2


def test_sft_jsonl_keeps_the_prompt_and_adds_the_gold_turn(rows, tmp_path):
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows[:5]) + "\n")
    out = write_sft_jsonl(src, tmp_path / "sft" / "train.jsonl", SMOKE)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == 5
    for row, sft in zip(rows, written, strict=False):
        assert sft["messages"][:-1] == row["messages"] and sft["images"] == row["images"]
        assert sft["messages"][-1] == {"role": "assistant", "content": gold_completion(row, SMOKE)}
        assert sft["bboxs"] == row["bboxs"]  # the reward columns stay: the file can be scored
    again = sft_row({**rows[0], "messages": written[0]["messages"]}, SMOKE)
    assert [m["role"] for m in again["messages"]] == ["user", "assistant"]  # never two answers


def test_first_accepted_answer_and_doctest_values():
    row = {"image_caption": " c ", "possible_answers": ["2", "two"], "bboxs": [[0, 0, 320, 240]]}
    row.update(width=320, height=240)
    # 320x240 under the smoke budget is seen as 112x84: the whole image is [[0,0,112,84]].
    expected = "<caption>c</caption> <bbox>[[0,0,112,84]]</bbox> <answer>2</answer>"
    assert gold_completion(row, SMOKE) == expected


def test_other_grammars():
    row = {
        "image_caption": "c",
        "possible_answers": ["2"],
        "bboxs": [[0, 0, 320, 240]],
        "width": 320,
        "height": 240,
    }
    assert gold_completion(row, SMOKE, "nocap") == "<bbox>[[0,0,112,84]]</bbox> <answer>2</answer>"
    for name in ("r1", "satori-v2"):  # nothing to put in <think>/<thinking>
        with pytest.raises(SatoriError, match="no gold <think"):
            gold_completion(row, SMOKE, name)


def test_a_row_that_is_not_prepared_is_one_line_error(tmp_path):
    src = tmp_path / "raw.jsonl"
    src.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(SatoriError, match=r"line 1 is not a prepared row"):
        write_sft_jsonl(src, tmp_path / "out.jsonl", SMOKE)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(SatoriError, match="holds no rows"):
        write_sft_jsonl(empty, tmp_path / "out2.jsonl", SMOKE)
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out2.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl", "raw.jsonl"]  # no partial left
