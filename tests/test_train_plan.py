"""The swift command builder, checked against ms-swift 4.x's own argument parser."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from satori_cli.errors import SatoriError
from satori_cli.train.plan import Launch, TrainPlan, build_commands, generation_batch_check
from satori_cli.train.recipe import list_presets, parse_passthrough, resolve_recipe

FUNCS = ("external_format", "external_bbox_acc", "extern_vqa_acc", "external_caption_acc")


def _parser(arguments_class):
    """ms-swift's parser, built the way `swift rlhf` / `swift sft` build it (no __post_init__)."""
    from transformers import HfArgumentParser

    try:
        from swift.utils.utils import _patch_get_type_hints
    except ImportError:  # pragma: no cover - older layouts
        _patch_get_type_hints = contextlib.nullcontext
    with _patch_get_type_hints():
        return HfArgumentParser([arguments_class])


@pytest.fixture(scope="module")
def swift_parser():
    """ms-swift's RLHF argument parser."""
    from swift.arguments import RLHFArguments

    return _parser(RLHFArguments)


@pytest.fixture(scope="module")
def sft_parser():
    """ms-swift's SFT argument parser (`swift sft`)."""
    from swift.arguments import SftArguments

    return _parser(SftArguments)


def make_plan(
    preset: str, launch: Launch | None = None, extra: list[str] | None = None, stage: str = "grpo", **kw
) -> TrainPlan:
    key = "sft" if stage == "sft" else "swift"
    recipe = resolve_recipe(preset, overrides={key: parse_passthrough(extra or [])})
    return TrainPlan(
        recipe=recipe,
        model=kw.get("model", "Qwen/Qwen2.5-VL-3B-Instruct"),
        train_path=Path("/data/train.jsonl"),
        val_path=kw.get("val_path"),
        output_dir=Path("/runs/r1"),
        plugin=Path("/p/swift_plugin.py"),
        reward_funcs=FUNCS,
        system_prompt=Path("/p/system.txt"),
        launch=launch or Launch(gpus=recipe.gpus),
        local_qwen2_5_vl=kw.get("local", False),
        resume=kw.get("resume"),
        stage=stage,
    )


def unknown_args(parser, argv: list[str]) -> list[str]:
    assert argv[1] == "rlhf"
    _, remaining = parser.parse_known_args(argv[2:])
    return remaining


CASES = [
    *[(p, Launch(gpus=resolve_recipe(p).gpus), []) for p in list_presets()],
    ("paper", Launch(gpus=8, nodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29600), []),
    ("fast", Launch(gpus=4, nodes=4, master_addr="node0"), ["--vllm_gpu_memory_utilization", "0.5"]),
    ("lora", Launch(gpus=1), ["--lora_rank", "8", "--reward_weights", "1", "1", "1", "0.5", "--seed=3"]),
]


@pytest.mark.parametrize(("preset", "launch", "extra"), CASES, ids=lambda c: str(c)[:40])
def test_every_argument_exists_in_ms_swift_4(swift_parser, preset, launch, extra):
    plan = make_plan(
        preset, launch, extra, local=preset == "smoke", model="/m/tiny" if preset == "smoke" else None
    )
    for _, cmd in build_commands(plan, "/venv/bin/swift"):
        assert cmd.argv[:4] == ["/venv/bin/swift", "rlhf", "--rlhf_type", "grpo"]
        assert unknown_args(swift_parser, cmd.argv) == []
        for removed in ("--vllm_device", "--num_infer_workers", "--train_type"):
            assert removed not in cmd.argv
        flags = [a for a in cmd.argv if a.startswith("--")]
        assert len(flags) == len(set(flags)), "a flag appears twice"


SFT_PRESETS = [p for p in list_presets() if resolve_recipe(p).sft]


def test_presets_with_a_cold_start_stage():
    assert SFT_PRESETS == ["learn", "smoke"]


@pytest.mark.parametrize("preset", SFT_PRESETS)
def test_every_sft_argument_exists_in_ms_swift_4(sft_parser, swift_parser, preset):
    extra = ["--max_steps", "7", "--seed=3"]
    plan = make_plan(preset, extra=extra, stage="sft", local=True, model="/m/tiny", val_path=Path("/v.jsonl"))
    ((_, cmd),) = build_commands(plan, "/venv/bin/swift")
    assert cmd.argv[:2] == ["/venv/bin/swift", "sft"]
    ns, rest = sft_parser.parse_known_args(cmd.argv[2:])
    assert rest == []
    flags = [a for a in cmd.argv if a.startswith("--")]
    assert len(flags) == len(set(flags)), "a flag appears twice"
    # The same prompt, template, budget and output layout as GRPO; no rewards.
    assert ns.model == "/m/tiny" and ns.model_type == "qwen2_5_vl" and ns.template == "qwen2_5_vl"
    assert ns.system == "/p/system.txt" and ns.output_dir == "/runs/r1" and ns.add_version is False
    assert ns.dataset == ["/data/train.jsonl"] and ns.val_dataset == ["/v.jsonl"]
    assert ns.max_steps == 7 and ns.seed == 3 and ns.tuner_type == "full"
    assert "--reward_funcs" not in cmd.argv and "--rlhf_type" not in cmd.argv
    assert cmd.env == make_plan(preset).env()
    # GRPO-only arguments are not SFT arguments: the check would catch one in an sft: section.
    _, rest = sft_parser.parse_known_args(["--num_generations", "8", "--beta", "0"])
    assert rest == ["--num_generations", "8", "--beta", "0"]


def test_the_check_catches_removed_arguments(swift_parser):
    argv = ["swift", "rlhf", "--rlhf_type", "grpo", "--vllm_device", "auto", "--train_type", "full"]
    assert unknown_args(swift_parser, argv) == ["--vllm_device", "auto", "--train_type", "full"]


def test_fixed_plumbing_and_values(swift_parser):
    plan = make_plan(
        "smoke",
        local=True,
        model="/m/tiny",
        val_path=Path("/data/val.jsonl"),
        resume=Path("/runs/r1/checkpoint-2"),
        extra=["--max_steps", "3"],
    )
    ((_, cmd),) = build_commands(plan)
    ns, rest = swift_parser.parse_known_args(cmd.argv[2:])
    assert rest == []
    assert ns.model == "/m/tiny" and ns.model_type == "qwen2_5_vl" and ns.template == "qwen2_5_vl"
    assert ns.reward_funcs == list(FUNCS) and ns.external_plugins == ["/p/swift_plugin.py"]
    assert ns.system == "/p/system.txt" and ns.output_dir == "/runs/r1" and ns.add_version is False
    assert ns.dataset == ["/data/train.jsonl"] and ns.val_dataset == ["/data/val.jsonl"]
    assert ns.resume_from_checkpoint == "/runs/r1/checkpoint-2"
    assert ns.max_steps == 3  # pass-through wins over the preset's 2
    # Both pixel bounds travel to swift and to the reward plugin, with the token counts swift
    # derives from them (pixels // 784); a CPU run needs no launcher and hides the GPUs.
    assert cmd.env == {
        "MIN_PIXELS": "3136",
        "MAX_PIXELS": "12544",
        "IMAGE_MIN_TOKEN_NUM": "4",
        "IMAGE_MAX_TOKEN_NUM": "16",
        "CUDA_VISIBLE_DEVICES": "",
    }


def test_paper_command_matches_published_values(swift_parser):
    ((_, cmd),) = build_commands(make_plan("paper"))
    ns, _ = swift_parser.parse_known_args(cmd.argv[2:])
    assert (ns.tuner_type, ns.deepspeed, ns.learning_rate, ns.beta, ns.num_generations) == (
        "full",
        "zero2",
        1e-6,
        0.001,
        16,
    )
    assert (ns.temperature, ns.top_p, ns.top_k, ns.max_completion_length, ns.max_length) == (
        1.0,
        0.9,
        50,
        512,
        2048,
    )
    assert ns.use_hf is True and ns.model_type is None  # a hub id needs no model type
    assert cmd.env == {
        "MIN_PIXELS": "200704",
        "MAX_PIXELS": "401408",
        "IMAGE_MIN_TOKEN_NUM": "256",
        "IMAGE_MAX_TOKEN_NUM": "512",
        "NPROC_PER_NODE": "4",
        "MASTER_PORT": "29500",
    }


@pytest.mark.parametrize("preset", ["paper", "fast"])
def test_paper_keeps_the_published_validation_split_and_workers(swift_parser, preset):
    """ms-swift 3.x (the published script's) held out 1% for evaluation by default; 4.x holds
    out nothing unless told. The script's 4 dataloader workers stay too."""
    ((_, cmd),) = build_commands(make_plan(preset))
    ns, rest = swift_parser.parse_known_args(cmd.argv[2:])
    assert rest == []
    assert ns.split_dataset_ratio == 0.01 and ns.eval_steps == 200 and ns.save_steps == 200
    assert ns.dataloader_num_workers == 4
    assert str(ns.eval_strategy).endswith("steps") and str(ns.save_strategy).endswith("steps")
    assert make_plan(preset).evaluating  # so the eval batch is checked against num_generations
    assert not make_plan("lora").evaluating and make_plan("lora", val_path=Path("/v.jsonl")).evaluating


def test_swift_derives_the_same_token_counts_we_export(monkeypatch):
    """Our IMAGE_*_TOKEN_NUM are exactly what ms-swift would derive from MIN/MAX_PIXELS."""
    from swift.model.models.qwen import compat_qwen_vl_utils

    for preset in list_presets():
        env = make_plan(preset).env()
        for key in ("IMAGE_MIN_TOKEN_NUM", "IMAGE_MAX_TOKEN_NUM"):
            monkeypatch.setenv(key, "")  # swift fills an empty one; monkeypatch restores the original
        monkeypatch.setenv("MIN_PIXELS", env["MIN_PIXELS"])
        monkeypatch.setenv("MAX_PIXELS", env["MAX_PIXELS"])
        compat_qwen_vl_utils(image_patch_size=14)
        assert os.environ["IMAGE_MIN_TOKEN_NUM"] == env["IMAGE_MIN_TOKEN_NUM"], preset
        assert os.environ["IMAGE_MAX_TOKEN_NUM"] == env["IMAGE_MAX_TOKEN_NUM"], preset


def test_multi_node_commands_differ_only_in_node_rank():
    launch = Launch(gpus=8, nodes=3, master_addr="10.0.0.1", master_port=29700)
    cmds = build_commands(make_plan("fast", launch))
    assert [rank for rank, _ in cmds] == [0, 1, 2]
    assert all(c.argv == cmds[0][1].argv for _, c in cmds)
    for rank, c in cmds:
        assert {
            k: c.env[k] for k in ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
        } == {
            "NPROC_PER_NODE": "8",
            "NNODES": "3",
            "NODE_RANK": str(rank),
            "MASTER_ADDR": "10.0.0.1",
            "MASTER_PORT": "29700",
        }
    one = build_commands(make_plan("fast", Launch(gpus=8, nodes=3, node_rank=2, master_addr="a")))
    assert [r for r, _ in one] == [2]


def test_launch_validation():
    with pytest.raises(SatoriError, match="master-addr"):
        Launch(gpus=4, nodes=2)
    with pytest.raises(SatoriError, match=r"node-rank must be in 0\.\.1"):
        Launch(gpus=4, nodes=2, node_rank=2, master_addr="a")
    with pytest.raises(SatoriError, match="at least 1"):
        Launch(gpus=0, nodes=2, master_addr="a")
    assert Launch(gpus=0).world_size == 1 and Launch(gpus=0).env(0) == {"CUDA_VISIBLE_DEVICES": ""}
    assert Launch(gpus=1).env(0) == {}  # one process: swift puts it on cuda:0


def test_generation_batch_rule():
    paper = resolve_recipe("paper").swift
    assert generation_batch_check(paper, 4, evaluating=True) is None  # 4 x 4 x 2 = 32, eval 16
    msg = generation_batch_check(paper, 1, evaluating=False)
    assert (
        "4 x 1 process(es) x steps_per_generation 2 = 8 completions is not divisible by num_generations 16"
        in msg
    )
    assert "per_device_eval_batch_size" in generation_batch_check(
        paper, 2, evaluating=True
    )  # train 16 ok, eval 8
    assert generation_batch_check({**paper, "generation_batch_size": 48}, 1, False) is None
