"""Preflight: every failure is one clear line (exit code 2) before anything heavy starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from satori_cli.errors import SatoriError
from satori_cli.gpus import Gpu
from satori_cli.train import preflight as pf
from satori_cli.train.command import Launch, TrainPlan
from satori_cli.train.recipe import parse_passthrough, resolve_recipe
from satori_cli.train.resources import estimate_gpu_memory_gib, memory_shortfall, model_params_billion


def plan_for(tmp_path: Path, preset: str = "smoke", gpus: int | None = None, extra=(), **kw) -> TrainPlan:
    recipe = resolve_recipe(preset, overrides={"swift": parse_passthrough(list(extra))})
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": [], "images": [], "bboxs": []}\n')
    return TrainPlan(
        recipe=recipe,
        model=kw.get("model", str(tmp_path)),
        train_path=kw.get("train_path", data),
        output_dir=kw.get("output", tmp_path / "run"),
        plugin=Path("plugin.py"),
        reward_funcs=("external_format",),
        system_prompt=Path("system.txt"),
        launch=Launch(gpus=recipe.gpus if gpus is None else gpus),
        resume=kw.get("resume"),
    )


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and exc.value.exit_code == 2
    return message


def test_gpus_requested_but_absent(tmp_path):
    with pytest.raises(SatoriError) as exc:
        pf.check_gpus(4, [])
    assert one_line(exc).startswith("--gpus 4 asked for, but no GPU visible")
    with pytest.raises(SatoriError, match="but 2 GPU"):
        pf.check_gpus(4, [Gpu(0, "A100", 80), Gpu(1, "A100", 80)])
    pf.check_gpus(0, [])


def test_batch_not_divisible(tmp_path):
    plan = plan_for(tmp_path, "paper", gpus=1)
    with pytest.raises(SatoriError) as exc:
        pf.check_batch(plan)
    assert "= 8 completions is not divisible by num_generations 16" in one_line(exc)
    pf.check_batch(plan_for(tmp_path, "paper", gpus=4))
    with pytest.raises(SatoriError, match="num_generations 3"):
        pf.check_batch(plan_for(tmp_path, "smoke", extra=["--num_generations", "3"]))


def test_missing_deepspeed_and_vllm(tmp_path):
    with pytest.raises(SatoriError) as exc:
        pf.check_needs(plan_for(tmp_path, "paper"))
    assert "ZeRO (--deepspeed) needs the Python package 'deepspeed'" in one_line(exc)
    with pytest.raises(SatoriError, match="vLLM rollouts"):
        pf.check_needs(plan_for(tmp_path, "lora", extra=["--use_vllm", "true", "--vllm_mode", "colocate"]))
    pf.check_needs(plan_for(tmp_path, "smoke"))


def test_model_unreachable(tmp_path):
    with pytest.raises(SatoriError) as exc:
        pf.check_model(str(tmp_path / "nope"))
    assert "not found or has no config.json" in one_line(exc)
    with pytest.raises(SatoriError, match="neither a local folder nor a hub id"):
        pf.check_model("just-a-name")
    # The tests run with HF_HUB_OFFLINE=1: an uncached hub id cannot be reached.
    with pytest.raises(SatoriError, match="not in the local Hugging Face cache"):
        pf.check_model("Org/Not-Cached-Model")


def test_data_missing_or_empty(tmp_path):
    with pytest.raises(SatoriError) as exc:
        pf.check_data(tmp_path / "missing.jsonl", None)
    assert "not found" in one_line(exc)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SatoriError, match="is empty"):
        pf.check_data(empty, None)


def test_output_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SatoriError) as exc:
        pf.check_output(blocker / "run")
    assert "is not writable" in one_line(exc)
    pf.check_output(tmp_path / "ok" / "run")


def test_resume_without_checkpoint(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    plan = plan_for(tmp_path, model=str(tmp_path / "model"), resume=tmp_path / "checkpoint-9")
    with pytest.raises(SatoriError) as exc:
        pf.preflight(plan, [])
    assert "is not a checkpoint" in one_line(exc)


def test_memory_estimate(tmp_path):
    paper, lora = resolve_recipe("paper").swift, resolve_recipe("lora").swift
    a100, small = [Gpu(0, "A100-80GB", 80.0)] * 4, [Gpu(0, "RTX 4090", 24.0)]
    assert memory_shortfall(3.0, paper, a100, 4) is None
    assert memory_shortfall(3.0, lora, small, 1) is None
    problem = memory_shortfall(3.0, paper, small, 1)
    assert problem.startswith("this recipe needs about") and "RTX 4090 has 24 GiB" in problem
    assert memory_shortfall(72.0, paper, a100, 4) is not None
    # ZeRO-2 shards the optimizer: more GPUs, less memory each.
    assert estimate_gpu_memory_gib(3.0, paper, 8) < estimate_gpu_memory_gib(3.0, paper, 2)
    assert memory_shortfall(3.0, resolve_recipe("fast").swift, a100, 4) is None
    assert model_params_billion("Qwen/Qwen2.5-VL-3B-Instruct") == 3.0
    assert model_params_billion("Qwen/Qwen2.5-VL-72B-Instruct") == 72.0
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 8e9}}))
    assert model_params_billion(str(folder)) == 4.0


def test_memory_check_through_preflight(tmp_path):
    plan = plan_for(tmp_path, "paper", gpus=4, model="Qwen/Qwen2.5-VL-72B-Instruct")
    with pytest.raises(SatoriError) as exc:
        pf.check_memory(plan, [Gpu(i, "A100-80GB", 80.0) for i in range(4)])
    assert "72.0B model" in one_line(exc)
