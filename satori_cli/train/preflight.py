"""Checks that run before anything heavy: each failure is one line and exit code 2.

A GRPO run loads a multi-GB model and spends minutes before ms-swift validates its own
arguments; these checks catch the common mistakes (too few GPUs, a batch that does not split
into generation groups, a pixel budget swift would round differently from the reward, a
missing DeepSpeed or vLLM, an unreachable hub model, missing data, an unwritable output folder, a
resume without checkpoint, a model that will not fit) first. Local models and run folders are
checked where they are resolved (`satori_cli.models`, when the plan is built).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from satori_cli.errors import SatoriError, install_hint
from satori_cli.gpus import Gpu
from satori_cli.pixels import PixelBudget
from satori_cli.train.command import TrainPlan, generation_batch_check
from satori_cli.train.resources import memory_shortfall, model_size

# What each `needs:` entry of a recipe means: importable module and the extra that installs it.
NEEDS = {
    "deepspeed": ("deepspeed", "gpu", "ZeRO (--deepspeed)"),
    "vllm": ("vllm", "gpu", "vLLM rollouts (--use_vllm)"),
}


def check_gpus(requested: int, found: list[Gpu]) -> None:
    if requested > len(found):
        have = f"{len(found)} GPU(s) visible" if found else "no GPU visible"
        raise SatoriError(
            f"--gpus {requested} asked for, but {have}",
            hint="use --gpus 0 with --preset smoke on a CPU, or check CUDA_VISIBLE_DEVICES / nvidia-smi",
        )


def check_device_split(plan: TrainPlan, found: list[Gpu]) -> None:
    """More GPUs visible than processes: ms-swift then splits each process's model over several
    GPUs (`device_map`, swift/utils/env.py is_mp), which DeepSpeed and vLLM refuse after the model
    has loaded, and which fails outright when the count does not divide."""
    gpus, visible = plan.launch.gpus, len(found)
    if gpus == 0 or visible <= gpus:
        return
    swift = plan.recipe.swift
    refused = bool(swift.get("deepspeed")) or str(swift.get("use_vllm", "false")).lower() == "true"
    if visible % gpus == 0 and not refused:
        return
    pick = ",".join(str(g.index) for g in found[:gpus])
    raise SatoriError(
        f"{visible} GPUs visible for --gpus {gpus}: ms-swift would split each process's model over "
        f"{visible / gpus:g} GPUs, which {'DeepSpeed and vLLM refuse' if refused else 'it cannot do'}",
        hint=f"run with CUDA_VISIBLE_DEVICES={pick}, or --gpus {visible}",
    )


def check_budget(budget: PixelBudget) -> None:
    """Both bounds must be whole visual tokens: swift floors `pixels // 784`, the reward does not."""
    unit = budget.token_pixels
    for name, value in (("min_pixels", budget.min_pixels), ("max_pixels", budget.max_pixels)):
        if value % unit:
            low = value // unit * unit
            raise SatoriError(
                f"{name} {value} is not a multiple of {budget.factor}x{budget.factor}={unit}: ms-swift "
                f"would floor it to {low} ({value // unit} tokens) while the box reward uses {value}",
                hint=f"use {low} or {low + unit}" if low else f"use {unit}",
            )


def check_token_env(budget: PixelBudget, environ: Mapping[str, str] | None = None) -> None:
    """A user's IMAGE_*_TOKEN_NUM that disagrees with the recipe's budget is refused, not overridden."""
    environ = os.environ if environ is None else environ
    for key, value in budget.env().items():
        mine = environ.get(key, "").strip()
        if not key.startswith("IMAGE_") or not mine or mine == value:  # swift ignores an empty one
            continue
        bound = "min_pixels" if "_MIN_" in key else "max_pixels"
        pixels = budget.min_pixels if bound == "min_pixels" else budget.max_pixels
        raise SatoriError(
            f"{key}={mine} in the environment conflicts with the recipe's {bound} {pixels} "
            f"({value} tokens of {budget.token_pixels} pixels)",
            hint=f"unset {key}; to change the budget, set {bound} in a --config file",
        )


def check_batch(plan: TrainPlan) -> None:
    problem = generation_batch_check(plan.recipe.swift, plan.launch.world_size, plan.evaluating)
    if problem:
        raise SatoriError(
            problem,
            hint="change --gpus, or pass e.g. -- --num_generations N / --gradient_accumulation_steps N",
        )


def check_needs(plan: TrainPlan) -> None:
    needs = list(plan.recipe.needs)
    swift = plan.recipe.swift
    if swift.get("deepspeed") and "deepspeed" not in needs:
        needs.append("deepspeed")
    if str(swift.get("use_vllm", "false")).lower() == "true" and "vllm" not in needs:
        needs.append("vllm")
    for need in needs:
        module, extra, purpose = NEEDS.get(need, (need, "train", need))
        if importlib.util.find_spec(module) is None:
            raise SatoriError(
                f"{purpose} needs the Python package '{module}', which is not installed",
                hint=f"{install_hint(extra)}, or a preset without it (--preset lora or smoke)",
            )


def check_model(model: str) -> None:
    """The model swift will load: a checked folder, or a hub id that is cached or can be downloaded
    (refused when HF_HUB_OFFLINE is set and it is not cached)."""
    from satori_cli.models import resolve

    resolve(model, hub="check")


def check_data(train: Path, val: Path | None) -> None:
    for path in (train, val):
        if path is not None and not path.is_file():
            raise SatoriError(f"training data {path} not found")
        if path is not None and path.stat().st_size == 0:
            raise SatoriError(f"training data {path} is empty")


def check_output(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".satori-write-test-"):
            pass
    except OSError as exc:
        raise SatoriError(f"output folder {output} is not writable: {exc.strerror}") from exc


def check_memory(plan: TrainPlan, found: list[Gpu]) -> None:
    if plan.launch.gpus == 0:
        return
    size = model_size(plan.model)
    if size is None:
        return
    problem = memory_shortfall(size, plan.recipe.swift, found, plan.launch.gpus)
    if problem:
        raise SatoriError(
            problem, hint="try --preset lora, more GPUs (ZeRO shards the optimizer), or --skip-memory-check"
        )


def preflight(plan: TrainPlan, found: list[Gpu], *, this_node: bool = True, memory: bool = True) -> None:
    """Run every check in order of cost; the first failure raises a one-line SatoriError.

    `this_node=False` (a dry run for other nodes) skips the checks about this machine.
    """
    check_batch(plan)
    check_budget(plan.recipe.budget)
    if this_node:
        check_token_env(plan.recipe.budget)
        check_gpus(plan.launch.gpus, found)
        check_device_split(plan, found)
        check_needs(plan)
    check_model(plan.model)
    check_data(plan.train_path, plan.val_path)
    check_output(plan.output_dir)
    if plan.resume is not None and not (plan.resume / "trainer_state.json").is_file():
        raise SatoriError(f"{plan.resume} is not a checkpoint (no trainer_state.json)")
    if this_node and memory:
        check_memory(plan, found)
