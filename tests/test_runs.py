"""A run folder is a model: its last checkpoint, and the pixel budget its run.json records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from satori_cli.errors import SatoriError
from satori_cli.pixels import PixelBudget
from satori_cli.runs import checkpoint_of, is_run_dir, run_dir_for, run_settings

REPO = Path(__file__).resolve().parents[1]


def make_run(folder: Path, steps=(5, 40, 200), stage: str | None = "sft", budget=(3136, 6272)) -> Path:
    folder.mkdir(parents=True)
    info = {"status": "ok", "model": "/models/tiny", "recipe": {"preset": "learn"}}
    info["recipe"].update(min_pixels=budget[0], max_pixels=budget[1])
    if stage:
        info["stage"] = stage
    (folder / "run.json").write_text(json.dumps(info))
    for step in steps:
        ckpt = folder / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text("{}")
        (ckpt / "config.json").write_text("{}")
    return folder


def test_last_checkpoint_by_step_not_by_name(tmp_path):
    run = make_run(tmp_path / "run")
    assert is_run_dir(run) and run_dir_for(run) == run.resolve()
    assert checkpoint_of(run) == (run / "checkpoint-200").resolve()  # 200 > 40 although "200" < "40"
    # A checkpoint inside a run is itself, and belongs to the run.
    assert checkpoint_of(run / "checkpoint-40") == (run / "checkpoint-40").resolve()
    assert run_dir_for(run / "checkpoint-40") == run.resolve()


def test_run_settings(tmp_path):
    settings = run_settings(make_run(tmp_path / "run"))
    assert settings.budget == PixelBudget(3136, 6272)
    assert (settings.stage, settings.preset, settings.base_model) == ("sft", "learn", "/models/tiny")
    older = run_settings(make_run(tmp_path / "old", stage=None))  # before stages: GRPO
    assert older.stage == "grpo" and older.grammar is None


def test_not_runs_and_broken_runs(tmp_path):
    plain = tmp_path / "plain-model"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    assert run_dir_for(plain) is None and run_dir_for("Qwen/Qwen2.5-VL-3B-Instruct") is None
    with pytest.raises(SatoriError, match="has no checkpoint yet"):
        checkpoint_of(make_run(tmp_path / "empty", steps=()))
    lora = make_run(tmp_path / "lora", steps=(3,))
    (lora / "checkpoint-3" / "config.json").unlink()
    (lora / "checkpoint-3" / "adapter_config.json").write_text("{}")
    with pytest.raises(SatoriError, match="LoRA adapter"):
        checkpoint_of(lora)
    bad = make_run(tmp_path / "bad")
    (bad / "run.json").write_text(json.dumps({"recipe": {"min_pixels": "many"}}))
    with pytest.raises(SatoriError, match="no valid pixel budget"):
        run_settings(bad)
    (bad / "run.json").write_text("{not json")
    with pytest.raises(SatoriError, match="not valid JSON"):
        run_settings(bad)


def test_importing_runs_stays_light():
    """eval, serve and predict will resolve models through it: no torch, swift or transformers."""
    code = (
        "import sys, satori_cli.runs; heavy = {'torch', 'swift', 'transformers', 'PIL'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
