"""End to end on CPU, nothing mocked: real GRPO steps through ms-swift with all four rewards."""

from __future__ import annotations

import json

import pytest

from satori_cli.train import runlogs

pytestmark = pytest.mark.slow
REWARD_CLASSES = 4
REWARD_NAMES = ("SatoriFormat", "SatoriBoxIoU", "SatoriAnswer", "SatoriCaption")


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the TensorBoard event files under `folder`, read by TensorBoard itself."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    events = sorted(folder.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event files under {folder}"
    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(folder))
    mux.Reload()
    series: dict[str, list[tuple[int, float]]] = {}
    for run, tags in mux.Runs().items():
        for tag in tags["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in mux.Scalars(run, tag))
    return series


def test_smoke_train_resume_report(satori, tmp_path, tiny_model):
    run = tmp_path / "run"
    first = satori("train", "--preset", "smoke", "--model", str(tiny_model), "--out", str(run))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    # Two real GRPO steps, a checkpoint, metrics for the four rewards, logged completions.
    assert runlogs.latest_checkpoint(run) == run / "checkpoint-2"
    metrics = runlogs.read_metrics(run)
    assert [m["step"] for m in metrics] == [1, 2]
    assert len(runlogs.reward_components(metrics)) == REWARD_CLASSES
    completions = runlogs.read_completions(run)
    assert completions and all(c["solution"].startswith("shapes-") for c in completions)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "ok" and info["versions"]["ms-swift"].startswith("4.")
    assert info["data"]["train"]["rows"] > 0 and len(info["data"]["train"]["sha256"]) == 64
    assert info["command"][0]["env"]["MIN_PIXELS"] == "3136"
    assert "reward" in first.stdout and (run / "train.log").stat().st_size > 0
    # The tiny model is random: when nothing scores, the run says that is expected (and only then).
    keys = ["reward", *(f"rewards/{n}/mean" for n in runlogs.reward_components(metrics))]
    all_zero = all(abs(float(m[k])) < 1e-9 for m in metrics for k in keys if k in m)
    assert ("note: every reward is 0 at every step" in first.stdout) == all_zero

    # TensorBoard, the default tracker (no network): event files in the run folder holding the
    # same reward scalars swift logged, under a run named after the run folder.
    assert info["trackers"] == {
        "report_to": ["tensorboard"],
        "run_name": "run",
        "tensorboard_dir": str(run / "runs"),
    }
    scalars = tensorboard_scalars(run / "runs")
    for name in ("reward", *(f"rewards/{cls}/mean" for cls in REWARD_NAMES)):
        got = scalars[f"train/{name}"]
        assert [step for step, _ in got] == [m["step"] for m in metrics], name
        assert [value for _, value in got] == pytest.approx([m[name] for m in metrics], abs=1e-6), name

    # --resume continues from checkpoint-2 (one more step).
    second = satori(
        "train",
        "--preset",
        "smoke",
        "--model",
        str(tiny_model),
        "--out",
        str(run),
        "--resume",
        "--",
        "--max_steps",
        "3",
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert runlogs.latest_checkpoint(run) == run / "checkpoint-3"
    assert [m["step"] for m in runlogs.read_metrics(run)] == [1, 2, 3]
    info = json.loads((run / "run.json").read_text())
    assert info["resume_from"] == str(run / "checkpoint-2") and len(info["history"]) == 1

    report = satori("report", str(run))
    assert report.returncode == 0, report.stderr
    for name in ("rewards.png", "kl.png", "completion_length.png"):
        assert (run / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gallery = (run / "report" / "gallery.html").read_text()
    assert gallery.count("data:image/png;base64,") >= 1 and "step 3" in gallery

    # The run's logged completions score again with all four rewards, in the run's own budget,
    # and agree with what the plugin logged during training.
    scored = satori("rewards", "score", str(run), "--out", str(tmp_path / "scores.jsonl"))
    assert scored.returncode == 0, scored.stderr
    assert "resized-input pixels, budget 3136-12544" in scored.stdout
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == len(runlogs.read_completions(run))
    logged = runlogs.read_completions(run)
    for row, item in zip(rows, logged, strict=True):
        for name, cls in (
            ("external_format", "SatoriFormat"),
            ("external_bbox_acc", "SatoriBoxIoU"),
            ("extern_vqa_acc", "SatoriAnswer"),
            ("external_caption_acc", "SatoriCaption"),
        ):
            assert row[name] is not None
            assert row[name] == pytest.approx(float(item[cls]), abs=1e-6)


def test_sft_stage_then_grpo_from_the_run_folder(satori, tmp_path, tiny_model):
    """`--stage sft` trains on gold completions; `--model SFT_RUN` starts GRPO from its last
    checkpoint in its own pixel budget (not the preset's)."""
    sft = tmp_path / "sft"
    config = tmp_path / "budget.yaml"
    config.write_text("min_pixels: 3136\nmax_pixels: 6272\n")  # not the smoke preset's 12544
    done = satori(
        "train", "--stage", "sft", "--model", str(tiny_model), "--config", str(config), "-o", str(sft)
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert runlogs.latest_checkpoint(sft) == sft / "checkpoint-2"
    assert [m["step"] for m in runlogs.read_metrics(sft)] == [1, 2] and "token acc" in done.stdout
    info = json.loads((sft / "run.json").read_text())
    assert info["stage"] == "sft" and info["status"] == "ok" and info["command"][0]["argv"][1] == "sft"
    assert info["command"][0]["env"]["MAX_PIXELS"] == "6272"
    # swift trained on the gold completions, boxes in the 6272 budget's frame.
    from satori_cli.pixels import PixelBudget
    from satori_cli.train.rundata import gold_completion

    rows = [json.loads(line) for line in (sft / "data" / "sft_train.jsonl").read_text().splitlines()]
    assert rows and all(
        r["messages"][-1]["content"] == gold_completion(r, PixelBudget(3136, 6272)) for r in rows
    )
    assert "[LABELS]" in (sft / "train.log").read_text()  # swift logged the labelled assistant turn

    grpo = tmp_path / "grpo"
    done = satori("train", "--model", str(sft), "-o", str(grpo))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    info = json.loads((grpo / "run.json").read_text())
    assert info["stage"] == "grpo" and info["model"] == str(sft / "checkpoint-2")
    assert info["recipe"]["max_pixels"] == 6272  # the SFT run's budget, not the smoke preset's
    assert info["command"][0]["env"]["MAX_PIXELS"] == "6272"
    assert len(runlogs.reward_components(runlogs.read_metrics(grpo))) == REWARD_CLASSES

    for run in (sft, grpo):
        report = satori("report", str(run))
        assert report.returncode == 0, report.stderr
        assert (run / "report" / "loss.png").read_bytes()[:4] == b"\x89PNG"
