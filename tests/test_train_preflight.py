"""Preflight: every failure is one clear line (exit code 2) before anything heavy starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from satori_cli.errors import SatoriError
from satori_cli.gpus import Gpu
from satori_cli.pixels import PixelBudget
from satori_cli.train import preflight as pf
from satori_cli.train.plan import Launch, TrainPlan
from satori_cli.train.preflight import split_devices
from satori_cli.train.recipe import parse_passthrough, resolve_recipe
from satori_cli.train.resources import (
    GIB,
    ModelSize,
    estimate_parts,
    memory_shortfall,
    model_size,
    resident_and_transient,
    size_from_config,
)

# Qwen/Qwen2.5-VL-3B-Instruct's published config.json (the fields that size the model).
QWEN25_VL_3B = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_attention_heads": 16,
    "num_hidden_layers": 36,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}


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
        split_devices([], 4)
    assert one_line(exc).startswith("--gpus 4 asked for, but no GPU visible")
    with pytest.raises(SatoriError, match="but 2 GPU"):
        split_devices([Gpu(0, "A100", 80), Gpu(1, "A100", 80)], 4)
    split_devices([], 0)


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


def test_model_unreachable_is_refused_before_anything_is_prepared(tmp_path):
    from satori_cli.train.runner import TrainOptions, build_plan

    def refused(model: str) -> str:
        with pytest.raises(SatoriError) as exc:
            build_plan(TrainOptions(model=model, output=tmp_path / "run"))
        assert not (tmp_path / "run").exists()  # refused before the data is prepared
        return one_line(exc)

    assert "no such folder" in refused(str(tmp_path / "nope"))
    assert "neither an existing folder nor a hub repo id" in refused("just-a-name")
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in refused(str(tmp_path / "empty"))
    # The tests run with HF_HUB_OFFLINE=1: an uncached hub id cannot be reached (checked in preflight).
    plan = build_plan(TrainOptions(model="Org/Not-Cached-Model", output=tmp_path / "run"), prepare_data=False)
    with pytest.raises(SatoriError, match="not in the Hugging Face cache"):
        pf.check_model(plan.model)


def test_data_missing_or_empty(tmp_path):
    with pytest.raises(SatoriError) as exc:
        pf.check_data(tmp_path / "missing.jsonl", None)
    assert "not found" in one_line(exc)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SatoriError, match="is empty"):
        pf.check_data(empty, None)


def test_output_not_writable(tmp_path):
    """Refused when the plan is built, before any data is prepared (the preflight need not ask again)."""
    from satori_cli.train.runner import TrainOptions, build_plan

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SatoriError) as exc:
        build_plan(TrainOptions(output=blocker / "run"))
    assert "a-file is a file" in one_line(exc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_resume_without_checkpoint(tmp_path, tiny_model):
    plan = plan_for(tmp_path, model=str(tiny_model), resume=tmp_path / "checkpoint-9")
    with pytest.raises(SatoriError) as exc:
        pf.preflight(plan, [])
    assert "cannot resume from" in one_line(exc) and "trainer_state.json cannot be read" in one_line(exc)


def test_a_model_folder_without_weights_is_refused_before_launch(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(QWEN25_VL_3B))
    with pytest.raises(SatoriError) as exc:
        pf.check_model(str(tmp_path / "model"))
    assert "cannot be loaded: no weights" in one_line(exc)


def test_parameter_count_from_the_3b_config_matches_transformers():
    """3.75 B (the name says 3B), counted from the config's sizes; transformers agrees exactly."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    size = size_from_config(QWEN25_VL_3B)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**QWEN25_VL_3B))
    assert size.total == sum(p.numel() for p in model.parameters())
    assert size.total - size.language == sum(p.numel() for p in model.model.visual.parameters())
    assert round(size.billions, 2) == 3.75 and (size.vocab, size.hidden, size.layers) == (151936, 2048, 36)
    assert size.kv_dim == 2 * 128  # two key/value heads of 128
    # The transformers 5 layout (text sizes under text_config) counts the same.
    nested = json.loads(Qwen2_5_VLConfig(**QWEN25_VL_3B).to_json_string())
    assert "text_config" in nested and size_from_config(nested) == size
    untied = size_from_config({**QWEN25_VL_3B, "tie_word_embeddings": False})
    assert untied.total - size.total == 151936 * 2048  # a separate lm_head
    assert size_from_config({"hidden_size": 8}) is None


def test_parameter_count_of_the_tiny_model_matches_its_weights(tiny_model):
    from safetensors import safe_open

    count = 0
    for file in tiny_model.glob("*.safetensors"):
        with safe_open(str(file), "np") as weights:
            for name in weights.keys():  # noqa: SIM118 - safe_open has no __iter__
                count += int(np.prod(weights.get_slice(name).get_shape()))
    assert model_size(str(tiny_model)).total == count


def peak_gib(size: ModelSize, swift: dict, gpus_per_node: int) -> float:
    """Rough peak GiB per GPU for GRPO with this recipe, vLLM's share not included."""
    return sum(resident_and_transient(estimate_parts(size, swift, gpus_per_node))) / GIB


def test_model_size_reads_a_local_config_before_weights_or_name(tmp_path):
    folder = tmp_path / "Qwen2.5-VL-7B-but-really-3B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN25_VL_3B))
    assert model_size(str(folder)).billions == pytest.approx(3.7546, abs=1e-4)
    bare = tmp_path / "m"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    (bare / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 8e9}}))
    assert model_size(str(bare)).billions == 4.0  # no sizes in the config: the weights' bytes
    # A hub id not in the cache, offline (the tests' HF_HUB_OFFLINE=1): the name is all there is.
    assert model_size("Qwen/Qwen2.5-VL-72B-Instruct").billions == 72.0


def test_memory_terms_follow_the_recipe():
    size = size_from_config(QWEN25_VL_3B)
    paper = resolve_recipe("paper").swift
    parts = estimate_parts(size, paper, 4)
    # bf16 weights and the reference copy; ZeRO-2 shards gradients and Adam (4 B master + 8 B moments).
    assert parts["weights"] == parts["reference"] == size.total * 2
    assert parts["gradients"] == size.language * 2 / 4
    assert parts["optimizer"] == size.language * 12 / 4
    # Logits of the completion (swift's logits_to_keep): bf16 + fp32 upcast + bf16 gradient.
    assert parts["logits"] == 4 * (512 + 1) * 151936 * (2 + 4 + 2)
    longer = estimate_parts(size, {**paper, "max_completion_length": 1024}, 4)
    assert longer["logits"] == pytest.approx(parts["logits"] * 1025 / 513)
    wider = estimate_parts(ModelSize(**{**size.__dict__, "vocab": 2 * size.vocab}), paper, 4)
    assert wider["logits"] == 2 * parts["logits"]
    # Activations and the generation's KV cache grow with the sequence length.
    double = estimate_parts(size, {**paper, "max_length": 4096}, 4)
    assert (
        double["activations"] == 2 * parts["activations"] and double["generation"] == 2 * parts["generation"]
    )
    assert parts["generation"] == 4 * 2 * 2048 * 36 * 2 * 256 * 2  # 8 sequences of a step, bf16 K and V
    no_ckpt = estimate_parts(size, {**paper, "gradient_checkpointing": False}, 4)
    assert no_ckpt["activations"] > 5 * parts["activations"]
    # ZeRO-2 offload moves only Adam's moments: the fp32 master copy stays.
    offload = estimate_parts(size, {**paper, "offload_optimizer": True}, 4)
    assert offload["optimizer"] == size.language * 4 / 4
    # vLLM rollouts: no HF generate cache.
    assert estimate_parts(size, resolve_recipe("fast").swift, 4)["generation"] == 0
    # ZeRO-2 shards the optimizer: more GPUs, less memory each.
    assert peak_gib(size, paper, 8) < peak_gib(size, paper, 2)


def test_memory_estimate(tmp_path):
    size = size_from_config(QWEN25_VL_3B)
    paper, lora, fast = (resolve_recipe(p).swift for p in ("paper", "lora", "fast"))
    a100, small = [Gpu(0, "A100-80GB", 80.0)] * 4, [Gpu(0, "RTX 4090", 24.0)]
    assert 25 < peak_gib(size, paper, 4) < 45  # plausible peaks: 30-45 GB
    assert memory_shortfall(size, paper, a100, 4) is None
    assert memory_shortfall(size, lora, small, 1) is None
    problem = memory_shortfall(size, paper, small * 4, 4)
    assert problem.startswith("this recipe needs about") and "RTX 4090 has 24 GiB" in problem
    assert "3.75B-parameter model" in problem and "logits 2" in problem
    assert memory_shortfall(size, fast, a100, 4) is None
    # Awake vLLM (no sleep) and training share the GPU at once.
    awake = {**fast, "sleep_level": 0, "vllm_gpu_memory_utilization": 0.9}
    assert "vLLM 72" in memory_shortfall(size, awake, a100, 4)
    big = ModelSize(int(72e9), int(70e9))
    assert memory_shortfall(big, paper, a100, 4) is not None
    assert estimate_parts(big, paper, 4)["activations"] > 0  # shape unknown: a coarse term
    assert peak_gib(size, paper, 4) * GIB == pytest.approx(
        sum(v for k, v in estimate_parts(size, paper, 4).items() if k not in {"generation"})
    )


def test_memory_check_through_preflight(tmp_path):
    plan = plan_for(tmp_path, "paper", gpus=4, model="Qwen/Qwen2.5-VL-72B-Instruct")
    with pytest.raises(SatoriError) as exc:
        pf.check_memory(plan, [Gpu(i, "A100-80GB", 80.0) for i in range(4)])
    assert "72.00B-parameter model" in one_line(exc)
    folder = tmp_path / "qwen3b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN25_VL_3B))
    plan = plan_for(tmp_path, "paper", gpus=4, model=str(folder))
    with pytest.raises(SatoriError) as exc:
        pf.check_memory(plan, [Gpu(i, "RTX 4090", 24.0) for i in range(4)])
    assert "3.75B-parameter model" in one_line(exc) and "--skip-memory-check" in str(exc.value)
    pf.check_memory(plan, [Gpu(i, "H100", 80.0) for i in range(4)])


def test_budget_must_be_whole_visual_tokens():
    """swift trains at IMAGE_*_TOKEN_NUM = pixels // 784; the box reward uses the pixels as given."""
    pf.check_budget(PixelBudget(3136, 12544))  # the smoke preset's: 4 and 16 tokens
    pf.check_budget(PixelBudget())  # the paper's: 256 and 512 tokens
    with pytest.raises(SatoriError) as exc:
        pf.check_budget(PixelBudget(200704, 400000))
    message = one_line(exc)
    assert message.startswith("max_pixels 400000 is not a multiple of 28x28=784")
    assert "floor it to 399840 (510 tokens)" in message and "use 399840 or 400624" in message
    with pytest.raises(SatoriError, match=r"min_pixels 500 .*\(use 784\)"):
        pf.check_budget(PixelBudget(500, 12544))


def test_a_conflicting_image_token_num_in_the_environment_is_refused():
    budget = PixelBudget()  # 256 / 512 tokens
    pf.check_token_env(budget, {})
    pf.check_token_env(budget, {"IMAGE_MAX_TOKEN_NUM": "512", "IMAGE_MIN_TOKEN_NUM": ""})
    with pytest.raises(SatoriError) as exc:
        pf.check_token_env(budget, {"IMAGE_MAX_TOKEN_NUM": "1024"})
    message = one_line(exc)
    assert message.startswith("IMAGE_MAX_TOKEN_NUM=1024 in the environment conflicts with")
    assert "max_pixels 401408" in message and "unset IMAGE_MAX_TOKEN_NUM" in message
    with pytest.raises(SatoriError, match=r"IMAGE_MIN_TOKEN_NUM=4 .* min_pixels 200704"):
        pf.check_token_env(budget, {"IMAGE_MIN_TOKEN_NUM": "4"})


def test_more_visible_gpus_than_processes_are_narrowed_not_refused(tmp_path):
    """ms-swift would split each process's model over extra visible GPUs (device_map), which
    DeepSpeed and vLLM refuse only after loading the model: preflight gives the training processes
    exactly their GPUs instead (the first of the pool), before anything else about this machine."""
    from satori_cli.gpus import parse_nvidia_smi
    from satori_cli.train.plan import build_commands

    eight = parse_nvidia_smi("\n".join(f"{i}, NVIDIA H100 80GB HBM3, 81559" for i in range(8)))
    plan = plan_for(tmp_path, "paper", gpus=4)
    with pytest.raises(SatoriError, match="ZeRO"):  # this CPU box has no deepspeed: the next check
        pf.preflight(plan, eight, environ={})
    assert [g.index for g in plan.launch.devices] == [0, 1, 2, 3]
    ((_, cmd),) = build_commands(plan)
    assert cmd.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and cmd.env["NPROC_PER_NODE"] == "4"
    with pytest.raises(SatoriError) as exc:
        pf.preflight(plan_for(tmp_path, "paper", gpus=4), eight[:2], environ={})
    assert one_line(exc).startswith("--gpus 4 asked for, but 2 GPU(s) visible")
