"""A run folder holds one run: refused unless --resume or --overwrite, a finished run is complete,
a damaged checkpoint is caught before launch, a failed start leaves nothing; progress that reads
in a log file; `report` and `rewards score` default to the newest run.

The fast tests use a finished run folder made from the tiny model's files (as `satori train`
leaves one); the slow ones real smoke runs.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest

from satori_cli.train import runlogs
from satori_cli.train.runfolder import RunComplete, check_resumable
from satori_cli.train.runlogs import Eta, LiveLine, PlainLines, ProgressFeed, eta_text

SMOKE = {"preset": "smoke", "min_pixels": 3136, "max_pixels": 12544}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and mtime: to prove nothing was touched."""
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if not p.is_dir() or p.is_symlink()
    }


def one_line_error(result, *texts: str, code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


def state(step: int, max_steps: int, stop: bool, epochs: float = 1) -> dict:
    control = {"TrainerControl": {"args": {"should_training_stop": stop}, "attributes": {}}}
    return {
        "global_step": step,
        "max_steps": max_steps,
        "num_train_epochs": epochs,
        "stateful_callbacks": control,
    }


@pytest.fixture
def finished_run(tiny_model, tmp_path) -> Path:
    """A smoke run that trained its 2 steps: run.json, train.log, checkpoint-2 (the tiny model's
    real weights and a real optimizer file) with the trainer's final state."""
    import torch

    run = tmp_path / "run"
    ckpt = run / "checkpoint-2"
    shutil.copytree(tiny_model, ckpt)
    (ckpt / "trainer_state.json").write_text(json.dumps(state(2, 2, True)))
    torch.save({"state": {}}, ckpt / "optimizer.pt")
    (run / "run.json").write_text(json.dumps({"status": "ok", "recipe": SMOKE, "started": "earlier"}))
    (run / "train.log").write_text("the first run's log\n")
    return run


# -- refusing, completing, checking --------------------------------------------------------------
def test_an_existing_run_is_refused_and_left_as_it_was(satori, finished_run, tiny_model):
    before = snapshot(finished_run)
    result = satori("train", "--model", str(tiny_model), "--out", str(finished_run))
    one_line_error(
        result, "already holds a run (status ok, last checkpoint checkpoint-2)", "--resume", "--overwrite"
    )
    assert snapshot(finished_run) == before


def test_resuming_a_finished_run_is_complete_and_trains_nothing(satori, finished_run, tiny_model):
    before = snapshot(finished_run)
    for extra in ([], ["--dry-run"], ["--", "--max_steps", "2"]):
        result = satori("train", "--model", str(tiny_model), "--out", str(finished_run), "--resume", *extra)
        assert result.returncode == 0, result.stderr
        assert "is complete (2 steps, checkpoint-2; max_steps 2): nothing trained" in result.stdout
        assert "--max_steps N with N > 2" in result.stdout and "step" not in result.stderr
    assert snapshot(finished_run) == before  # nothing launched, nothing written


def test_raising_the_limit_resumes_a_finished_run(satori, finished_run, tiny_model):
    result = satori(
        "train", "--model", str(tiny_model), "--out", str(finished_run), "--resume", "--dry-run",
        "--", "--max_steps", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"--resume_from_checkpoint {finished_run / 'checkpoint-2'}" in result.stdout


@pytest.mark.parametrize(
    ("trained", "asked", "complete"),
    [
        (state(2, 2, True), {"max_steps": 2}, True),
        (state(2, 2, True), {"max_steps": "3"}, False),
        (state(1, 2, False), {"max_steps": 2}, False),  # stopped half way: resume
        (state(5, 5, False), {"max_steps": 4}, True),  # asks for fewer than were trained
        (state(8, 8, True, epochs=1), {"num_train_epochs": 1}, True),
        (state(8, 8, True, epochs=1), {"num_train_epochs": 2}, False),
        (state(4, 8, False, epochs=1), {"num_train_epochs": 1}, False),
    ],
)
def test_when_a_resumed_run_is_complete(tmp_path, trained, asked, complete):
    (tmp_path / "checkpoint-9").mkdir()
    (tmp_path / "checkpoint-9" / "trainer_state.json").write_text(json.dumps(trained))
    if complete:
        with pytest.raises(RunComplete):
            check_resumable(tmp_path / "checkpoint-9", asked)
    else:
        check_resumable(tmp_path / "checkpoint-9", asked)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:5000]),
         "model.safetensors is truncated"),
        (lambda c: (c / "model.safetensors").write_bytes(b"\xff" * 64), "safetensors is truncated or not"),
        (lambda c: (c / "optimizer.pt").write_bytes((c / "optimizer.pt").read_bytes()[:-30]),
         "optimizer.pt is truncated or corrupt"),
        (lambda c: (c / "trainer_state.json").write_text("{"), "trainer_state.json cannot be read"),
        (lambda c: (c / "model.safetensors").unlink(), "no weights"),
    ],
    ids=["truncated-weights", "garbage-weights", "truncated-optimizer", "broken-state", "no-weights"],
)  # fmt: skip
def test_a_damaged_checkpoint_is_refused_before_launch(satori, finished_run, tiny_model, damage, message):
    damage(finished_run / "checkpoint-2")
    result = satori(
        "train",
        "--model",
        str(tiny_model),
        "--out",
        str(finished_run),
        "--resume",
        "--",
        "--max_steps",
        "3",
    )
    one_line_error(result, f"cannot resume from {finished_run / 'checkpoint-2'}", message)
    assert (finished_run / "train.log").read_text() == "the first run's log\n"  # swift never started


def test_overwrite_never_wipes_a_folder_that_is_not_a_run(satori, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for extra in ([], ["--overwrite"]):
        result = satori("train", "--out", str(mine), *extra)
        one_line_error(result, "is not empty and is not a satori run folder")
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    one_line_error(satori("train", "--resume", "--overwrite"), "use one of them")


def test_a_failed_start_leaves_no_run_folder(satori, tmp_path, tiny_model):
    new, empty = tmp_path / "a" / "b" / "run", tmp_path / "empty"
    empty.mkdir()
    for out in (new, empty):
        # The batch check fails after the data was prepared into the folder.
        result = satori(
            "train", "--model", str(tiny_model), "--out", str(out), "--", "--num_generations", "3"
        )
        one_line_error(result, "not divisible by num_generations 3")
    assert not (tmp_path / "a").exists() and list(empty.iterdir()) == []
    one_line_error(satori("train", "--out", str(new), "--data", str(tmp_path / "none.jsonl")), "not found")
    assert not (tmp_path / "a").exists()


# -- progress ------------------------------------------------------------------------------------
METRICS = (
    "{'loss': '0', 'reward': '1.234', 'rewards/SatoriFormat/mean': '0.5', "
    "'rewards/SatoriBoxIoU/mean': '0.25', 'rewards/SatoriAnswer/mean': '0', "
    "'rewards/SatoriCaption/mean': '0.125', 'kl': '0.0001', "
    "'completions/mean_length': '24', 'global_step/max_steps': '{step}/1000', 'elapsed_time': '1s'}"
)


def test_eta_comes_from_the_pace_of_the_steps():
    clock = iter([100.0, 110.0, 130.0, 10_000.0])
    eta = Eta(clock=lambda: next(clock))
    assert eta(1, 11) is None  # one step: no pace yet (model loading is not a step)
    assert eta(2, 11) == pytest.approx(90.0)  # 10 s a step, 9 left
    assert eta(4, 11) == pytest.approx(70.0)
    assert eta(12, 11) == 0  # past the total (a resumed run): never negative
    assert (eta_text(None), eta_text(70), eta_text(3725)) == ("-:--", "1:10", "1:02:05")


@pytest.mark.parametrize("width", [60, 80, 200])
def test_the_live_line_keeps_step_total_and_eta_at_any_width(width):
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=width, color_system=None)
    live = LiveLine(console)
    live.start()
    feed = ProgressFeed(live)
    feed(METRICS.replace("{step}", "12"))
    feed(METRICS.replace("{step}", "13"))
    live.stop()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).replace("\r", "\n")
    last = [line for line in text.splitlines() if line.strip()][-1]
    assert re.search(r"step +13/1000 ETA \d+:\d\d", last), last
    assert len(last) <= width and "reward 1.234" in last


def test_a_log_file_gets_one_plain_line_per_step():
    from rich.console import Console

    out = io.StringIO()
    plain = PlainLines(Console(file=out, width=80))  # not a terminal
    plain.start()
    feed = ProgressFeed(plain)
    for step in (1, 2, 3):
        feed(METRICS.replace("{step}", str(step)))
        feed("some other line of swift's output")
    lines = out.getvalue().splitlines()
    assert lines[0] == "loading model and data ..." and len(lines) == 4
    assert lines[1].startswith("step 1/1000 ETA -:-- reward 1.234 [Format 0.50, BoxIoU 0.25, Answer 0.00, ")
    assert lines[3].startswith("step 3/1000 ETA ") and lines[3].endswith("kl 0.0001 len 24")  # never cut
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


# -- real runs -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_folder_twice_is_refused_then_overwritten_and_defaults_find_the_newest(
    satori, satori_home, tiny_model
):
    """Two real smoke runs into $SATORI_HOME/runs: the second refused, then --overwrite replaces the
    first (a user's file kept); progress in a pipe is one line per step; report and rewards score
    without a folder take the newest run."""
    first = satori("train", "--model", str(tiny_model))
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    (run,) = (satori_home / "runs").iterdir()
    steps = [line for line in first.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["1/2", "2/2"], first.stdout
    (run / "notes.txt").write_text("mine")
    first_record = json.loads((run / "run.json").read_text())

    again = satori("train", "--model", str(tiny_model), "--out", str(run))
    one_line_error(again, "already holds a run (status ok, last checkpoint checkpoint-2)")

    replaced = satori("train", "--model", str(tiny_model), "--out", str(run), "--overwrite")
    assert replaced.returncode == 0, replaced.stdout[-2000:] + replaced.stderr[-2000:]
    assert (
        "replaced the earlier run" in replaced.stdout
        and "kept what satori did not write: notes.txt" in replaced.stdout
    )
    record = json.loads((run / "run.json").read_text())
    assert record["started"] != first_record["started"] and record["history"] == []  # one run, not two
    assert [m["step"] for m in runlogs.read_metrics(run)] == [1, 2]
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "train.log").read_text().count("global_step/max_steps': '1/2'") == 1  # not appended

    report = satori("report")
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[0] == f"run: {run} (the newest)"
    assert (run / "report" / "rewards.png").is_file()
    scored = satori("rewards", "score")
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.splitlines()[0] == f"run: {run} (the newest)"
    assert satori("report", str(run)).returncode == 0  # RUN/report is the run's own: a rerun replaces it
