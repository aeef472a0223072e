"""One test per reward rule and per deliberate fix (see README, "Rewards")."""

from __future__ import annotations

import math
import time

import pytest

from satori_cli.grammar import MAX_BOXES, format_completion
from satori_cli.pixels import PixelBudget
from satori_cli.rewards import (
    MAX_CAPTION_CHARS,
    REWARD_FUNCS,
    ColumnError,
    bbox_reward,
    caption_reward,
    format_reward,
    normalize_answer,
    score_all,
    vqa_reward,
)
from satori_cli.rewards.reward_functions import union_iou

GOOD = "<caption>a bird on a branch</caption> <bbox>[[10,20,110,220]]</bbox> <answer>No</answer>"


# -- format -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, 1.0),
        ("\n  " + GOOD.replace("> <", ">\n<") + "\n\n", 1.0),  # whitespace around and between
        (GOOD + "\nI think the answer is Yes", 0.0),  # fix: text after </answer> (a newline used to pass)
        (GOOD + " extra", 0.0),
        ("<think>hm</think>" + GOOD, 0.0),
        (GOOD.replace("<caption>a bird on a branch</caption> ", ""), 0.0),  # missing caption
        (GOOD.replace("[[10,20,110,220]]", "[10,20,110,220]"), 0.0),  # the format wants [[...]]
        ("<bbox>[[1,2,3,4]]</bbox> <caption>c</caption> <answer>a</answer>", 0.0),  # order
        (GOOD + " <answer>Yes</answer>", 0.0),  # a second answer is trailing text
        ("", 0.0),
    ],
)
def test_format_rule(text: str, expected: float) -> None:
    assert format_reward([text]) == [expected]


def test_format_accepts_non_strings_without_raising() -> None:
    assert format_reward([None, 3, b"x"]) == [0.0, 0.0, 0.0]


# -- bbox ---------------------------------------------------------------------------
def _bbox(text: str, gt, width=640, height=480, budget: PixelBudget | None = None) -> float:
    return bbox_reward([text], [gt], [width], [height], budget=budget or PixelBudget())[0]


def _resized(boxes, width=640, height=480):
    # whole pixels, as a model writes them (format_completion would round to 6 digits anyway)
    return [[round(v) for v in b] for b in PixelBudget().to_resized(boxes, width, height)]


def test_bbox_exact_box_in_resized_pixels_scores_one() -> None:
    gt = [[100, 50, 300, 200]]
    text = format_completion("c", _resized(gt), "a")
    assert _bbox(text, gt) == pytest.approx(1.0, abs=0.02)


def test_bbox_maps_from_resized_to_original_pixels() -> None:
    # 1000x500 resizes to 896x448 under the paper budget: a box in original pixels is off.
    gt = [[0, 0, 1000, 500]]
    assert PixelBudget().resized_wh(1000, 500) == (896, 448)
    exact = format_completion("c", [[0, 0, 896, 448]], "a")
    assert _bbox(exact, gt, 1000, 500) == pytest.approx(1.0, abs=1e-6)
    assert _bbox(format_completion("c", [[0, 0, 1000, 500]], "a"), gt, 1000, 500) < 0.9


def test_bbox_budget_comes_from_the_environment(monkeypatch) -> None:
    gt = [[0, 0, 1000, 500]]
    small = PixelBudget(3136, 50176)
    h, w = small.resized_hw(500, 1000)
    text = format_completion("c", [[0, 0, w, h]], "a")
    monkeypatch.setenv("MIN_PIXELS", str(small.min_pixels))
    monkeypatch.setenv("MAX_PIXELS", str(small.max_pixels))
    assert bbox_reward([text], [gt], [1000], [500]) == [pytest.approx(1.0, abs=0.02)]
    monkeypatch.delenv("MIN_PIXELS")
    monkeypatch.delenv("MAX_PIXELS")
    assert bbox_reward([text], [gt], [1000], [500])[0] < 0.5


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        ([(0, 0, 10, 10), (0, 0, 10, 10)], [(0, 0, 10, 10)], 1.0),  # the same box twice counts once
        ([(0, 0, 10, 10), (5, 0, 15, 10)], [(0, 0, 15, 10)], 1.0),  # overlapping boxes, union = GT
        ([(0, 0, 10, 10)], [(5, 0, 15, 10)], 50 / 150),  # half overlap
        ([(0, 0, 10, 10)], [(0, 0, 10, 10), (20, 0, 30, 10)], 0.5),  # covers one of two GT boxes
        ([(0, 0, 30, 10)], [(0, 0, 10, 10), (20, 0, 30, 10)], 200 / 300),  # one box enclosing both
        ([(10, 10, 0, 0)], [(0, 0, 10, 10)], 1.0),  # swapped corners count like ordered ones
        ([(0, 0, 100, 100)], [(10, 10, 20, 20)], 100 / 10000),  # whole image vs a small box
        ([(0, 0, 0, 10)], [(0, 0, 10, 10)], 0.0),  # a zero-area box
        # three boxes: an L-shaped union of area 250 inside the 20x20 GT (hand-computed)
        ([(0, 0, 10, 10), (10, 0, 20, 10), (0, 10, 5, 20)], [(0, 0, 20, 20)], 250 / 400),
    ],
)
def test_union_iou_pins_the_official_definition(pred, gt, expected) -> None:
    # area(P∪ ∩ G∪) / (area(P∪ ∪ G∪) + 1e-6): hand-computed areas, not another implementation
    assert union_iou(pred, gt) == pytest.approx(expected, abs=1e-6)


def test_bbox_flat_single_box_counts_as_one_box() -> None:
    gt = [[100, 50, 300, 200]]
    (box,) = _resized(gt)
    text = f"<caption>c</caption> <bbox>[{box[0]},{box[1]},{box[2]},{box[3]}]</bbox> <answer>a</answer>"
    assert _bbox(text, gt) == pytest.approx(1.0, abs=0.02)
    flat_gt = [100, 50, 300, 200]
    assert _bbox(format_completion("c", _resized(gt), "a"), flat_gt) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(
    "payload",
    [
        "[[1,2,3]]",
        "[[1,2,3,4,5]]",
        "[(1,2,3,4)]",
        "[[1,2,3,'4']]",
        "[[1,2,3,inf]]",
        "[[1,2,3,nan]]",
        "[[1,2,3,1e400]]",
        "__import__('os').system('true')",
        "[[1,2,3,4]] + [[5,6,7,8]]",
        "not boxes",
        "[]",
        "[[1e7, 0, 2e7, 10]]",  # beyond MAX_ABS_COORD
    ],
)
def test_bbox_unusable_payload_scores_zero(payload: str) -> None:
    text = f"<caption>c</caption> <bbox>{payload}</bbox> <answer>a</answer>"
    assert _bbox(text, [[0, 0, 640, 480]]) == 0.0


def test_bbox_never_evaluates_code(tmp_path) -> None:
    marker = tmp_path / "pwned"
    text = f"<bbox>__import__('pathlib').Path({str(marker)!r}).touch()</bbox>"
    assert _bbox(text, [[0, 0, 10, 10]]) == 0.0
    assert not marker.exists()


def test_bbox_cap_on_number_of_boxes() -> None:
    gt = [[0, 0, 640, 480]]
    many = [[0, 0, 644, 476]] * MAX_BOXES
    assert _bbox(format_completion("c", many, "a"), gt) == pytest.approx(1.0, abs=0.02)
    assert _bbox(format_completion("c", [*many, [0, 0, 1, 1]], "a"), gt) == 0.0


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (100_000, 10),
        (10, 100_000),
        (0, 480),
        (-5, 480),
        (math.inf, 480),
        (math.nan, 480),
        (None, 480),
        ("abc", 480),
        (True, 480),
        (10**12, 480),
    ],
)
def test_bbox_extreme_or_absurd_sizes_score_zero_instead_of_raising(width, height) -> None:
    assert _bbox(GOOD, [[10, 20, 110, 220]], width, height) == 0.0


@pytest.mark.parametrize("gt", [None, "junk", [[1, 2, 3]], [["a", 2, 3, 4]], [], 5, [[math.inf, 0, 1, 1]]])
def test_bbox_unusable_ground_truth_scores_zero(gt) -> None:
    assert _bbox(GOOD, gt) == 0.0


def test_bbox_ground_truth_may_be_text_or_numpy() -> None:
    import numpy as np

    gt = [[100, 50, 300, 200]]
    text = format_completion("c", _resized(gt), "a")
    assert _bbox(text, "[[100, 50, 300, 200]]") == pytest.approx(1.0, abs=0.02)
    assert _bbox(text, np.array(gt, dtype=float)) == pytest.approx(1.0, abs=0.02)
    assert _bbox(text, gt, np.int64(640), np.int64(480)) == pytest.approx(1.0, abs=0.02)


# -- vqa ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "accepted", "expected"),
    [
        ("No", ["No"], 1.0),
        ("  No \n", ["No"], 1.0),  # stripped
        ("NO", ["No"], 0.0),  # exact, case-sensitive
        ("No.", ["No"], 0.0),
        ("dark red", ["red", "dark red"], 1.0),
        ("o", "No", 0.0),  # fix: a plain string is one answer, never a substring test
        ("No", "No", 1.0),
        ("3", [3], 1.0),  # JSON numbers compare as text
        ("No", None, 0.0),
        ("No", [], 0.0),
    ],
)
def test_vqa_rule(answer: str, accepted, expected: float) -> None:
    text = f"<caption>c</caption> <bbox>[[1,2,3,4]]</bbox> <answer>{answer}</answer>"
    assert vqa_reward([text], [accepted]) == [expected]


def test_vqa_uses_the_first_answer_tag_only() -> None:
    text = "<answer>Yes</answer> <answer>No</answer>"
    assert vqa_reward([text], [["No"]]) == [0.0]
    assert vqa_reward(["no tags: No"], [["No"]]) == [0.0]


def test_vqa_normalized_variant() -> None:
    assert normalize_answer("  The  Dark-Red. ") == "dark red"
    texts = [f"<answer>{a}</answer>" for a in ("No.", "NO", "the cat", "Yes")]
    accepted = [["No"], ["no"], ["A cat"], ["No"]]
    assert vqa_reward(texts, accepted, normalized=True) == [1.0, 1.0, 1.0, 0.0]
    assert vqa_reward(texts, accepted) == [0.0, 0.0, 0.0, 0.0]
    assert vqa_reward(["<answer>o</answer>"], ["No"], normalized=True) == [0.0]


# -- caption ------------------------------------------------------------------------
REF = "The image features a bird perched on a branch with green leaves and red berries."


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        (REF, 1.0),
        ("A bird perched on a branch with red berries.", 0.59),
        ("A cat sleeping on a sofa.", 0.15),
        ("bird", 0.06),
    ],
)
def test_caption_matches_the_measured_original_values(prediction: str, expected: float) -> None:
    text = f"<caption>{prediction}</caption>"
    assert caption_reward([text], [REF])[0] == pytest.approx(expected, abs=0.01)


def test_caption_without_tag_or_reference_scores_zero() -> None:
    assert caption_reward(["no caption here", "<caption></caption>"], [REF, REF]) == [0.0, 0.0]
    assert caption_reward([f"<caption>{REF}</caption>"] * 2, [None, 3]) == [0.0, 0.0]


def test_caption_needs_no_nltk_data(monkeypatch, tmp_path) -> None:
    # word_tokenize would raise LookupError without punkt_tab; the reward must not need it.
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(LookupError):
        nltk.word_tokenize("A cat. A dog.")
    assert caption_reward([f"<caption>{REF}. A second sentence.</caption>"], [REF])[0] > 0.5


def test_caption_bleu_and_rouge_on_hand_computed_cases() -> None:
    # Hand-computed, to pin the official definition now that the reward is the library call.
    # "a cat sat on a mat" vs "a cat sat on the mat": clipped 1- to 4-gram precisions 5/6,
    # 3/5, 2/4, 1/3, equal lengths (no brevity penalty); ROUGE-L: LCS 5 of 6 tokens each.
    bleu = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    got = caption_reward(["<caption>A cat sat on a mat</caption>"], ["a cat sat on the mat"])[0]
    assert got == pytest.approx((bleu + 5 / 6) / 2, abs=1e-9)
    # "the cat sat" vs "the cat sat down": no 4-gram at all, method1 smoothing puts 0.1/1 for
    # it; brevity penalty exp(1 - 4/3); ROUGE-L: P = 3/3, R = 3/4.
    bleu = math.exp(1 - 4 / 3) * (1 * 1 * 1 * 0.1) ** 0.25
    got = caption_reward(["<caption>The cat sat</caption>"], ["the cat sat down"])[0]
    assert got == pytest.approx((bleu + 2 * 0.75 / 1.75) / 2, abs=1e-9)
    # ROUGE-L stems with Porter ("perched" = "perch"), BLEU does not; no shared word scores 0.
    got = caption_reward(["<caption>birds perched</caption>"], ["bird perch"])[0]
    assert got == pytest.approx(0.5, abs=1e-9)  # BLEU 0 (no unigram match), ROUGE-L F1 1.0
    assert caption_reward(["<caption>dogs</caption>"], ["cats"]) == [0.0]


def test_caption_longer_than_the_cap_scores_zero() -> None:
    long = ("a bird on a branch " * MAX_CAPTION_CHARS)[: MAX_CAPTION_CHARS + 1]
    assert caption_reward([f"<caption>{long}</caption>"], [long]) == [0.0]
    assert caption_reward([f"<caption>{long[:MAX_CAPTION_CHARS]}</caption>"], [long[:MAX_CAPTION_CHARS]]) == [
        pytest.approx(1.0)
    ]
    assert caption_reward(["<caption>a bird</caption>"], [long]) == [0.0]


# -- hostile data set values never raise --------------------------------------------
HUGE = 10**400  # beyond the float range
HUGER = 10**5000  # beyond CPython's 4300-digit int-to-text limit


@pytest.mark.parametrize(
    ("gt", "width", "height"),
    [
        ([[HUGE, 0, 10, 10]], 640, 480),
        ([[HUGER, 0, 10, 10]], 640, 480),
        ([[10, 20, 110, 220]], HUGE, 480),
        ([[10, 20, 110, 220]], 640, HUGER),
        ([[10, 20, 110, 220]], -HUGE, 480),
        ([[math.nan, 0, 10, 10]], 640, 480),
        ([[10, 20, 110, 220]], math.nan, math.nan),
        ([[[[10, 20, 110, 220]]]], 640, 480),  # nested one level too deep
        ([[[10], [20], [110], [220]]], 640, 480),
        ([[10, 20, 110, [220]]], 640, 480),
        ([{"x": 1}], 640, 480),
        ([[10, 20, 110, 220]], [640], {"h": 1}),
        ("[[1e999, 0, 10, 10]]", 640, 480),
        ([[10, 20, 110, 220]] * 1001, 640, 480),  # more than MAX_GT_BOXES
    ],
    ids=lambda v: type(v).__name__,  # pytest's default id would str() a 5000-digit int
)
def test_bbox_hostile_columns_score_zero(gt, width, height) -> None:
    assert _bbox(GOOD, gt, width, height) == 0.0


def test_vqa_and_caption_hostile_columns() -> None:
    text = "<caption>a bird</caption> <bbox>[[1,2,3,4]]</bbox> <answer>3</answer>"
    assert vqa_reward([text] * 4, [[HUGER, 3], [[["3"]]], [math.nan], {"3": 1}]) == [1.0, 0.0, 0.0, 0.0]
    assert vqa_reward([text], [[HUGER, 3]], normalized=True) == [1.0]
    assert caption_reward([text] * 3, [HUGER, [["a bird"]], math.nan]) == [0.0, 0.0, 0.0]


# -- batch behaviour ----------------------------------------------------------------
def test_score_all_returns_the_four_names_and_one_score_per_completion() -> None:
    cols = dict(
        bboxs=[[[10, 20, 110, 220]]] * 2,
        width=[640] * 2,
        height=[480] * 2,
        possible_answers=[["No"]] * 2,
        image_caption=["a bird on a branch"] * 2,
    )
    scores = score_all([GOOD, "garbage"], budget=PixelBudget(), **cols)
    assert tuple(scores) == REWARD_FUNCS
    assert scores["external_format"] == [1.0, 0.0]
    assert scores["extern_vqa_acc"] == [1.0, 0.0]
    assert scores["external_caption_acc"] == [pytest.approx(1.0), 0.0]
    assert 0.0 < scores["external_bbox_acc"][0] < 1.0 and scores["external_bbox_acc"][1] == 0.0


def test_missing_or_misshapen_column_is_a_clear_error() -> None:
    with pytest.raises(ColumnError, match="image_caption"):
        caption_reward([GOOD])
    with pytest.raises(ColumnError, match="2 values for 1"):
        vqa_reward([GOOD], [["a"], ["b"]])


# -- linear time on anything `rewards score`, `predict` or `eval` may see ---------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("completion", "reference"),
    [
        ("<caption>" * 200_000, REF),  # 1.8 MB: the original parser never finished
        ("<caption>x</caption><bbox>" * 80_000, REF),
        (f"<caption>{'a bird ' * 300_000}</caption> <bbox>[[1,2,3,4]]</bbox> <answer>No</answer>", REF),
        (GOOD, "a bird on a branch " * 550_000),  # a 10 MB reference caption
        (f"<caption>{'a bird ' * 280}</caption> <bbox>[[1,2,3,4]]</bbox> <answer>No</answer>", REF * 24),
    ],
    ids=["open-tags", "unclosed-bbox", "2MB-caption", "10MB-reference", "longest-captions"],
)
def test_rewards_take_linear_time_on_huge_inputs(completion: str, reference: str) -> None:
    cols = dict(
        bboxs=[[[10, 20, 110, 220]]] * 4,
        width=[640] * 4,
        height=[480] * 4,
        possible_answers=[["No"]] * 4,
        image_caption=[reference] * 4,
    )
    completions = [completion + str(i) for i in range(4)]  # no cache hit
    caption_reward([GOOD], [REF])  # import the caption libraries outside the timing
    start = time.process_time()
    scores = score_all(completions, budget=PixelBudget(), **cols)
    assert time.process_time() - start < 2.0
    assert all(0.0 <= v <= 1.0 for values in scores.values() for v in values)
