"""`satori rewards score` and `satori rewards list` as a user runs them."""

from __future__ import annotations

import json
import re
import time

from satori_cli.grammar import format_completion
from satori_cli.outputs import MANIFEST
from satori_cli.rewards.score_file import _read_rows

ROW = {
    "completion": format_completion("a red square on white", [[100, 100, 300, 300]], "red"),
    "bboxs": [[100, 100, 300, 300]],
    "width": 448,
    "height": 448,
    "possible_answers": ["red"],
    "image_caption": "a red square on a white background",
}


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_score_writes_one_row_per_input_and_reports_malformed_lines(satori, tmp_path) -> None:
    src = tmp_path / "rows.jsonl"
    lines = [
        json.dumps(ROW),
        "{not json",
        "",
        json.dumps({"completion": "hello", "width": 3}),
        json.dumps([1]),
    ]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.jsonl"
    result = satori("rewards", "score", str(src), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "external_bbox_acc" in result.stdout and "SatoriCaption" in result.stdout
    assert "line 2: not JSON" in result.stdout and "line 5: not a JSON object" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4, 5]
    assert rows[0]["external_format"] == 1.0 and rows[0]["extern_vqa_acc"] == 1.0
    assert rows[0]["external_bbox_acc"] > 0.99
    assert rows[1]["external_format"] is None and "error" in rows[1]
    assert rows[2]["external_format"] == 0.0 and rows[2]["external_caption_acc"] is None


def test_score_normalized_vqa_and_budget_flags(satori, tmp_path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps({**ROW, "completion": ROW["completion"].replace(">red<", ">Red.<")}) + "\n")
    out = tmp_path / "scores.jsonl"
    result = satori(
        "rewards",
        "score",
        str(src),
        "--normalized-vqa",
        "--min-pixels",
        "3136",
        "--max-pixels",
        "50176",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "SatoriAnswerNormalized" in result.stdout
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["extern_vqa_acc"] == 0.0 and row["external_vqa_norm_acc"] == 1.0
    assert row["external_bbox_acc"] < 0.9  # boxes were written for the paper budget, not this one


def test_score_without_out_writes_nothing(satori, tmp_path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(ROW) + "\n")
    before = _files(tmp_path)
    result = satori("rewards", "score", str(src), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "external_format" in result.stdout and "per-row scores" not in result.stdout
    assert _files(tmp_path) == before  # no rows.scores.jsonl beside the input, nothing in cwd


def test_score_never_overwrites_unless_asked(satori, tmp_path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(ROW) + "\n")
    out = tmp_path / "precious.jsonl"
    out.write_text("mine\n")
    refused = satori("rewards", "score", str(src), "--out", str(out))
    assert refused.returncode == 2 and "exists" in refused.stderr and "--overwrite" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert out.read_text() == "mine\n"
    replaced = satori("rewards", "score", str(src), "--out", str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(out.read_text())["external_format"] == 1.0
    # No scratch left; the manifest remembers the scores file as satori's, so a rerun replaces it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "precious.jsonl", "rows.jsonl"]
    again = satori("rewards", "score", str(src), "--out", str(out))
    assert again.returncode == 0, again.stderr


def test_score_refuses_unusable_out_paths(satori, tmp_path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(ROW) + "\n")
    before = _files(tmp_path)
    for out, message in ((src, "differ from the input"), (tmp_path, "is a folder")):
        result = satori("rewards", "score", str(src), "--out", str(out), "--overwrite")
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    under_a_file = satori("rewards", "score", str(src), "--out", str(src / "x.jsonl"))
    assert under_a_file.returncode == 2 and "Traceback" not in under_a_file.stderr
    assert _files(tmp_path) == before


def test_score_rejects_hostile_lines_with_reasons(satori, tmp_path) -> None:
    src = tmp_path / "rows.jsonl"
    big = "9" * 400
    lines = [
        json.dumps(ROW),
        json.dumps(ROW).replace('"width": 448', f'"width": {big}'),  # beyond the float range
        json.dumps(ROW).replace('"height": 448', f'"height": {"7" * 5000}'),  # beyond int-to-text
        '{"completion": "x", "bboxs": ' + "[" * 100_000 + "]" * 100_000 + "}",  # nested too deeply
        json.dumps({**ROW, "bboxs": [[1e308, float("nan"), [1], "2"]], "possible_answers": [[["red"]]]}),
        json.dumps({**ROW, "completion": "<caption>" * 20_000}),  # 180 KB, once 33 s
        json.dumps(ROW),
    ]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.jsonl"
    start = time.monotonic()
    result = satori("rewards", "score", str(src), "--out", str(out))
    assert time.monotonic() - start < 60  # about 3 s, mostly start-up and imports
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "line 2: an integer of 400 digits" in result.stdout
    assert "line 3: an integer of 5000 digits" in result.stdout
    assert "line 4: JSON nested too deeply" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]  # in = written
    assert [r.get("error") is not None for r in rows] == [False, True, True, True, False, False, False]
    assert rows[1]["external_format"] is None
    assert rows[4]["external_bbox_acc"] == 0.0 and rows[4]["extern_vqa_acc"] == 0.0
    assert rows[5]["external_format"] == 0.0
    assert rows[0] == {**rows[6], "line": 1}


def test_overlong_lines_are_rejected_without_being_read_whole(tmp_path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(ROW) + "\n" + json.dumps({**ROW, "pad": "x" * 5000}) + "\n" + json.dumps(ROW))
    rows = list(_read_rows(src, limit=1000))
    assert [(n, row is not None, err) for n, row, err in rows] == [
        (1, True, None),
        (2, False, "line longer than 1000 characters"),
        (3, True, None),
    ]


def test_score_user_errors_are_one_line(satori, tmp_path) -> None:
    missing = satori("rewards", "score", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(ROW) + "\n")
    bad = satori("rewards", "score", str(src), "--min-pixels", "500000", "--max-pixels", "1000")
    assert bad.returncode == 2 and "min_pixels" in bad.stderr and "Traceback" not in bad.stderr


def test_list_shows_every_reward_of_the_table(satori) -> None:
    result = satori("rewards", "list")
    assert result.returncode == 0
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert rows["external_format"].split("│")[2].strip() == "SatoriFormat"
    assert "bboxs, width, height" in rows["external_bbox_acc"] and "SatoriBoxIoU" in rows["external_bbox_acc"]
    assert "possible_answers" in rows["extern_vqa_acc"] and "SatoriAnswer " in rows["extern_vqa_acc"]
    assert "image_caption" in rows["external_caption_acc"] and "SatoriCaption" in rows["external_caption_acc"]
    assert "SatoriAnswerNormalized" in rows["external_vqa_norm_acc"]


def test_list_at_80_columns_shows_every_name_whole(satori) -> None:
    """At 80 columns the table cut names (`external_capti…`); there it lists one block per reward."""
    from satori_cli.rewards import REWARDS

    result = satori("rewards", "list", env={"COLUMNS": "80"})
    assert result.returncode == 0
    assert "…" not in result.stdout.replace("<caption>…</caption>", "").replace("[[…]]", "").replace(
        ">…<", ""
    )
    words = set(re.findall(r"[\w-]+", result.stdout))
    for r in REWARDS:
        assert {r.name, r.class_name, *r.columns} <= words, r.name
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    wide = satori("rewards", "list", env={"COLUMNS": "200"})
    assert "┃ --reward_funcs name" in wide.stdout  # the table where it fits


# A 1920x1080 image: the paper's budget feeds it to the model at 840x476, so boxes in original
# pixels read as resized-input pixels land far off.
WIDE = {**ROW, "width": 1920, "height": 1080, "bboxs": [[480, 270, 1440, 810]]}


def test_score_boxes_in_original_pixels(satori, tmp_path) -> None:
    src = tmp_path / "rows.jsonl"
    original = format_completion("c", [[480, 270, 1440, 810]], "red")
    src.write_text(json.dumps({**WIDE, "completion": original}) + "\n")
    as_resized, as_original = tmp_path / "resized.jsonl", tmp_path / "original.jsonl"
    default = satori("rewards", "score", str(src), "--out", str(as_resized))
    result = satori("rewards", "score", str(src), "--boxes", "original", "--out", str(as_original))
    assert default.returncode == 0 and result.returncode == 0, result.stderr
    assert json.loads(as_original.read_text())["external_bbox_acc"] > 0.999
    assert json.loads(as_resized.read_text())["external_bbox_acc"] < 0.5
    assert "boxes in original pixels" in result.stdout
    assert "boxes in resized-input pixels, budget 200704-401408" in default.stdout
    help_text = " ".join(satori("rewards", "score", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "resized-input pixels" in help_text and "--boxes" in help_text
    bad = satori("rewards", "score", str(src), "--boxes", "pixels")
    assert bad.returncode == 2 and "--boxes must be resized or original" in bad.stderr


def test_original_boxes_score_as_their_resized_equivalents() -> None:
    """--boxes original skips the mapping: the same boxes, sent in the model's resized pixels and
    mapped back, score the same (up to the rounding of the resized coordinates)."""
    from satori_cli.pixels import PAPER_BUDGET
    from satori_cli.rewards.reward_functions import bbox_reward

    gt = [[100, 50, 700, 400], [900, 600, 1500, 1000]]
    guesses = [[[120, 60, 690, 420]], [[100, 50, 700, 400], [950, 650, 1400, 900]], [[0, 0, 10, 10]]]
    columns = {"bboxs": [gt] * 3, "width": [1920] * 3, "height": [1080] * 3}
    original = [format_completion("c", g, "a") for g in guesses]
    resized = [format_completion("c", PAPER_BUDGET.to_resized(g, 1920, 1080), "a") for g in guesses]
    direct = bbox_reward(original, budget=PAPER_BUDGET, boxes="original", **columns)
    mapped = bbox_reward(resized, budget=PAPER_BUDGET, **columns)
    assert direct[2] == 0.0 and 0.3 < direct[0] < 1.0 and direct[1] > direct[0]
    for a, b in zip(direct, mapped, strict=True):
        assert abs(a - b) < 0.02
