"""The output grammar: one parser, never raises, never evaluates, precise about format."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satori_cli.grammar import (
    MAX_BOXES,
    MAX_CHARS,
    extract_answer,
    format_completion,
    parse,
    parse_boxes,
)

GOOD = "<caption>A red square.</caption> <bbox>[[10, 20.5, 30, 40]]</bbox> <answer>red</answer>"


def test_parses_a_well_formed_completion():
    c = parse(GOOD)
    assert (c.caption, c.boxes, c.answer) == ("A red square.", ((10.0, 20.5, 30.0, 40.0),), "red")
    assert c.well_formed and c.reason is None and c.box_error is None


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        "  \n" + GOOD + "\n\n  ",
        "<caption>a\nb</caption>\n<bbox>\n[[1,2,3,4],\n [5,6,7,8]]\n</bbox>\n<answer>\nyes\n</answer>",
        "<caption></caption><bbox>[[1,2,3,4]]</bbox><answer></answer>",
    ],
)
def test_well_formed(text):
    assert parse(text).well_formed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (GOOD + " trailing", "text outside"),
        (GOOD + "\nmore text after a newline", "text outside"),  # the original MULTILINE loophole
        ("<think>hm</think>" + GOOD, "text outside"),
        ("<bbox>[[1,2,3,4]]</bbox> <answer>red</answer>", "missing <caption>"),
        ("<caption>x</caption> <answer>red</answer>", "missing <bbox>"),
        ("<caption>x</caption> <bbox>[[1,2,3,4]]</bbox>", "missing <answer>"),
        ("<answer>a</answer><caption>x</caption><bbox>[[1,2,3,4]]</bbox>", "out of order"),
        ("<caption>x</caption> <bbox>[1,2,3,4]</bbox> <answer>a</answer>", "[[...]]"),
        (
            "<caption>x</caption> <bbox>[[1,2,3,4]]</bbox> <answer>a</answer><answer>b</answer>",
            "inside <answer>",
        ),
        (
            "<caption>x</caption><caption>y</caption> <bbox>[[1,2,3,4]]</bbox> <answer>a</answer>",
            "inside <caption>",
        ),
    ],
)
def test_not_well_formed_with_reason(text, reason):
    c = parse(text)
    assert not c.well_formed
    assert reason in c.reason


def test_fields_come_from_the_first_tag_even_when_malformed():
    c = parse("junk <answer> B </answer> <answer>C</answer> <caption> x </caption>")
    assert c.answer == "B" and c.caption == "x" and c.boxes is None
    assert c.box_error == "no <bbox> tag"


@pytest.mark.parametrize(
    ("payload", "boxes"),
    [
        ("[[1,2,3,4]]", ((1, 2, 3, 4),)),
        ("[1, 2, 3, 4]", ((1, 2, 3, 4),)),  # a flat box is one box
        (" [ [1.5,-2,3e1,4.] , [ .5,6,7,8 ], ] ", ((1.5, -2, 30, 4), (0.5, 6, 7, 8))),
        ("[]", ()),
        ("[[1,2,3,4,]]", ((1, 2, 3, 4),)),
    ],
)
def test_parse_boxes_accepts(payload, boxes):
    got, err = parse_boxes(payload)
    assert err is None and got == tuple(tuple(float(v) for v in b) for b in boxes)


@pytest.mark.parametrize(
    "payload",
    [
        "[[1,2,3]]",
        "[[1,2,3,4,5]]",
        "[[1,2,3,4],[1,2]]",
        "[[[1,2,3,4]]]",
        "[(1,2,3,4)]",
        "[[1,2,3,'4']]",
        "[[1,2,3,4]",
        "[[nan,1,2,3]]",
        "[[inf,1,2,3]]",
        "[[1e999,1,2,3]]",
        "__import__('os').system('echo hi')",
        "[[1,2,3,4]] and more",
        "",
        "[" * 100000,
    ],
)
def test_parse_boxes_rejects(payload):
    boxes, err = parse_boxes(payload)
    assert boxes is None and err


def test_box_cap():
    many = "[" + ",".join(["[1,2,3,4]"] * (MAX_BOXES + 1)) + "]"
    assert parse_boxes(many)[0] is None
    assert len(parse_boxes("[" + ",".join(["[1,2,3,4]"] * MAX_BOXES) + "]")[0]) == MAX_BOXES


def test_extract_answer():
    assert extract_answer("<answer>\n B \n</answer>") == "B"  # multi-line answers (the original eval's bug)
    assert extract_answer("  just text ") == "just text"
    assert extract_answer(None) == ""


def test_format_completion_round_trips():
    text = format_completion("a cat", [(1, 2, 3.5, 4)], "yes")
    assert text == "<caption>a cat</caption> <bbox>[[1,2,3.5,4]]</bbox> <answer>yes</answer>"
    c = parse(text)
    assert c.well_formed and c.boxes == ((1.0, 2.0, 3.5, 4.0),)


tags = st.sampled_from(
    ["<caption>", "</caption>", "<bbox>", "</bbox>", "<answer>", "</answer>", "[[", "]]", ","]
)


@settings(max_examples=500)
@given(st.lists(st.one_of(st.text(max_size=20), tags, st.floats().map(str)), max_size=30).map("".join))
def test_parse_never_raises(text):
    c = parse(text)
    assert isinstance(c.well_formed, bool)
    if c.boxes is not None:
        assert all(len(b) == 4 for b in c.boxes)


@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.integers())))
def test_parse_accepts_non_strings(value):
    assert parse(value).well_formed is False


@settings(max_examples=300)
@given(
    st.text(max_size=15),
    st.lists(st.tuples(*[st.integers(-5, 999)] * 4), max_size=3),
    st.text(max_size=15),
    st.sampled_from(["", " ", "\n", "junk", "<answer>x</answer>"]),
)
def test_fast_path_agrees_with_first_tag_reading(caption, boxes, answer, tail):
    # The one-match fast path must give exactly what reading each tag's first occurrence gives.
    from satori_cli.grammar import first_tag

    text = format_completion(caption, boxes, answer) + tail
    c = parse(text)
    assert c.caption == first_tag(text, "caption")
    assert c.answer == first_tag(text, "answer")
    assert c.boxes == parse_boxes(first_tag(text, "bbox") or "")[0] or first_tag(text, "bbox") is None


# -- linear time, capped input ------------------------------------------------------
def _repeat(piece: str, size: int = 2_000_000) -> str:
    return (piece * (size // len(piece) + 1))[:size]


# Inputs that made the original lazy regexes (and this parser before) quadratic or worse:
# every opening tag rescanned the rest of the text for its closing tag.
ADVERSARIAL = {
    "open captions": lambda: _repeat("<caption>"),
    "caption then bbox": lambda: _repeat("<caption>x</caption><bbox>"),
    "closing tags": lambda: "<caption>" + _repeat("</caption> <bbox>") + "</bbox><answer>a</answer>",
    "whole completions": lambda: _repeat(GOOD + " "),
    "brackets": lambda: "<caption>a</caption><bbox>" + _repeat("[") + "</bbox><answer>a</answer>",
    "closing brackets": lambda: "<caption>a</caption><bbox>[[" + _repeat("] ") + "x</bbox><answer>a</answer>",
    "whitespace": lambda: "<caption>" + _repeat(" \n") + "</caption>",
    "angle brackets": lambda: _repeat("<"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_parse_is_linear_on_adversarial_text(name):
    text = ADVERSARIAL[name]()
    start = time.perf_counter()
    capped = parse(text)  # what rewards, predict and eval do
    uncapped = parse(text, max_chars=None)  # the parser itself, on all 2 MB
    assert time.perf_counter() - start < 2.0, f"{name}: not linear"
    assert not uncapped.well_formed and not capped.well_formed


def test_only_the_first_max_chars_are_read():
    padded = GOOD + " " * MAX_CHARS  # well formed, but longer than the cap
    c = parse(padded)
    assert not c.well_formed and str(MAX_CHARS) in c.reason
    assert (c.caption, c.answer, c.raw) == ("A red square.", "red", padded)
    assert parse(padded, max_chars=None).well_formed
    late = " " * MAX_CHARS + GOOD  # the tags lie beyond what is read
    assert parse(late).answer is None and parse(late, max_chars=None).answer == "red"
    assert extract_answer(late) == "" and extract_answer(GOOD) == "red"
