"""Arbitrary input never breaks a reward; the rewards agree with the reference (1e-6).

The reference (`rewards_reference.py`) reads completions with the original plugin's regexes
and `ast.literal_eval`; the rewards read them with `satori_cli.grammar`. Both then call the
same libraries, so the parity checks the parser, the pixel mapping and the column handling.
"""

from __future__ import annotations

import math
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rewards_reference import ref_bbox, ref_caption, ref_format, ref_score_all, ref_vqa

from satori_cli.pixels import PixelBudget
from satori_cli.rewards import REWARD_FUNCS, score_all, vqa_reward

# -- no exception, every score a finite float in [0, 1] -----------------------------
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([400, -400, 5000]).map(lambda d: (-1 if d < 0 else 1) * 10 ** abs(d)),  # huge ints
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5), max_leaves=20)
tag_soup = st.lists(
    st.sampled_from(
        [
            "<caption>",
            "</caption>",
            "<bbox>",
            "</bbox>",
            "<answer>",
            "</answer>",
            "[[",
            "]]",
            "[",
            "]",
            ",",
            "1",
            "-2.5",
            "1e308",
            "nan",
            " ",
            "\n",
            "a cat",
            "No",
            "0x10",
            "((",
            "'",
        ]
    ),
    max_size=30,
).map("".join)
completions = st.one_of(st.text(max_size=200), tag_soup, st.none(), st.integers())


def _check(scores: dict[str, list[float]], n: int) -> None:
    for name, values in scores.items():
        assert len(values) == n, name
        for v in values:
            assert isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0, (name, v)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            completions,
            st.one_of(json_values, st.lists(st.lists(st.floats(), min_size=4, max_size=4), max_size=3)),
            st.one_of(json_values, st.integers(1, 5000)),
            st.one_of(json_values, st.integers(1, 5000)),
            json_values,
            st.one_of(json_values, st.text(max_size=60)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_arbitrary_inputs_score_in_unit_interval(rows) -> None:
    texts, bboxs, width, height, answers, captions = map(list, zip(*rows, strict=True))
    cols = dict(bboxs=bboxs, width=width, height=height, possible_answers=answers, image_caption=captions)
    scores = score_all(texts, budget=PixelBudget(), **cols)
    scores["norm"] = vqa_reward(texts, answers, normalized=True)
    _check(scores, len(texts))


# -- parity with the reference on thousands of generated cases ----------------------
_WORD_TEXT = (
    "the a an image shows bird birds cat dog man woman red green blue branch branches leaves sitting perched "
    "on in with and of near tall building street car cars 2 10 3.5 sign text reads cannot gonna it's don't "
    '(left) "quoted" e.g. u.s. co-op well-known'
)
WORDS = _WORD_TEXT.split()
PUNCT = ["", ".", ",", "!", "?", " .", "...", ";", ":", "--", "'s"]


def _sentence(rng: random.Random, k: int) -> str:
    parts = [rng.choice(WORDS) + (rng.choice(PUNCT) if rng.random() < 0.2 else "") for _ in range(k)]
    text = " ".join(parts)
    return text.capitalize() + rng.choice(["", ".", ".", ". Another one.", "!"]) if text else text


def _number(rng: random.Random, side: int) -> str:
    v = rng.choice([rng.randint(-20, side + 50), round(rng.uniform(-10, side + 10), rng.randint(1, 3))])
    return repr(v) if rng.random() < 0.9 else f"{float(v):e}"


def _payload(rng: random.Random, side: int) -> str:
    boxes = [
        "[" + ", ".join(_number(rng, side) for _ in range(4)) + "]"
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5]))
    ]
    text = "[" + ", ".join(boxes) + "]"
    roll = rng.random()
    if roll < 0.1 and len(boxes) == 1:
        text = boxes[0]  # flat single box
    elif roll < 0.2:
        pos = rng.randrange(len(text) + 1)
        text = text[:pos] + rng.choice(["[", "]", ",", " ", "x", "\n", ",,"]) + text[pos:]
    elif roll < 0.25:
        text = text.replace("]", "", 1)
    elif roll < 0.28:
        text = "[" + ", ".join(["[1, 2, 3, 4]"] * 51) + "]"  # over the cap
    return text


def _completion(rng: random.Random, side: int, answers: list[str]) -> str:
    caption = _sentence(rng, rng.randint(0, 25))
    answer = rng.choice([*answers, "No", "yes", " No ", "NO", "No."])
    seps = [rng.choice([" ", "\n", "", "  \n "]) for _ in range(4)]
    text = (
        f"{seps[0]}<caption>{caption}</caption>{seps[1]}<bbox>{_payload(rng, side)}</bbox>{seps[2]}"
        f"<answer>{answer}</answer>{seps[3]}"
    )
    roll = rng.random()
    if roll < 0.05:
        text += "\ntrailing words"
    elif roll < 0.08:
        text = text.replace("<caption>", "")
    elif roll < 0.10:
        text = "<think>x</think>" + text
    elif roll < 0.12:
        text += "<answer>Yes</answer>"
    elif roll < 0.14:
        text = text.replace("</answer>", "")
    return text


def _cases(seed: int, n: int):
    rng = random.Random(seed)
    completions, cols = [], {k: [] for k in ("bboxs", "width", "height", "possible_answers", "image_caption")}
    for _ in range(n):
        w = rng.choice([rng.randint(28, 2000), 640, 500, 3, 20000])
        h = rng.choice([rng.randint(28, 2000), 480, 375, 3, 20000])
        gt = [
            [rng.uniform(0, w / 2), rng.uniform(0, h / 2), rng.uniform(w / 2, w), rng.uniform(h / 2, h)]
            for _ in range(rng.choice([1, 1, 2, 3]))
        ]
        if rng.random() < 0.05:
            gt = gt[0]  # flat ground truth
        answers = rng.choice([["No"], ["Yes", "yes"], ["2"], "No", ["red", "dark red"]])
        completions.append(_completion(rng, max(w, h), answers if isinstance(answers, list) else [answers]))
        cols["bboxs"].append(gt)
        cols["width"].append(w)
        cols["height"].append(h)
        cols["possible_answers"].append(answers)
        cols["image_caption"].append(_sentence(rng, rng.randint(1, 25)))
    return completions, cols


def test_parity_with_reference_on_generated_cases() -> None:
    completions, cols = _cases(seed=1234, n=3000)
    budget = PixelBudget()
    fast = score_all(completions, budget=budget, **cols)
    ref = ref_score_all(completions, budget=budget, **cols)
    for name in REWARD_FUNCS:
        bad = [
            (i, fast[name][i], ref[name][i])
            for i in range(len(completions))
            if abs(fast[name][i] - ref[name][i]) > 1e-6
        ]
        assert not bad, (name, len(bad), completions[bad[0][0]], bad[0])
    # the generator must exercise both outcomes of every reward
    for name in REWARD_FUNCS:
        assert 0 < sum(v > 0 for v in fast[name]) < len(completions), name


def test_parity_with_reference_under_another_budget(monkeypatch) -> None:
    monkeypatch.setenv("MIN_PIXELS", "3136")
    monkeypatch.setenv("MAX_PIXELS", "50176")
    completions, cols = _cases(seed=99, n=500)
    fast = score_all(completions, **cols)
    budget = PixelBudget(3136, 50176)
    ref = [
        ref_bbox(c, b, w, h, budget)
        for c, b, w, h in zip(completions, cols["bboxs"], cols["width"], cols["height"], strict=True)
    ]
    assert max(abs(a - b) for a, b in zip(fast["external_bbox_acc"], ref, strict=True)) <= 1e-6


def test_reference_edge_cases_agree() -> None:
    edge = [
        ("<caption></caption> <bbox>[[0,0,0,0]]</bbox> <answer></answer>", [[0, 0, 0, 0]], ""),
        ("<caption>.</caption> <bbox>[[5,5,1,1]]</bbox> <answer>No</answer>", [[1, 1, 5, 5]], "."),
        (
            "<caption>a a a a a</caption> <bbox>[[0,0,10,10],[0,0,10,10]]</bbox> <answer>No</answer>",
            [[0, 0, 10, 10], [5, 5, 15, 15]],
            "a a",
        ),
        ("<caption>x</caption><bbox>[]</bbox><answer>No</answer>", [[0, 0, 1, 1]], "x"),
    ]
    budget = PixelBudget()
    for text, gt, ref_caption_text in edge:
        fast = score_all(
            [text],
            budget=budget,
            bboxs=[gt],
            width=[640],
            height=[480],
            possible_answers=[["No"]],
            image_caption=[ref_caption_text],
        )
        assert fast["external_format"][0] == ref_format(text)
        assert abs(fast["external_bbox_acc"][0] - ref_bbox(text, gt, 640, 480, budget)) <= 1e-6
        assert fast["extern_vqa_acc"][0] == ref_vqa(text, ["No"])
        assert abs(fast["external_caption_acc"][0] - ref_caption(text, ref_caption_text)) <= 1e-6
