"""The pixel budget: Qwen's smart_resize exactly, and box mapping both ways."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satori_cli.errors import SatoriError
from satori_cli.pixels import (
    PAPER_BUDGET,
    PAPER_MAX_PIXELS,
    PAPER_MIN_PIXELS,
    PixelBudget,
    clamp_box,
    env_bounds,
    smart_resize,
)

DEFAULT_QWEN = (3136, 12845056)


@pytest.mark.parametrize(
    ("hw", "bounds", "expected"),
    [
        # Known pairs, measured against qwen-vl-utils and transformers (reference/serving.md §3.2).
        ((480, 640), (PAPER_MIN_PIXELS, PAPER_MAX_PIXELS), (476, 644)),
        ((1080, 1920), (PAPER_MIN_PIXELS, PAPER_MAX_PIXELS), (448, 840)),
        ((300, 400), (PAPER_MIN_PIXELS, PAPER_MAX_PIXELS), (392, 532)),
        ((2000, 3000), (PAPER_MIN_PIXELS, PAPER_MAX_PIXELS), (504, 756)),
        ((224, 224), (PAPER_MIN_PIXELS, PAPER_MAX_PIXELS), (448, 448)),
        ((480, 640), DEFAULT_QWEN, (476, 644)),
        ((1080, 1920), DEFAULT_QWEN, (1092, 1932)),
        ((300, 400), DEFAULT_QWEN, (308, 392)),
        ((4000, 6000), DEFAULT_QWEN, (2912, 4368)),
        # satori-rewards.md §7: a typical GQA/CUB size under the paper budget.
        ((375, 500), (PAPER_MIN_PIXELS, PAPER_MAX_PIXELS), (392, 532)),
    ],
)
def test_smart_resize_known_pairs(hw, bounds, expected):
    assert smart_resize(*hw, 28, *bounds) == expected


def test_smart_resize_matches_transformers_on_random_sizes():
    import random

    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as transformers_resize

    rng = random.Random(0)
    for _ in range(3000):
        h, w = rng.randint(28, 5000), rng.randint(28, 5000)
        if max(h, w) / min(h, w) > 200:
            continue
        for lo, hi in [(PAPER_MIN_PIXELS, PAPER_MAX_PIXELS), DEFAULT_QWEN]:
            assert smart_resize(h, w, 28, lo, hi) == transformers_resize(h, w, 28, lo, hi), (h, w, lo, hi)


@pytest.mark.parametrize(("h", "w"), [(10, 2001), (2001, 10), (0, 10), (10, -1)])
def test_smart_resize_rejects_bad_sizes(h, w):
    with pytest.raises(ValueError):
        smart_resize(h, w)


@given(st.integers(28, 4000), st.integers(28, 4000))
def test_resized_sizes_are_in_budget_and_idempotent(h, w):
    if max(h, w) / min(h, w) > 200:
        return
    rh, rw = PAPER_BUDGET.resized_hw(h, w)
    assert rh % 28 == 0 and rw % 28 == 0
    assert PAPER_MIN_PIXELS <= rh * rw <= PAPER_MAX_PIXELS
    assert PAPER_BUDGET.resized_hw(rh, rw) == (rh, rw)
    assert PAPER_BUDGET.resized_wh(w, h) == (rw, rh)


coords = st.floats(0, 4000, allow_nan=False, allow_infinity=False)


@given(st.integers(28, 3000), st.integers(28, 3000), st.tuples(coords, coords, coords, coords))
def test_box_mapping_round_trips(w, h, box):
    if max(h, w) / min(h, w) > 200:
        return
    back = PAPER_BUDGET.to_original(PAPER_BUDGET.to_resized([box], w, h), w, h)[0]
    for a, b in zip(back, box, strict=True):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def test_box_mapping_known_example():
    # 640x480 becomes 644x476: a box the model draws on its input lands on the original square.
    assert clamp_box(PAPER_BUDGET.to_original([(161, 119, 483, 357)], 640, 480)[0], 640, 480) == (
        160,
        120,
        480,
        360,
    )


def test_clamp_box_orders_and_clips():
    assert clamp_box((700, -5, 10.4, 20.6), 640, 480) == (10, 0, 640, 21)


def test_budget_travels_through_the_environment():
    budget = PixelBudget(3136, 50176)
    assert PixelBudget.from_env(budget.env()) == budget
    assert PixelBudget.from_env({}) == PAPER_BUDGET
    assert PixelBudget.from_env({"MIN_PIXELS": " ", "MAX_PIXELS": ""}) == PAPER_BUDGET  # empty is unset
    assert PixelBudget.from_env({"MAX_PIXELS": "12544", "MIN_PIXELS": "3136"}) == PixelBudget(3136, 12544)
    with pytest.raises(SatoriError, match="must not exceed"):
        PixelBudget.from_env({"MAX_PIXELS": "12544"})  # the paper's min is above it
    with pytest.raises(ValueError):
        PixelBudget(500, 100)


def test_environment_bounds(monkeypatch):
    assert env_bounds() == (None, None)  # the tests unset MIN_PIXELS / MAX_PIXELS
    monkeypatch.setenv("MAX_PIXELS", "12544")
    assert env_bounds() == (None, 12544)
    huge = 10**15  # no upper bound: a larger max only means less downscaling
    assert env_bounds({"MIN_PIXELS": " 3136 ", "MAX_PIXELS": str(huge)}) == (3136, huge)


@pytest.mark.parametrize("value", ["lots", "0", "-3136", "1e6", "12.5", "9" * 5000])
def test_a_bad_environment_bound_is_one_line_never_ignored(value):
    for var in ("MIN_PIXELS", "MAX_PIXELS"):
        with pytest.raises(SatoriError, match=f"invalid {var}=") as caught:
            env_bounds({var: value})
        assert caught.value.exit_code == 2 and len(str(caught.value)) < 200
        with pytest.raises(SatoriError, match=f"invalid {var}="):
            PixelBudget.from_env({var: value})


def test_a_budget_names_itself():
    assert str(PixelBudget(3136, 12544)) == "3136-12544 px"


def test_a_bad_environment_bound_ends_the_cli_in_one_line(satori):
    for command in (("serve", "--backend", "fake", "--dry-run"), ("rewards", "score", "nothing.jsonl")):
        done = satori(*command, env={"MIN_PIXELS": "0"})
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines() == [
            "error: invalid MIN_PIXELS='0' in the environment "
            "(unset it or give a positive whole number of pixels)"
        ]
