"""Checks that run before anything heavy: each failure is one line and exit code 2.

A GRPO run loads a multi-GB model and spends minutes before ms-swift validates its own
arguments; these checks catch the common mistakes (too few GPUs or a wrong rollout/training
split, a rollout server that is down or serves another model, a batch that does not split
into generation groups, a pixel budget swift would round differently from the reward, a
missing DeepSpeed or vLLM, an unreachable hub model, missing data, a resume without checkpoint, a
model that will not fit) first. Local models, run folders and the output folder are checked where
they are resolved (`satori_cli.models`, `satori_cli.train.runfolder`, when the plan is built).

It also chooses which GPUs of this machine the rollout server and the training processes get.
ms-swift puts its processes on every GPU it can see: with more GPUs visible than processes it
splits each process's model over several of them (which DeepSpeed and vLLM refuse), and a
`swift rollout` beside the training would share their GPUs. So satori gives every child its own
`CUDA_VISIBLE_DEVICES`, chosen from the pool (the user's `CUDA_VISIBLE_DEVICES`, in its order,
else every GPU): a rollout server on this machine takes the first GPUs of the pool, training the
next ones. The batch rule counts the training processes only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from satori_cli.errors import SatoriError, install_hint
from satori_cli.gpus import Gpu
from satori_cli.pixels import PixelBudget
from satori_cli.train.plan import TRACKERS, TrainPlan, generation_batch_check
from satori_cli.train.resources import memory_shortfall, model_config, model_size

# What each `needs:` entry of a recipe (an importable module) is for, and the extra that installs it.
NEEDS = {"deepspeed": ("gpu", "ZeRO (--deepspeed)"), "vllm": ("gpu", "vLLM rollouts (--use_vllm)")}


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


def check_token_env(budget: PixelBudget, environ: Mapping[str, str] = os.environ) -> None:
    """A user's IMAGE_*_TOKEN_NUM that disagrees with the recipe's budget is refused, not overridden."""
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
    if plan.stage != "grpo":  # generation groups exist only in GRPO
        return
    problem = generation_batch_check(plan.stage_args, plan.launch.world_size, plan.evaluating)
    if problem:
        raise SatoriError(
            problem,
            hint="change --gpus, or pass e.g. -- --num_generations N / --gradient_accumulation_steps N",
        )


def check_needs(plan: TrainPlan) -> None:
    needs = list(plan.recipe.needs)
    if plan.swift_args().get("deepspeed") and "deepspeed" not in needs:
        needs.append("deepspeed")
    if plan.uses_vllm and "vllm" not in needs:
        needs.append("vllm")  # server mode too: the trainer syncs weights through vLLM's NCCL client
    for need in needs:
        extra, purpose = NEEDS.get(need, ("train", need))
        if importlib.util.find_spec(need) is None:
            raise SatoriError(
                f"{purpose} needs the Python package '{need}', which is not installed",
                hint=f"{install_hint(extra)}, or a preset without it (--preset lora or smoke)",
            )
    for tracker in plan.report_to:
        how = TRACKERS.get(tracker)
        if how is not None and importlib.util.find_spec(tracker) is None:
            raise SatoriError(
                f"--report-to {tracker} needs the Python package '{tracker}', which is not installed",
                hint=f"{how}, or --report-to none",
            )


def check_rollout_servers(plan: TrainPlan) -> int:
    """Every --rollout-url answers as a `swift rollout` serving the training model's architecture.

    Returns how many GPUs rollout servers on this machine use (their vLLM world size), which
    training must leave to them.
    """
    from satori_cli.console import console
    from satori_cli.train.rollout import check_same_model, probe_rollout

    here = 0
    config = model_config(plan.model) if plan.rollout_urls else {}
    for url in plan.rollout_urls:
        server = probe_rollout(url)
        matched = check_same_model(server, plan.model, config)
        local = is_this_machine(url_host(url))
        here += server.world_size if local else 0
        where = "this machine" if local else "another machine"
        console().print(f"rollout server {url}: {server.world_size} vLLM GPU(s) on {where}; {matched}")
    return here


def check_model(model: str) -> None:
    """The model swift will load: a checked folder whose files read, or a hub id that is cached or
    can be downloaded (refused when HF_HUB_OFFLINE is set and it is not cached)."""
    from satori_cli.models import checkpoint_problem, resolve

    found = resolve(model, hub="check")
    problem = checkpoint_problem(Path(found.path)) if found.local else None
    if problem:
        raise SatoriError(f"the model {found.path} cannot be loaded: {problem}")


def check_resume(checkpoint: Path) -> None:
    """The checkpoint swift resumes from: trainer state, weights and optimizer files all read."""
    from satori_cli.models import checkpoint_problem

    problem = checkpoint_problem(checkpoint, resume=True)
    if problem:
        raise SatoriError(
            f"cannot resume from {checkpoint}: {problem}",
            hint="resume from an earlier one (--resume-from RUN/checkpoint-N), or start over (--overwrite)",
        )


def check_data(train: Path, val: Path | None) -> None:
    for path in (train, val):
        if path is not None and not path.is_file():
            raise SatoriError(f"training data {path} not found")
        if path is not None and path.stat().st_size == 0:
            raise SatoriError(f"training data {path} is empty")


def check_memory(plan: TrainPlan, found: list[Gpu]) -> None:
    if plan.launch.gpus == 0:
        return
    size = model_size(plan.model)
    if size is None:
        return
    problem = memory_shortfall(size, plan.swift_args(), found, plan.launch.gpus, stage=plan.stage)
    if problem:
        raise SatoriError(
            problem, hint="try --preset lora, more GPUs (ZeRO shards the optimizer), or --skip-memory-check"
        )


@dataclasses.dataclass(frozen=True)
class DeviceSplit:
    """The GPUs of one machine: the rollout server's (none when it runs elsewhere) and training's."""

    rollout: tuple[Gpu, ...] = ()
    train: tuple[Gpu, ...] = ()

    def describe(self) -> str:
        def ids(gpus: tuple[Gpu, ...]) -> str:
            return ",".join(g.device_id for g in gpus)

        train = f"training on GPU(s) {ids(self.train)}" if self.train else "training on the CPU"
        return f"rollout on GPU(s) {ids(self.rollout)}, {train}" if self.rollout else train


def assumed_pool(count: int) -> list[Gpu]:
    """GPUs 0..count-1: the pool shown by a dry run on a machine that has none (another node)."""
    return [Gpu(i, "", 0.0) for i in range(count)]


def split_devices(
    pool: Sequence[Gpu], train: int, rollout: int = 0, *, pinned: bool = False, managed: bool = False
) -> DeviceSplit:
    """Give a rollout server on this machine the first `rollout` GPUs of the pool, training `train` next.

    `rollout` is 0 when the rollout server runs on another machine. A rollout server already
    running here (`managed=False`) was started on the first GPUs of the same pool by `satori
    rollout`, unless the user `pinned` CUDA_VISIBLE_DEVICES to exactly the training GPUs: then
    those are taken as they are. Anything else that does not fit is refused in one line.
    """
    pool = list(pool)
    if train == 0:
        return DeviceSplit()
    if rollout == 0:
        if train > len(pool):
            have = f"{len(pool)} GPU(s) visible" if pool else "no GPU visible"
            raise SatoriError(
                f"--gpus {train} asked for, but {have}",
                hint="use --gpus 0 with --preset smoke on a CPU, or check CUDA_VISIBLE_DEVICES / nvidia-smi",
            )
        return DeviceSplit((), tuple(pool[:train]))
    if rollout + train <= len(pool):
        return DeviceSplit(tuple(pool[:rollout]), tuple(pool[rollout : rollout + train]))
    if not managed and pinned and len(pool) == train:
        return DeviceSplit((), tuple(pool))
    pinning = "" if managed else f", or set CUDA_VISIBLE_DEVICES to exactly the {train} training GPUs"
    raise SatoriError(
        f"wrong GPU split: the rollout server takes {rollout} GPU(s) of this machine and training asks "
        f"for {train}, but {len(pool)} GPU(s) are visible",
        hint=f"use --gpus {max(len(pool) - rollout, 0)} (training processes only) or fewer rollout GPUs, "
        f"or run the rollout server on another machine{pinning}",
    )


def url_host(url: str) -> str:
    return urlsplit(url).hostname or ""


def is_this_machine(host: str) -> bool:
    """Whether `host` names this machine: loopback, or an address one of its interfaces holds.

    An address is this machine's exactly when a socket can be bound to it.
    """
    if host in ("", "localhost", "0.0.0.0", "::") or host.endswith(".localhost"):
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        return False
    for family, _, _, _, address in infos:
        with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind((address[0], 0))
            except OSError:
                continue
            return True
    return False


def choose_devices(
    plan: TrainPlan, pool: list[Gpu], rollout_here: int, environ: Mapping[str, str] = os.environ
) -> DeviceSplit:
    """Split this machine's GPUs (`split_devices`) and give the training processes theirs in
    `plan.launch`: the real run and the dry run split alike."""
    pinned = bool(environ.get("CUDA_VISIBLE_DEVICES", "").strip())
    managed = plan.managed_rollout is not None
    split = split_devices(pool, plan.launch.gpus, rollout_here, pinned=pinned, managed=managed)
    plan.launch = dataclasses.replace(plan.launch, devices=split.train)
    return split


def preflight(
    plan: TrainPlan,
    found: list[Gpu],
    *,
    memory: bool = True,
    environ: Mapping[str, str] = os.environ,
) -> DeviceSplit:
    """Run every check in order of cost; the first failure raises a one-line SatoriError.

    It also chooses this machine's GPUs (`found` is the pool): the training processes' go into
    `plan.launch.devices`; a rollout server satori starts takes the returned split's `rollout`.
    """
    check_batch(plan)
    check_budget(plan.recipe.budget)
    check_token_env(plan.recipe.budget, environ)
    rollout_here = plan.managed_rollout.gpus if plan.managed_rollout else check_rollout_servers(plan)
    split = choose_devices(plan, found, rollout_here, environ)
    check_needs(plan)
    check_model(plan.model)
    check_data(plan.train_path, plan.val_path)
    if plan.resume is not None:
        check_resume(plan.resume)
    if memory:
        check_memory(plan, list(split.train))
    return split
