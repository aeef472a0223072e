"""`satori rewards score` and `satori rewards list` as a user runs them."""

from __future__ import annotations

import json

from satori_cli.grammar import format_completion

ROW = {
    "completion": format_completion("a red square on white", [[100, 100, 300, 300]], "red"),
    "bboxs": [[100, 100, 300, 300]],
    "width": 448,
    "height": 448,
    "possible_answers": ["red"],
    "image_caption": "a red square on a white background",
}


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
    result = satori(
        "rewards", "score", str(src), "--normalized-vqa", "--min-pixels", "3136", "--max-pixels", "50176"
    )
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in (tmp_path / "rows.scores.jsonl").read_text().splitlines()]
    assert row["extern_vqa_acc"] == 0.0 and row["external_vqa_norm_acc"] == 1.0
    assert row["external_bbox_acc"] < 0.9  # boxes were written for the paper budget, not this one


def test_score_user_errors_are_one_line(satori, tmp_path) -> None:
    missing = satori("rewards", "score", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(ROW) + "\n")
    bad = satori("rewards", "score", str(src), "--min-pixels", "500000", "--max-pixels", "1000")
    assert bad.returncode == 2 and "min_pixels" in bad.stderr and "Traceback" not in bad.stderr


def test_list_names_the_rewards(satori) -> None:
    result = satori("rewards", "list")
    assert result.returncode == 0
    for name in ("external_format", "external_bbox_acc", "extern_vqa_acc", "external_caption_acc"):
        assert name in result.stdout
