"""Reading swift's run files and drawing the report (fast; the e2e test covers a real run)."""

from __future__ import annotations

import base64
import io
import json
import os
import re

import pytest
from PIL import Image

from satori_cli.errors import SatoriError
from satori_cli.grammar import format_completion
from satori_cli.pixels import PixelBudget
from satori_cli.train import runlogs
from satori_cli.train.report import write_report
from satori_cli.train.runlogs import describe

# A line as ms-swift 4.6 prints it (after a tqdm bar), values as strings.
LINE = (
    "Train:  50%|#####     | 1/2 [00:01<00:01,  1.60s/it]   {'loss': '0', 'reward': '1.196', "
    "'rewards/SatoriFormat/mean': '0.7066', 'rewards/SatoriBoxIoU/mean': '0.4896', 'kl': '0.0012', "
    "'completions/mean_length': '16', 'global_step/max_steps': '1/2', 'remaining_time': '2s'}"
)


def test_parse_metrics_line():
    m = runlogs.parse_metrics_line(LINE)
    assert (
        m["reward"] == 1.196
        and m["kl"] == 0.0012
        and runlogs.parse_step(m["global_step/max_steps"]) == (1, 2)
    )
    assert describe(m) == "reward 1.196 [Format 0.71, BoxIoU 0.49] kl 0.0012 len 16"
    # a key that names no reward (`rewards/mean`) is not a component, and never a KeyError
    assert describe(m | {"rewards/mean": 0.5}) == describe(m)
    assert runlogs.parse_metrics_line("{'a': __import__('os')} global_step/max_steps") is None
    assert runlogs.parse_metrics_line("plain log line") is None


def make_run(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    image = run / "data" / "img.png"
    Image.new("RGB", (400, 300), "white").save(image)
    budget = PixelBudget(3136, 50176)
    row = {
        "id": "r1",
        "solution": "r1",
        "messages": [{"role": "user", "content": "<image>Where?"}],
        "images": [str(image)],
        "bboxs": [[20, 20, 120, 120]],
        "width": 400,
        "height": 300,
        "possible_answers": ["left"],
        "image_caption": "c",
    }
    (run / "data" / "train.jsonl").write_text(json.dumps(row) + "\n")
    (run / "run.json").write_text(json.dumps({"recipe": {"min_pixels": 3136, "max_pixels": 50176}}))
    # The model answers in resized-input pixels; the report maps them back to the original.
    predicted = budget.to_resized([[250, 150, 350, 250]], 400, 300)
    text = format_completion("a white image", predicted, "left")
    steps = [
        {
            "reward": 0.5 * s,
            "rewards/SatoriFormat/mean": 1.0,
            "kl": 0.001 * s,
            "completions/mean_length": 20 + s,
            "global_step/max_steps": f"{s}/3",
        }
        for s in (1, 2, 3)
    ]
    steps.append({"train_runtime": 3.0, "global_step/max_steps": "3/3"})
    (run / "logging.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    table = {
        "step": ["3"],
        "prompt": ["p"],
        "completion": [text],
        "SatoriFormat": [1.0],
        "advantages": [0.0],
        "solution": ["r1"],
    }
    (run / "completions.jsonl").write_text(json.dumps(table) + "\n")
    return run


def test_report_draws_predicted_and_true_boxes(tmp_path):
    run = make_run(tmp_path)
    assert [r["step"] for r in runlogs.read_metrics(run)] == [1, 2, 3]
    report = write_report(run)
    assert {p.name for p in report.files} == {
        "rewards.png",
        "kl.png",
        "completion_length.png",
        "loss.png",
        "gallery.html",
    }
    page = (run / "report" / "gallery.html").read_text()
    assert "well-formed" in page and "step 3" in page and "Where?" in page
    data = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1)
    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    scale = image.width / 400
    # Ground truth (green) on its left edge, prediction (red) on its right edge, near the true place.
    assert image.getpixel((round(20 * scale), round(70 * scale)))[1] > 150
    red = image.getpixel((round(350 * scale) - 1, round(200 * scale)))
    assert red[0] > 150 and red[1] < 100


def test_swift_version_folders_are_found(tmp_path):
    run = tmp_path / "run"
    for name in ("v0-20250101-000000", "v1-20250102-000000"):
        (run / name / "checkpoint-5").mkdir(parents=True)
        (run / name / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (run / "v1-20250102-000000" / "checkpoint-10").mkdir()
    (run / "v1-20250102-000000" / "checkpoint-10" / "trainer_state.json").write_text("{}")
    assert runlogs.latest_checkpoint(run).name == "checkpoint-10"
    assert runlogs.run_dir_of(runlogs.latest_checkpoint(run)) == run


def test_report_points_at_the_grounding_eval_of_the_val_split(tmp_path, satori):
    run = make_run(tmp_path)
    assert write_report(run).eval_command is None  # no val split: nothing to point at
    (run / "data" / "val.jsonl").write_text((run / "data" / "train.jsonl").read_text())
    (run / "checkpoint-2" / "trainer_state.json").parent.mkdir()
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")
    info = json.loads((run / "run.json").read_text()) | {"model": "/models/base"}
    (run / "run.json").write_text(json.dumps(info))
    command = write_report(run).eval_command
    assert command == (
        f"satori eval --data {run / 'data' / 'val.jsonl'} --model {run / 'checkpoint-2'} "
        "--min-pixels 3136 --max-pixels 50176 --baseline --baseline-model /models/base"
    )
    result = satori("report", str(run))
    assert result.returncode == 0, result.stderr
    assert "grounding evaluation of the val split" in result.stdout and command in result.stdout


def _zero_run(tmp_path):
    """A run of a random model: every reward 0 at every step, completion length varying."""
    run = make_run(tmp_path)
    steps = [
        {
            "reward": 0.0,
            "rewards/SatoriFormat/mean": 0.0,
            "rewards/SatoriBoxIoU/mean": 0.0,
            "rewards/SatoriAnswer/mean": 0.0,
            "kl": 0.0,
            "completions/mean_length": 20 + s,
            "completions/max_length": 24,
            "global_step/max_steps": f"{s}/4",
        }
        for s in (1, 2, 3, 4)
    ]
    (run / "logging.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    return run


def test_the_report_marks_flat_and_overlapping_series(tmp_path):
    """Four reward series at 0 were drawn over each other: only one seemed to exist."""
    report = write_report(_zero_run(tmp_path))
    legend = Image.open(report.out_dir / "rewards.png").text["Description"].split("; ")
    assert legend == [
        "total (flat at 0.000)",
        "SatoriFormat (flat at 0.000, = total)",
        "SatoriBoxIoU (flat at 0.000, = total)",
        "SatoriAnswer (flat at 0.000, = total)",
    ]
    lengths = Image.open(report.out_dir / "completion_length.png").text["Description"]
    assert lengths == "mean; max (flat at 24.000)"
    assert any("every reward is 0 at every step" in n and "random model" in n for n in report.notes)


def test_a_learning_run_gets_no_zero_note(tmp_path):
    report = write_report(make_run(tmp_path))
    legend = Image.open(report.out_dir / "rewards.png").text["Description"]
    assert legend == "total; SatoriFormat (flat at 1.000)"
    assert report.notes == []


def test_the_report_command_says_a_random_model_scores_zero(tmp_path, satori):
    result = satori("report", str(_zero_run(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "note: every reward is 0 at every step: expected for a random model" in result.stdout


def test_the_report_says_the_reward_trend_that_noisy_steps_hide(tmp_path, satori):
    """GRPO's reward jumps step to step (a few sampled completions each): the note gives each
    reward's mean over the first and the last quarter of the steps."""
    run = tmp_path / "run"
    run.mkdir()
    totals = [1.0, 1.4, 0.8, 1.2, 1.1, 0.9, 1.5, 1.3, 1.6, 1.2, 1.8, 1.4]
    steps = [
        {"step": s, "reward": r, "rewards/SatoriFormat/mean": r / 2, "global_step/max_steps": f"{s}/12"}
        for s, r in enumerate(totals, 1)
    ]
    (run / "logging.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    result = satori("report", str(run))
    assert result.returncode == 0, result.stderr
    assert (
        "note: mean reward over the first 3 and the last 3 of 12 steps: total 1.07 -> 1.47, "
        "SatoriFormat 0.53 -> 0.73"
    ) in result.stdout


def _edit_row(run, **changes):
    path = run / "data" / "train.jsonl"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes) + "\n")


@pytest.mark.parametrize(
    "changes",
    [
        {"bboxs": [["a", 1, 2, 3]]},
        {"bboxs": [[10, 10, 1, 1]]},  # corners in the wrong order
        {"bboxs": [[1e308, 1, 2, 3]]},
        {"bboxs": [[10**400, 1, 2, 3]]},  # too large for a float
        {"bboxs": [[[1], 2, 3, 4]]},
        {"bboxs": 5},
        {"images": [{"path": 5}]},
        {"images": 5},
        {"images": ["FIFO"]},  # opening it would block for ever
        {"messages": "text", "possible_answers": 7},
        {"solution": {"not": "hashable"}},
    ],
)
@pytest.mark.timeout(60)  # the FIFO row hung the report before it was refused: fail, do not hang
def test_hostile_data_rows_cost_a_card_its_picture_not_the_report(tmp_path, changes):
    run = make_run(tmp_path)
    if changes.get("images") == ["FIFO"]:
        os.mkfifo(tmp_path / "fifo.png")
        changes = {"images": [str(tmp_path / "fifo.png")]}
    _edit_row(run, **changes)
    if "solution" in changes:  # the completion log names the row the same way
        table = json.loads((run / "completions.jsonl").read_text())
        (run / "completions.jsonl").write_text(json.dumps(table | {"solution": [changes["solution"]]}) + "\n")
    write_report(run)
    assert "step 3" in (run / "report" / "gallery.html").read_text()


@pytest.mark.parametrize(
    ("run_json", "match"),
    [
        ([1], "does not hold a JSON object"),
        ({"recipe": "x"}, "records no pixel budget"),
        ({"recipe": {"min_pixels": "x", "max_pixels": 50176}}, "records no pixel budget"),
        ({"recipe": {"min_pixels": 10**7, "max_pixels": 10}}, "must not exceed max_pixels"),
    ],
)
def test_a_malformed_run_json_is_one_line(tmp_path, run_json, match):
    run = make_run(tmp_path)
    (run / "run.json").write_text(json.dumps(run_json))
    with pytest.raises(SatoriError, match=match):
        write_report(run)


def test_a_step_of_thousands_of_digits_is_skipped(tmp_path):
    run = make_run(tmp_path)
    with (run / "logging.jsonl").open("a") as fh:
        fh.write(json.dumps({"global_step/max_steps": "9" * 5000 + "/3", "reward": 1}) + "\n")
        fh.write(json.dumps({"global_step/max_steps": "\u00b2/3", "reward": 1}) + "\n")
    assert [r["step"] for r in runlogs.read_metrics(run)] == [1, 2, 3]
