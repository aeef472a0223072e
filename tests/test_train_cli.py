"""`satori train` / `satori report` as a user runs them: dry runs and one-line preflight errors."""

from __future__ import annotations

import shlex

from tests.conftest import prepared


def assert_one_line_error(result, text: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_dry_run_multi_node_prints_each_node(satori, tmp_path):
    data = prepared(tmp_path)
    result = satori(
        "train",
        "--preset",
        "fast",
        "--gpus",
        "8",
        "--nodes",
        "2",
        "--master-addr",
        "10.1.2.3",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--dry-run",
        "--",
        "--seed",
        "7",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "# node 0 of 2:" in out and "# node 1 of 2:" in out
    commands = [line for line in out.splitlines() if " rlhf " in line]
    assert len(commands) == 2
    for rank, line in enumerate(commands):
        argv = shlex.split(line)
        env = dict(
            a.split("=", 1)
            for a in argv
            if "=" in a and not a.startswith("-") and a.isascii() and a.split("=", 1)[0].isupper()
        )
        assert env["NODE_RANK"] == str(rank) and env["NNODES"] == "2" and env["NPROC_PER_NODE"] == "8"
        assert env["MASTER_ADDR"] == "10.1.2.3" and env["MIN_PIXELS"] == "200704"
        assert "--use_vllm" in argv and argv[argv.index("--vllm_mode") + 1] == "colocate"
        assert argv[argv.index("--seed") + 1] == "7"
        assert argv[argv.index("--output_dir") + 1] == str(tmp_path / "run")
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_dry_run_smoke_default_and_local_model(satori, tmp_path, tiny_model):
    result = satori("train", "--dry-run", "--model", str(tiny_model))
    assert result.returncode == 0, result.stderr
    assert "--model_type qwen2_5_vl --template qwen2_5_vl" in result.stdout
    assert "external_format external_bbox_acc extern_vqa_acc external_caption_acc" in result.stdout
    assert "NPROC_PER_NODE" not in result.stdout and "MAX_PIXELS=12544" in result.stdout
    # swift's token counts travel with the pixels; --gpus 0 (the smoke preset's) hides the GPUs.
    assert "IMAGE_MAX_TOKEN_NUM=16" in result.stdout and "IMAGE_MIN_TOKEN_NUM=4" in result.stdout
    assert "CUDA_VISIBLE_DEVICES=''" in result.stdout
    # --gpus 1 gives the one process the first GPU of the pool (GPU 0 on a machine without any).
    on_gpu = satori("train", "--dry-run", "--model", str(tiny_model), "--gpus", "1")
    assert on_gpu.returncode == 0 and "CUDA_VISIBLE_DEVICES=0 " in on_gpu.stdout


def test_preflight_refuses_a_conflicting_image_token_num(satori, tmp_path, tiny_model):
    result = satori(
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(prepared(tmp_path)),
        "-o",
        str(tmp_path / "r"),
        env={"IMAGE_MAX_TOKEN_NUM": "1280"},
    )
    assert_one_line_error(result, "IMAGE_MAX_TOKEN_NUM=1280 in the environment conflicts with")
    assert "max_pixels 12544" in result.stderr


def test_preflight_refuses_a_budget_swift_would_floor(satori, tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("preset: paper\nmax_pixels: 400000\n")
    result = satori("train", "--config", str(config), "--data", str(prepared(tmp_path)), "--dry-run")
    assert_one_line_error(result, "max_pixels 400000 is not a multiple of 28x28=784")
    assert "use 399840 or 400624" in result.stderr


def test_preflight_no_gpu(satori, tmp_path):
    result = satori(
        "train", "--preset", "paper", "--data", str(prepared(tmp_path)), "-o", str(tmp_path / "r")
    )
    assert_one_line_error(result, "--gpus 4 asked for, but no GPU visible")


def test_preflight_batch_not_divisible(satori, tmp_path):
    result = satori("train", "--preset", "paper", "--gpus", "1", "--data", str(prepared(tmp_path)))
    assert_one_line_error(result, "is not divisible by num_generations 16")


def test_preflight_bad_flags(satori, tmp_path):
    assert_one_line_error(satori("train", "--preset", "nope"), "unknown preset 'nope'")
    assert_one_line_error(satori("train", "--data", str(tmp_path / "missing.jsonl")), "not found")
    assert_one_line_error(
        satori("train", "--resume", "-o", str(tmp_path / "fresh")), "fresh has no checkpoint yet"
    )
    assert_one_line_error(satori("train", "--resume"), "--resume: no earlier run with a checkpoint")
    assert_one_line_error(satori("train", "--resume-from", str(tmp_path)), "no checkpoint there")
    assert_one_line_error(
        satori("train", "--nodes", "2", "--gpus", "1", "--master-addr", "a"), "--nodes > 1 needs --node-rank"
    )
    assert_one_line_error(satori("train", "--dry-run", "--", "7"), "unexpected pass-through argument '7'")


def test_report_needs_a_run(satori, tmp_path):
    assert_one_line_error(satori("report", str(tmp_path)), "has no training metrics")


def test_dry_run_sft_stage(satori, tmp_path, tiny_model):
    data = prepared(tmp_path)
    result = satori(
        "train",
        "--stage",
        "sft",
        "--model",
        str(tiny_model),
        "--data",
        str(data),
        "--dry-run",
        "--",
        "--max_steps",
        "9",
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if " sft " in line)
    argv = shlex.split(line)
    assert argv[argv.index("--max_steps") + 1] == "9" and "--rlhf_type" not in argv
    assert "--reward_funcs" not in argv and "--external_plugins" not in argv
    assert argv[argv.index("--system") + 1].endswith("system.txt") and "MAX_PIXELS=12544" in argv
    assert argv[argv.index("--dataset") + 1].endswith("sft_train.jsonl")
    assert "gold completion as the assistant turn" in result.stdout


def test_stage_errors(satori, tmp_path):
    data = str(prepared(tmp_path))
    assert_one_line_error(
        satori("train", "--preset", "paper", "--stage", "sft", "--data", data, "--dry-run"),
        "preset 'paper' has no SFT stage",
    )
    assert_one_line_error(satori("train", "--stage", "dpo", "--dry-run"), "unknown --stage 'dpo'")
    assert_one_line_error(
        satori("train", "--stage", "sft", "--grammar", "r1", "--data", data, "--dry-run"),
        "--stage sft has no gold <think> text to train the r1 grammar on",
    )
