"""Recipes: the bundled presets, and the precedence preset < --config < flags < pass-through."""

from __future__ import annotations

import pytest

from satori_cli.errors import SatoriError
from satori_cli.pixels import PAPER_BUDGET
from satori_cli.train.recipe import list_presets, parse_passthrough, resolve_recipe


def test_bundled_presets():
    assert list_presets() == ["fast", "learn", "lora", "paper", "server", "smoke"]


def test_server_is_the_paper_recipe_with_rollouts_on_gpus_of_their_own():
    from satori_cli.train.plan import generation_batch_check

    paper, server = resolve_recipe("paper"), resolve_recipe("server")
    keys = set(paper.swift) | set(server.swift)
    assert {k for k in keys if paper.swift.get(k) != server.swift.get(k)} == {
        "use_vllm",
        "vllm_mode",
        "per_device_eval_batch_size",  # 8 x 6 processes = 48 = 3 groups of 16
    }
    assert server.swift["use_vllm"] is True and server.swift["vllm_mode"] == "server"
    assert (server.gpus, server.rollout_gpus, server.model) == (6, 2, paper.model)
    assert server.budget == paper.budget and "vllm" in server.needs
    assert generation_batch_check(server.swift, server.gpus, evaluating=True) is None


def test_paper_is_the_published_recipe_in_4x_names():
    r = resolve_recipe("paper")
    s = r.swift
    assert r.gpus == 4 and r.budget == PAPER_BUDGET and r.model == "base"
    expected = {
        "tuner_type": "full",
        "torch_dtype": "bfloat16",
        "deepspeed": "zero2",
        "use_vllm": False,
        "learning_rate": 1e-6,
        "beta": 0.001,
        "num_generations": 16,
        "temperature": 1.0,
        "top_p": 0.9,
        "top_k": 50,
        "max_completion_length": 512,
        "max_length": 2048,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "num_train_epochs": 1,
        "save_steps": 200,
        "eval_steps": 200,
        "log_completions": True,
    }
    assert {k: s[k] for k in expected} == expected
    # 3.x names that 4.x removed or renamed must not appear.
    assert not {"train_type", "vllm_device", "num_infer_workers"} & set(s)


def test_fast_is_paper_plus_colocated_vllm():
    paper, fast = resolve_recipe("paper").swift, resolve_recipe("fast").swift
    assert fast["use_vllm"] is True and fast["vllm_mode"] == "colocate" and fast["sleep_level"] >= 1
    for key in (
        "learning_rate",
        "beta",
        "num_generations",
        "max_completion_length",
        "tuner_type",
        "deepspeed",
    ):
        assert fast[key] == paper[key]
    assert "vllm" in resolve_recipe("fast").needs


def test_smoke_is_tiny_and_cpu():
    r = resolve_recipe()  # the default preset
    assert r.preset == "smoke" and r.model == "tiny" and r.gpus == 0
    assert r.swift["max_steps"] == 2 and r.swift["torch_dtype"] == "float32" and "deepspeed" not in r.swift
    assert r.max_pixels < PAPER_BUDGET.min_pixels


def test_stage_arguments(tmp_path):
    r = resolve_recipe("smoke", overrides={"sft": parse_passthrough(["--max_steps", "5"])})
    assert r.stage_args("sft")["max_steps"] == "5" and r.stage_args("grpo")["max_steps"] == 2
    assert "num_generations" not in r.sft and "learning_rate" in r.sft
    assert resolve_recipe("paper").sft == {}  # no cold-start stage in the published recipe
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("sft:\n  learning_rate: 0.5\n")
    assert resolve_recipe("smoke", cfg).sft["learning_rate"] == 0.5


def test_learn_is_sft_then_grpo_on_the_cpu():
    r = resolve_recipe("learn")
    assert r.gpus == 0 and r.sft and r.swift and r.budget.max_pixels <= 12544
    for args in (r.sft, r.swift):
        # The miniature's vision tower is random: both stages train it.
        assert args["freeze_vit"] is False and args["torch_dtype"] == "float32"
    assert r.swift["log_completions"] is True  # `satori report` draws the reward curves


def test_precedence_preset_config_flags(tmp_path):
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("preset: lora\ngpus: 2\nmodel: /m\nswift:\n  learning_rate: 2.0e-5\n  lora_rank: 4\n")
    r = resolve_recipe(None, cfg)
    assert r.preset == "lora" and r.gpus == 2 and r.model == "/m"
    assert r.swift["learning_rate"] == 2e-5 and r.swift["lora_rank"] == 4
    assert r.swift["num_generations"] == 4  # untouched preset value
    r = resolve_recipe(
        "paper", cfg, {"gpus": 8, "model": None, "swift": parse_passthrough(["--lora_rank", "2"])}
    )
    assert r.preset == "paper" and r.gpus == 8 and r.model == "/m" and r.swift["lora_rank"] == "2"


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1e-5\n")
    with pytest.raises(SatoriError, match=r"unknown key.*learning_rate"):
        resolve_recipe(None, bad)
    bad.write_text("swift: [1, 2]\n")
    with pytest.raises(SatoriError, match="'swift' must be a mapping"):
        resolve_recipe(None, bad)
    bad.write_text("a: [\n")
    with pytest.raises(SatoriError, match="not valid YAML"):
        resolve_recipe(None, bad)
    with pytest.raises(SatoriError, match="cannot read"):
        resolve_recipe(None, tmp_path / "missing.yaml")
    with pytest.raises(SatoriError, match="unknown preset 'huge'"):
        resolve_recipe("huge")
    bad.write_text("min_pixels: 1000\nmax_pixels: 10\n")
    with pytest.raises(SatoriError, match="invalid recipe"):
        resolve_recipe(None, bad)


def test_passthrough():
    got = parse_passthrough(["--max_steps", "3", "--reward_weights", "1", "0.5", "--seed=7", "--lr-x", "-1"])
    assert got == {"max_steps": "3", "reward_weights": ["1", "0.5"], "seed": "7", "lr_x": "-1"}
    with pytest.raises(SatoriError, match="unexpected pass-through"):
        parse_passthrough(["3"])
    with pytest.raises(SatoriError, match="has no value"):
        parse_passthrough(["--max_steps"])
