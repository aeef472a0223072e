"""The output grammars as a choice (issue #17): satori, satori-v2, r1, nocap.

Each grammar's format rule, checked by hand-written cases and against a reference regex on
generated text; its prompts; the rewards that train it; `rewards score --grammar`.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satori_cli.errors import SatoriError
from satori_cli.grammar import (
    GRAMMARS,
    MAX_CHARS,
    format_completion,
    get_grammar,
    load_prompt,
    parse,
    prompt_path,
)
from satori_cli.pixels import PixelBudget
from satori_cli.rewards import BY_NAME, REWARD_FUNCS, format_reward, rewards_for, score_all

CAPTION = "a red ball lies on the green grass of a park"
V2 = (
    f"<caption>{CAPTION}</caption> <bbox>[[10,20,110,220]]</bbox> <thinking>it is round</thinking> "
    "<answer>red</answer>"
)
R1 = "<think>the ball looks red</think> <answer>red</answer>"
NOCAP = "<bbox>[[10,20,110,220]]</bbox> <answer>red</answer>"
V1 = f"<caption>{CAPTION}</caption> <bbox>[[10,20,110,220]]</bbox> <answer>red</answer>"
GOOD = {"satori": V1, "satori-v2": V2, "r1": R1, "nocap": NOCAP}


# -- the registry ---------------------------------------------------------------------
def test_the_four_grammars_and_their_rewards():
    assert list(GRAMMARS) == ["satori", "satori-v2", "r1", "nocap"]
    assert get_grammar(None) is GRAMMARS["satori"]
    assert (
        rewards_for("satori")
        == REWARD_FUNCS
        == (
            "external_format",
            "external_bbox_acc",
            "extern_vqa_acc",
            "external_caption_acc",
        )
    )
    assert rewards_for("satori-v2") == (
        "external_format_v2",
        "external_bbox_acc",
        "extern_vqa_acc",
        "external_caption_acc",
    )
    assert rewards_for("r1") == ("external_format_r1", "extern_vqa_acc")
    assert rewards_for("nocap") == ("external_format_nocap", "external_bbox_acc", "extern_vqa_acc")
    for g in GRAMMARS.values():  # a content reward applies exactly when the grammar has its tag
        assert ("external_bbox_acc" in g.reward_funcs) == ("bbox" in g.tags)
        assert ("external_caption_acc" in g.reward_funcs) == ("caption" in g.tags)
        assert g.tags[-1] == "answer" and set(g.reward_funcs) <= set(BY_NAME)


def test_unknown_grammar_is_a_user_error():
    with pytest.raises(SatoriError, match="unknown grammar 'r2'") as err:
        get_grammar("r2")
    assert "satori-v2" in str(err.value)


def test_canonical_completions_round_trip():
    for name, g in GRAMMARS.items():
        text = format_completion("a red ball", [[10, 20, 110, 220]], "red", name, thinking="t")
        c = parse(text, grammar=name)
        assert c.well_formed, (name, c.reason)
        assert c.answer == "red" and c.grammar == name
        assert (c.boxes is not None) == g.has_boxes and (c.caption is not None) == g.has_caption
        assert c.thinking == ("t" if g.thinking_tag else None)
    assert format_completion("c", [[1, 2, 3, 4]], "a") == format_completion(
        "c", [[1, 2, 3, 4]], "a", "satori"
    )


# -- prompts --------------------------------------------------------------------------
NOCAP_SUFFIX = (
    " \nOutput the list of bounding boxes in the format of [[x1,y1,x2,y2], ...] in <bbox> </bbox> and\n"
    " final answer in <answer> </answer> tags."
)
V2_INSTRUCTION = (
    "Output the caption of overall scene first, then identify the most relevant regions and output the "
    "bounding box, last provide the thinking path and final answer."
)


def test_known_prompt_texts_are_verbatim():
    assert load_prompt("eval_suffix", grammar="nocap") == NOCAP_SUFFIX  # model_nocap.py, line break and all
    assert load_prompt("eval_suffix", grammar="satori-v2").startswith(" \n" + V2_INSTRUCTION + " ")
    assert load_prompt("eval_suffix", grammar="r1").startswith(" \nOutput the thinking path and the answer. ")
    assert load_prompt("system", grammar="satori") == load_prompt("system")  # today's file, unchanged
    assert prompt_path("system", "satori") == prompt_path("system")
    # the fragments of the nocap system prompt that were recorded, word for word
    nocap = load_prompt("system", grammar="nocap")
    assert nocap.startswith(
        "A conversation between User and Assistant in a Visual Question Answering (VQA) task."
    )
    assert "The reasoning process is enclosed within <bbox>[[x1,y1,x2,y2],...]</bbox>" in nocap
    assert nocap.endswith("<bbox> bounding box here </bbox><answer> answer here </answer>")


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_each_prompt_names_its_tags_in_order_and_no_others(name):
    g = GRAMMARS[name]
    others = {t for h in GRAMMARS.values() for t in h.tags} - set(g.tags)
    for kind in ("system", "eval_suffix"):
        text = load_prompt(kind, grammar=name)
        positions = [text.find(f"<{t}>") for t in g.tags]
        assert -1 not in positions and positions == sorted(positions), (kind, positions)
        assert not [t for t in others if f"<{t}>" in text], kind
    assert prompt_path("system", name).is_file() and prompt_path("eval_suffix", name).is_file()
    if name != "satori":
        assert prompt_path("system", name).parent.name == name


def test_prompts_dir_override_keeps_its_meaning_per_grammar(tmp_path, monkeypatch):
    (tmp_path / "system.txt").write_text("Mine for satori.\n")
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "eval_suffix.txt").write_text(" \nmine for r1")
    bundled_r1_system = load_prompt("system", grammar="r1")
    monkeypatch.setenv("SATORI_PROMPTS_DIR", str(tmp_path))
    assert load_prompt("system") == "Mine for satori."
    assert load_prompt("system", grammar="r1") == bundled_r1_system  # the top-level file is satori's only
    assert load_prompt("eval_suffix", grammar="r1") == " \nmine for r1"
    assert prompt_path("eval_suffix", "r1") == (tmp_path / "r1" / "eval_suffix.txt").resolve()
    assert load_prompt("eval_suffix", grammar="nocap") == NOCAP_SUFFIX


# -- the format rules of each grammar ---------------------------------------------------
RULES = [
    # satori-v2
    ("satori-v2", V2, True),
    ("satori-v2", "\n  " + V2.replace("> <", ">\n<") + "\n\n", True),  # whitespace around and between
    ("satori-v2", V2.replace(" <thinking>it is round</thinking>", ""), False),  # v1 is not v2
    ("satori-v2", V2.replace("<thinking>", "<think>").replace("</thinking>", "</think>"), False),
    ("satori-v2", V2 + "\nso red", False),  # nothing after the answer, not even after a newline
    ("satori-v2", "I see. " + V2, False),
    ("satori-v2", V2.replace("[[10,20,110,220]]", "[10,20,110,220]"), False),  # the format wants [[...]]
    ("satori-v2", V2 + " <answer>blue</answer>", False),  # a second answer
    ("satori-v2", V2.replace("it is round", "round <thinking>twice</thinking>"), False),  # nested
    ("satori-v2", V2.replace("it is round", "<answer>red</answer>"), False),  # an answer inside thinking
    (
        "satori-v2",  # thinking before the boxes
        "<caption>c</caption> <thinking>t</thinking> <bbox>[[1,2,3,4]]</bbox> <answer>a</answer>",
        False,
    ),
    ("satori-v2", "<caption></caption><bbox>[]</bbox><thinking></thinking><answer></answer>", False),
    ("satori-v2", "<caption></caption><bbox>[[1,2,3,4]]</bbox><thinking></thinking><answer></answer>", True),
    # r1
    ("r1", R1, True),
    ("r1", " \n<think>\nstep 1\nstep 2\n</think>\n<answer>\nred\n</answer>\n", True),
    ("r1", "<answer>red</answer>", False),  # missing think
    ("r1", "<think>hm</think>", False),  # missing answer
    ("r1", "<answer>red</answer> <think>hm</think>", False),  # order
    ("r1", R1 + " because", False),
    ("r1", R1 + "\n<answer>blue</answer>", False),
    ("r1", "<think>a</think> <think>b</think> <answer>red</answer>", False),  # a second think
    ("r1", "<think>a <think>b</think></think> <answer>red</answer>", False),  # nested
    ("r1", "<think>x</think> junk <answer>red</answer>", False),  # text between the tags
    ("r1", "<think><caption>c</caption> <bbox>[[1,2,3,4]]</bbox></think> <answer>red</answer>", True),
    ("r1", V1, False),
    ("r1", "<thinking>hm</thinking> <answer>red</answer>", False),
    # nocap
    ("nocap", NOCAP, True),
    ("nocap", "\n<bbox>\n[[1,2,3,4],\n [5,6,7,8]]\n</bbox>\n<answer>\nyes\n</answer>\n", True),
    ("nocap", "<bbox>[1,2,3,4]</bbox> <answer>red</answer>", False),  # the format wants [[...]]
    ("nocap", "<bbox>[[1,2,3,4]]</bbox>", False),
    ("nocap", "<answer>red</answer> <bbox>[[1,2,3,4]]</bbox>", False),
    ("nocap", V1, False),  # a caption is text outside the tags
    ("nocap", NOCAP + "\nmore", False),
    ("nocap", "<bbox>[[1,2,3,4]]</bbox> <bbox>[[1,2,3,4]]</bbox> <answer>red</answer>", False),
    ("nocap", "<bbox>[[1,2,3,4]]<answer>x</answer></bbox> <answer>red</answer>", False),
    ("nocap", "<box>[[1,2,3,4]]</bbox> <answer>red</answer>", False),  # the original prompt's slip
    # satori (v1) does not take the other grammars' shapes
    ("satori", V1, True),
    ("satori", V2, False),
    ("satori", R1, False),
    ("satori", NOCAP, False),
]


@pytest.mark.parametrize(("grammar", "text", "ok"), RULES)
def test_format_rule(grammar, text, ok):
    c = parse(text, grammar=grammar)
    assert c.well_formed is ok, c.reason
    assert BY_NAME[get_grammar(grammar).format_reward]([text]) == [1.0 if ok else 0.0]
    assert (c.reason is None) is ok


@pytest.mark.parametrize(
    ("grammar", "text", "reason"),
    [
        ("r1", "<answer>red</answer>", "missing <think>"),
        ("satori-v2", V1, "missing <thinking>"),
        ("r1", "<think>a</think> <think>b</think> <answer>red</answer>", "inside <think>"),
        ("nocap", "<bbox>[1,2,3,4]</bbox> <answer>red</answer>", "[[...]]"),
        ("r1", R1 + " because", "text outside"),
        ("satori-v2", V2.replace("it is round", "<answer>red</answer>"), "inside <thinking>"),
    ],
)
def test_reasons_name_the_problem(grammar, text, reason):
    assert reason in parse(text, grammar=grammar).reason


def test_format_rewards_never_raise_on_non_text():
    for g in GRAMMARS.values():
        assert BY_NAME[g.format_reward]([None, 3, b"x", ["<answer>"]]) == [0.0] * 4


# -- against a reference: the original regex shape over each grammar's tags -------------------
def _reference(grammar_name: str):
    """`\\A\\s*<t1>(.*?)</t1>\\s*<t2>(.*?)...\\s*\\Z`, no tag of the grammar in a part, `[[...]]` boxes:
    the original plugin's rule (tests/rewards_reference.py) written over any tag sequence."""
    tags = GRAMMARS[grammar_name].tags
    parts = [r"<bbox>\s*\[\s*\[(.*?)\]\s*\]\s*</bbox>" if t == "bbox" else rf"<{t}>(.*?)</{t}>" for t in tags]
    pattern = re.compile(r"\A\s*" + r"\s*".join(parts) + r"\s*\Z", re.DOTALL)
    any_tag = re.compile(r"</?(?:" + "|".join(tags) + r")>")

    def ref(text: str) -> bool:
        m = pattern.match(text)
        return bool(m) and not any(any_tag.search(part) for part in m.groups())

    return ref


def _soup(grammar_name: str):
    pieces = [f"<{t}>" for h in GRAMMARS.values() for t in h.tags] + [
        f"</{t}>" for h in GRAMMARS.values() for t in h.tags
    ]
    pieces += ["[[", "]]", "[", "]", ",", "1", " ", "\n", "red", "<", ">", "</"]
    canonical = GOOD[grammar_name]
    return st.one_of(
        st.lists(st.sampled_from(pieces), max_size=30).map("".join),
        # a well-formed completion with something inserted somewhere: near misses
        st.tuples(st.integers(0, len(canonical)), st.sampled_from([*pieces, "x", " x ", "\n\n"])).map(
            lambda p: canonical[: p[0]] + p[1] + canonical[p[0] :]
        ),
        st.tuples(st.integers(0, len(canonical)), st.integers(0, len(canonical))).map(
            lambda p: canonical[: min(p)] + canonical[max(p) :]  # a piece cut out
        ),
    )


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_agrees_with_the_reference_regex(name):
    ref = _reference(name)
    assert ref(GOOD[name])

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_soup(name))
    def check(text):
        assert parse(text, grammar=name).well_formed == ref(text), text

    check()


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_every_reward_of_a_grammar_never_raises_and_stays_in_the_unit_interval(name):
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.one_of(_soup(name), st.text(max_size=80), st.none()), min_size=1, max_size=4))
    def check(texts):
        n = len(texts)
        cols = dict(
            bboxs=[[[10, 20, 110, 220]]] * n,
            width=[448] * n,
            height=[448] * n,
            possible_answers=[["red"]] * n,
            image_caption=["a red ball"] * n,
        )
        scores = score_all(texts, budget=PixelBudget(), grammar=name, **cols)
        assert tuple(scores) == rewards_for(name)
        for values in scores.values():
            assert len(values) == n and all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)

    check()


# -- linear time on adversarial text, capped input ------------------------------------------
def _repeat(piece: str, size: int = 2_000_000) -> str:
    return (piece * (size // len(piece) + 1))[:size]


ADVERSARIAL = {
    "open thinks": lambda: _repeat("<think>"),
    "think then answer": lambda: _repeat("<think>x</think><answer>"),
    "closing thinks": lambda: "<think>" + _repeat("</think> <answer>") + "</answer>",
    "thinking joints": lambda: (
        "<caption>c</caption><bbox>[[1,2,3,4]]</bbox><thinking>"
        + _repeat("</thinking>\n")
        + "<answer>a</answer>"
    ),
    "whole v2 completions": lambda: _repeat(V2 + " "),
    "whole nocap completions": lambda: _repeat(NOCAP + " "),
    "whitespace": lambda: "<bbox>" + _repeat(" \n") + "</bbox>",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(ADVERSARIAL))
def test_every_grammar_parses_in_linear_time(case):
    text = ADVERSARIAL[case]()
    for name in GRAMMARS:
        start = time.perf_counter()
        capped = parse(text, grammar=name)
        uncapped = parse(text, max_chars=None, grammar=name)
        assert time.perf_counter() - start < 2.0, f"{case} in {name}: not linear"
        assert not capped.well_formed and not uncapped.well_formed


def test_only_the_first_max_chars_are_read_in_every_grammar():
    for name, text in GOOD.items():
        padded = text + " " * MAX_CHARS
        assert not parse(padded, grammar=name).well_formed
        assert parse(padded, max_chars=None, grammar=name).well_formed
        assert parse(padded, grammar=name).answer == "red"


# -- content rewards read the first tag of their kind in every grammar --------------------
def test_content_rewards_score_every_grammar():
    budget = PixelBudget()
    gt = budget.to_original([(10, 20, 110, 220)], 448, 448)
    cols = dict(
        bboxs=[[list(gt[0])]] * 4,
        width=[448] * 4,
        height=[448] * 4,
        possible_answers=[["red"]] * 4,
        image_caption=[CAPTION] * 4,
    )
    texts = [V1, V2, R1, NOCAP]
    assert BY_NAME["extern_vqa_acc"](texts, budget=budget, **cols) == [1.0] * 4
    box = BY_NAME["external_bbox_acc"](texts, budget=budget, **cols)
    assert box[0] == box[1] == box[3] == pytest.approx(1.0, abs=1e-6) and box[2] == 0.0
    assert BY_NAME["external_caption_acc"](texts, budget=budget, **cols)[:3] == [1.0, 1.0, 0.0]
    assert format_reward(texts, grammar="satori-v2") == [0.0, 1.0, 0.0, 0.0]


def test_score_all_scores_the_grammar_rewards_only():
    scores = score_all([R1, V1], budget=PixelBudget(), grammar="r1", possible_answers=[["red"], ["red"]])
    assert scores == {"external_format_r1": [1.0, 0.0], "extern_vqa_acc": [1.0, 1.0]}


# -- `satori rewards score --grammar` ------------------------------------------------------
def _rows(path, texts):
    base = {
        "bboxs": [[10, 20, 110, 220]],
        "width": 448,
        "height": 448,
        "possible_answers": ["red"],
        "image_caption": "a red ball",
    }
    path.write_text("".join(json.dumps({**base, "completion": t}) + "\n" for t in texts))
    return path


@pytest.mark.parametrize("name", ["r1", "nocap", "satori-v2"])
def test_rewards_score_grammar_chooses_the_rewards(satori, tmp_path, name):
    src = _rows(tmp_path / "rows.jsonl", [GOOD[name], V1])
    out = tmp_path / "scores.jsonl"
    result = satori("rewards", "score", str(src), "--grammar", name, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"grammar {name}" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    fmt = get_grammar(name).format_reward
    assert [set(r) - {"line"} for r in rows] == [set(rewards_for(name))] * 2
    assert [r[fmt] for r in rows] == [1.0, 0.0]
    assert [r["extern_vqa_acc"] for r in rows] == [1.0, 1.0]
    assert "external_format " not in result.stdout  # v1's format reward is not one of them


def test_rewards_score_follows_a_run_folders_grammar(satori, tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    recipe = {"grammar": "r1", "min_pixels": 3136, "max_pixels": 12544}  # satori records its budget too
    (run / "run.json").write_text(json.dumps({"grammar": "r1", "recipe": recipe}))
    logged = {"completion": [R1, V1], "solution": ["0", "0"]}
    (run / "completions.jsonl").write_text(json.dumps(logged) + "\n")
    result = satori("rewards", "score", str(run))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "grammar r1" in result.stdout and "external_format_r1" in result.stdout
    overridden = satori("rewards", "score", str(run), "--grammar", "satori")
    assert overridden.returncode == 0 and "grammar satori" in overridden.stdout


def test_rewards_score_unknown_grammar_is_one_line(satori, tmp_path):
    src = _rows(tmp_path / "rows.jsonl", [R1])
    result = satori("rewards", "score", str(src), "--grammar", "r2")
    assert result.returncode == 2 and "unknown grammar 'r2'" in result.stderr
    assert "Traceback" not in result.stderr


def test_rewards_list_says_which_grammar_uses_each_reward(satori):
    result = satori("rewards", "list")
    assert result.returncode == 0, result.stderr
    for g in GRAMMARS.values():
        assert g.format_reward in result.stdout
    assert "nocap" in result.stdout and "(optional)" in result.stdout
