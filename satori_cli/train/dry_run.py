"""`satori train --dry-run`: the exact command and environment each node (and rollout server) would run.

Nothing is prepared or started, and no server is asked anything; the argv is built by the same
builder as a real run, so a dry run can be pasted on each machine of a multi-node job. The GPUs
shown are this machine's pool (its `CUDA_VISIBLE_DEVICES`, else what nvidia-smi lists, else
GPUs 0..N-1), split as the real run splits it on every node: a rollout server on this machine
first, training next.
"""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

from satori_cli.errors import SatoriError
from satori_cli.gpus import detect_gpus
from satori_cli.grammar import get_grammar
from satori_cli.train.plan import TrainPlan, build_commands
from satori_cli.train.preflight import (
    DeviceSplit,
    assumed_pool,
    check_batch,
    check_budget,
    choose_devices,
    is_this_machine,
    url_host,
)
from satori_cli.train.runner import TrainOptions, build_plan, swift_program


def rollout_lines(plan: TrainPlan, opts: TrainOptions, program: str, split: DeviceSplit) -> list[str]:
    """What runs the rollouts: the server satori starts here, or the command for each rollout machine."""
    from satori_cli.train.rollout import (
        PLACEHOLDER_URL,
        ROLLOUT_PORT,
        RolloutSpec,
        rollout_args,
        rollout_command,
    )

    def command(spec: RolloutSpec, split: DeviceSplit) -> str:
        args = rollout_args(plan.model, plan.recipe, spec, local_qwen2_5_vl=plan.local_qwen2_5_vl)
        return rollout_command(args, plan.recipe.budget, split.rollout, program).display()

    if plan.managed_rollout is not None:
        spec = plan.managed_rollout
        gpus = ",".join(g.device_id for g in split.rollout)
        return [
            f"# rollout server (swift rollout, vLLM {spec.data_parallel} x data parallel) on GPU(s) {gpus} "
            "of this machine, started and stopped by satori train:",
            command(spec, split),
        ]
    lines = []
    gpus = plan.recipe.rollout_gpus
    for url in plan.rollout_urls:
        host, port = url_host(url), urlsplit(url).port or ROLLOUT_PORT
        local = is_this_machine(host)
        listen = host if local else "0.0.0.0"
        here = "this machine" if local else f"machine {host}"
        if url == PLACEHOLDER_URL:
            here = "a machine of its own"
        satori = ["satori", "rollout", "--preset", plan.recipe.preset]
        if opts.config is not None:
            satori += ["--config", str(opts.config)]
        satori += ["--model", opts.model or plan.recipe.model, "--gpus", str(gpus or "N")]
        satori += ["--host", listen, "--port", str(port)]
        lines.append(f"# rollouts from {url}: start them first on {here} with `{shlex.join(satori)}`")
        if url == PLACEHOLDER_URL:
            lines.append("# (ROLLOUT_HOST: that machine's address; pass it to every node as --rollout-url)")
        if gpus:
            spec = RolloutSpec(gpus=gpus, host=listen, port=port)
            lines.append("# which runs:")
            devices = split if local and split.rollout else DeviceSplit(rollout=tuple(assumed_pool(gpus)))
            lines.append(command(spec, devices))
    return lines


def dry_run_text(opts: TrainOptions) -> str:
    plan = build_plan(opts, prepare_data=False)
    check_batch(plan)
    check_budget(plan.recipe.budget)
    try:
        program = swift_program()
    except SatoriError:
        program = "swift"
    launch = plan.launch
    local_rollout = plan.managed_rollout.gpus if plan.managed_rollout else 0
    if launch.nodes == 1 and any(is_this_machine(url_host(u)) for u in plan.rollout_urls):
        local_rollout = plan.recipe.rollout_gpus
    pool = (detect_gpus() or assumed_pool(launch.gpus + local_rollout)) if launch.gpus else []
    split = choose_devices(plan, pool, local_rollout)
    shape = (
        "1 CPU process"
        if launch.gpus == 0
        else f"{launch.nodes} node(s) x {launch.gpus} GPU(s) = {launch.world_size} training process(es)"
    )
    lines = [
        f"# satori train --preset {plan.recipe.preset} --stage {plan.stage}: {plan.recipe.description}",
        f"# {shape}; run folder {plan.output_dir}",
    ]
    if plan.resume is not None:
        lines.append(f"# resuming from {plan.resume}")
    grammar = get_grammar(plan.recipe.grammar)
    lines.append(
        f"# grammar {grammar.name}: {grammar.shape()}; rewards {' '.join(plan.reward_funcs)}; "
        f"system prompt {plan.system_prompt} ({grammar.prompt_source})"
    )
    source = plan.recipe.data or "the generated sample set"
    what = (
        "rows get their gold completion as the assistant turn"
        if plan.stage == "sft"
        else "rows get solution=<id> for the report"
    )
    prepared = "node 0 prepares it once, the other nodes wait for it" if launch.nodes > 1 else ""
    lines.append(f"# data: {source} -> {plan.train_path} ({what})" + (f"; {prepared}" if prepared else ""))
    lines.append(f"# trackers: {', '.join(plan.report_to)} (run name {plan.swift_args().get('run_name')})")
    lines.extend(rollout_lines(plan, opts, program, split))
    for rank, command in build_commands(plan, program):
        where = f"node {rank} of {launch.nodes}" if launch.nodes > 1 else "this machine"
        lines.append(f"# {where}: {split.describe()}")
        lines.append(command.display())
    return "\n".join(lines)
