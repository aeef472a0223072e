"""`satori train` as a library: resolve a plan, check it, run swift with a live progress line.

The order matters for the user: everything cheap (recipe, paths, preflight) happens before
the model loads, so a mistake costs a second, not minutes. Data preparation (raw source or
the built-in sample for the smoke preset) happens in the run folder, so a run is
self-contained.

`--dry-run` (`dry_run_text`) prints the exact command and environment each node (and rollout
server) would run, built by the same builder as a real run, so it can be pasted on each machine
of a multi-node job. Nothing is prepared or started, and no server is asked anything. The GPUs
shown are this machine's pool (its `CUDA_VISIBLE_DEVICES`, else what nvidia-smi lists, else
GPUs 0..N-1), split as the real run splits it on every node: a rollout server on this machine
first, training next.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from satori_cli import models, outputs
from satori_cli.config import paths
from satori_cli.errors import Interrupted, SatoriError, install_hint
from satori_cli.gpus import detect_gpus
from satori_cli.grammar import get_grammar
from satori_cli.process import Command, find_program, run
from satori_cli.train import rundata, runfolder, runlogs
from satori_cli.train.plan import (
    DEFAULT_MASTER_PORT,
    ROLLOUT_PORT,
    TRACKERS,
    Launch,
    RolloutSpec,
    TrainPlan,
    build_commands,
)
from satori_cli.train.preflight import (
    DeviceSplit,
    assumed_pool,
    check_batch,
    check_budget,
    choose_devices,
    is_this_machine,
    url_host,
)
from satori_cli.train.recipe import STAGE_KEYS, Recipe, parse_passthrough, read_recipe_file, resolve_recipe

SWIFT_HINT = f"install the training extra: {install_hint('train')}"


@dataclass
class TrainOptions:
    """The `satori train` flags, as plain data (None = not given)."""

    preset: str | None = None
    config: Path | None = None
    model: str | None = None
    data: str | None = None
    val_data: str | None = None
    output: Path | None = None
    gpus: int | None = None
    nodes: int = 1
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int | None = None  # None: an exported MASTER_PORT, else 29500
    resume: str | None = None
    overwrite: bool = False  # replace the run already in `output` (only what a run writes)
    extra: list[str] = field(default_factory=list)
    grammar: str | None = None
    rollout_urls: list[str] = field(default_factory=list)  # server mode: running `swift rollout`s
    rollout_gpus: int | None = None  # GPUs of the rollout server satori starts (one node)
    report_to: str | None = None  # tensorboard, wandb, swanlab or none
    data_timeout: float = rundata.DEFAULT_TIMEOUT  # nodes 1..N-1 wait this long for node 0's data
    stage: str = "grpo"  # grpo (swift rlhf) or sft (swift sft on gold completions)


def _latest_run_with_checkpoint() -> Path | None:
    runs = paths().runs
    if not runs.is_dir():
        return None
    candidates = [p for p in runs.iterdir() if p.is_dir() and runlogs.latest_checkpoint(p)]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def resolve_output_and_resume(
    opts: TrainOptions, recipe: Recipe
) -> tuple[Path, Path | None, runfolder.Claim | None]:
    """The run folder, the checkpoint to resume from, and (a new run) the folder check's verdict.

    A new run refuses a folder that holds another run (`--overwrite` replaces it); a resumed
    run that is complete raises `runfolder.RunComplete`. Nodes 1..N-1 of a multi-node run join
    the folder node 0 claimed.
    """
    output = Path(opts.output).expanduser().resolve() if opts.output else None
    if opts.resume is None:
        run_dir = output or paths().runs / f"{recipe.preset}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
        joining = (opts.node_rank or 0) > 0  # the Launch checked it is below --nodes
        return run_dir, None, None if joining else runfolder.claim_new(run_dir, opts.overwrite)
    if opts.resume != "latest":
        checkpoint = Path(opts.resume).expanduser().resolve()
        if not (checkpoint / "trainer_state.json").is_file():
            latest = runlogs.latest_checkpoint(checkpoint)
            if latest is None:
                raise SatoriError(f"--resume {opts.resume}: no checkpoint there (no trainer_state.json)")
            checkpoint = latest
        run_dir = output or runlogs.run_dir_of(checkpoint)
    else:
        run_dir = output or _latest_run_with_checkpoint()
        if run_dir is None:
            raise SatoriError("--resume: no earlier run with a checkpoint found", hint="pass --out RUN_DIR")
        checkpoint = runlogs.latest_checkpoint(run_dir)
        if checkpoint is None:
            raise SatoriError(
                f"--resume: {run_dir} has no checkpoint yet",
                hint="a run saves every save_steps steps; start without --resume",
            )
    runfolder.check_resumable(checkpoint, recipe.swift)
    return run_dir, checkpoint, None


def check_stage(recipe: Recipe, opts: TrainOptions) -> None:
    """The SFT stage needs the recipe's `sft:` arguments, gold completions in its grammar, and
    rollouts exist only in GRPO."""
    if opts.stage not in STAGE_KEYS:
        raise SatoriError(f"unknown --stage '{opts.stage}'", hint=f"choose one of: {', '.join(STAGE_KEYS)}")
    if opts.stage != "sft":
        return
    if not recipe.sft:
        raise SatoriError(
            f"preset '{recipe.preset}' has no SFT stage (no 'sft:' arguments)",
            hint="use --preset learn or smoke, or give swift sft arguments under 'sft:' in a --config file",
        )
    if opts.rollout_urls or opts.rollout_gpus:
        raise SatoriError("--stage sft generates nothing: --rollout-url/--rollout-gpus are for GRPO")
    thinking = get_grammar(recipe.grammar).thinking_tag
    if thinking:
        raise SatoriError(
            f"--stage sft has no gold <{thinking}> text to train the {recipe.grammar} grammar on",
            hint="cold-start SFT trains the satori or nocap grammar",
        )


def launch_settings(opts: TrainOptions, gpus: int) -> Launch:
    """The launch shape; an exported MASTER_ADDR / MASTER_PORT is honoured unless a flag says otherwise."""
    port = opts.master_port
    if port is None:
        exported = os.environ.get("MASTER_PORT", "").strip()
        # isascii: int() would refuse '²' (a digit to isdigit()); the length: 5000 digits
        if exported and not (exported.isascii() and exported.isdigit() and len(exported) < 6):
            raise SatoriError(f"MASTER_PORT={exported[:60]!r} in the environment is not a port number")
        port = int(exported) if exported else DEFAULT_MASTER_PORT
    if not 0 < port < 65536:
        given = (
            f"--master-port {port}"
            if opts.master_port is not None
            else f"MASTER_PORT={port} in the environment"
        )
        raise SatoriError(f"{given} is not a port number (1-65535)")
    addr = opts.master_addr or os.environ.get("MASTER_ADDR", "").strip() or None
    launch = Launch(gpus=gpus, nodes=opts.nodes, node_rank=opts.node_rank, master_addr=addr, master_port=port)
    if launch.nodes > 1 and opts.output is None:
        raise SatoriError(
            "--nodes > 1 needs --out: a run folder on a filesystem every node shares",
            hint="node 0 prepares the data there once, the others read it; checkpoints land there",
        )
    return launch


def build_plan(opts: TrainOptions, *, prepare_data: bool = True) -> TrainPlan:
    """Resolve recipe, model, data, output and resume into a plan (prepares data if needed).

    On a multi-node run only node 0 prepares and tags the data; the others wait for it
    (`satori_cli.train.rundata`). GPUs are chosen by the preflight, on the node that runs.
    """
    from satori_cli.grammar import prompt_path
    from satori_cli.rewards import plugin_path
    from satori_cli.train.rollout import base_url, plan_managed_rollout

    swift_overrides = parse_passthrough(opts.extra)
    if opts.report_to is not None:
        if opts.report_to not in TRACKERS:
            raise SatoriError(f"--report-to {opts.report_to!r} is not one of {', '.join(TRACKERS)}")
        swift_overrides["report_to"] = opts.report_to
    if opts.rollout_gpus:  # a rollout server of its own: server mode
        swift_overrides = {"use_vllm": True, "vllm_mode": "server", **swift_overrides}
    overrides: dict[str, Any] = {
        "model": opts.model,
        "data": opts.data,
        "val_data": opts.val_data,
        "gpus": opts.gpus,
        "rollout_gpus": opts.rollout_gpus,
        "grammar": opts.grammar,
        STAGE_KEYS.get(opts.stage, "swift"): swift_overrides,  # arguments after `--` go to this stage
    }
    recipe = resolve_recipe(opts.preset, opts.config, overrides)
    launch = launch_settings(opts, recipe.gpus)
    rollout_urls = tuple(dict.fromkeys(base_url(url) for url in opts.rollout_urls))
    if rollout_urls and launch.gpus == 0:
        raise SatoriError("--rollout-url trains on GPUs: server mode cannot run with --gpus 0 (the CPU)")
    run_dir, resume, claim = resolve_output_and_resume(opts, recipe)
    # Cheap and offline (a hub id is checked by the preflight); the tiny model is built after the data.
    model = models.resolve(recipe.model)
    recipe = inherit_run(recipe, model, opts.config, opts.grammar)
    if resume is not None:
        recipe.grammar = resumed_grammar(run_dir, opts.grammar, recipe.grammar)
    grammar = get_grammar(recipe.grammar)
    check_stage(recipe, opts)
    made = None
    if prepare_data:
        if claim is not None:
            runfolder.clear_data(claim)
        made = outputs.missing_root(run_dir)
        outputs.ensure_dir(run_dir, "--out")
        try:
            data = rundata.make_data(recipe, run_dir, launch, opts.stage, grammar.name, opts.data_timeout)
            data_sources, (tagged, tagged_val) = data[:2], data[2:]
            if model.kind == "tiny":  # built after the data: the cheap checks come first
                model = models.resolve(recipe.model, build=True)
        except BaseException:
            runfolder.abandon(made, claim)  # a failure before training leaves no run folder behind
            raise
    else:
        tagged, tagged_val = rundata.stage_files(opts.stage, run_dir)
        # Resolved as the real run would: a path it cannot use (`~nobody/...`) is refused here too.
        train = Path(recipe.data or tagged).expanduser().resolve()
        val = Path(recipe.val_data).expanduser().resolve() if recipe.val_data else None
        data_sources, tagged_val = (train, val), tagged_val if val else None
    plan = TrainPlan(
        recipe=recipe,
        model=model.path,
        train_path=tagged,
        val_path=tagged_val,
        output_dir=run_dir,
        plugin=Path(plugin_path()),
        reward_funcs=grammar.reward_funcs,
        system_prompt=Path(prompt_path("system", grammar)),
        launch=launch,
        local_qwen2_5_vl=model.local and model.model_type == "qwen2_5_vl",
        resume=resume,
        rollout_urls=rollout_urls,
        stage=opts.stage,
        made_dir=made,
        claim=claim,
        data_sources=data_sources,
    )
    if plan.server_mode and not rollout_urls:
        plan_managed_rollout(plan, dry_run=not prepare_data)
    return plan


def inherit_run(
    recipe: Recipe, model: models.Model, config: Path | None, grammar: str | None = None
) -> Recipe:
    """Training on from a run keeps the run's pixel budget (the frame its boxes are in) and,
    unless --grammar or the --config file names one, its grammar.

    The preset's budget gives way; a `--config` file that sets another one is refused.
    """
    if model.run is None:
        return recipe
    given = read_recipe_file(config) if config else {}
    if model.run.grammar and grammar is None and not given.get("grammar"):
        recipe.grammar = get_grammar(model.run.grammar).name
    low, high = (int(given[k]) if given.get(k) is not None else None for k in ("min_pixels", "max_pixels"))
    budget = models.settle_budget([model], low, high, f"--config {config}")
    recipe.min_pixels, recipe.max_pixels = budget.min_pixels, budget.max_pixels
    return recipe


def resumed_grammar(run_dir: Path, chosen: str | None, resolved: str) -> str:
    """A resumed run keeps the grammar it started with: its prompt and rewards cannot change mid-run."""
    recorded = runfolder.recorded_grammar(run_dir)
    if recorded is None:
        return resolved
    if chosen is not None and get_grammar(chosen).name != recorded:
        raise SatoriError(
            f"{run_dir} was trained in the {recorded} grammar; --grammar {chosen} cannot resume it",
            hint=f"drop --grammar (or pass --grammar {recorded}), or start a new run",
        )
    return recorded


def swift_program() -> str:
    return find_program("swift", SWIFT_HINT)


class ArgumentsRefused(SatoriError):
    """ms-swift's parser refused the command line (exit 2, nothing trained)."""


_PARSER_ERROR = re.compile(r"^[\w.-]+: error: (.+)$")


def parser_error(lines: Iterable[str]) -> str | None:
    """argparse's `PROG: error: MESSAGE` among a failed command's last lines, else None."""
    for line in reversed(list(lines)):
        if match := _PARSER_ERROR.match(line.strip()):
            return match.group(1)
    return None


def run_plan(
    plan: TrainPlan,
    command: Command,
    *,
    verbose: bool = False,
    rollout: Command | None = None,
) -> dict[str, Any]:
    """Run one node's command with a live progress line; node 0 writes `run.json` before and after.

    The other nodes of a multi-node run share the run folder: each keeps its own log
    (`train-node<k>.log`) and leaves `run.json` to node 0. `rollout` is the `swift rollout`
    command of a server satori started for this run (recorded with the rest).
    """
    from satori_cli.console import console

    run_dir = plan.output_dir
    rank = plan.launch.node_rank or 0
    log_path = run_dir / ("train.log" if rank == 0 else f"train-node{rank}.log")
    swift_args = plan.swift_args()
    train_src, val_src = plan.data_sources
    info: dict[str, Any] = {
        "started": runfolder.now(),
        "status": "running",
        "stage": plan.stage,
        "recipe": asdict(plan.recipe),
        "grammar": plan.recipe.grammar,  # what `satori eval/serve/rewards score` follow for this run
        "model": plan.model,
        "resume_from": str(plan.resume) if plan.resume else None,
        "command": [runfolder.command_record(rank, command)],
        "swift_args": swift_args,
        "launch": {
            **asdict(plan.launch),
            "node_rank": rank,
            "devices": [g.device_id for g in plan.launch.devices],
        },
        "rollout": {
            "urls": list(plan.rollout_urls),
            "started_by_satori": runfolder.command_record(rank, rollout) if rollout else None,
        }
        if plan.rollout_urls
        else None,
        "trackers": {
            "report_to": plan.report_to,
            "run_name": swift_args.get("run_name"),
            "tensorboard_dir": str(run_dir / "runs") if "tensorboard" in plan.report_to else None,
        },
        "versions": runfolder.versions(),
        "git_commit": runfolder.git_commit(),
        "data": {"train": runfolder.fingerprint(train_src), "val": runfolder.fingerprint(val_src)},
        "log": str(log_path),
    }
    record = rank == 0
    if record:
        runfolder.write_run_json(run_dir, info)
    start = time.monotonic()
    with runlogs.progress_display(console()) as display:
        feed = runlogs.ProgressFeed(display)

        def on_line(line: str) -> None:
            feed(line)
            if verbose:
                display.line(line)

        code = run(command, on_line=on_line, log_path=log_path)
    latest = runlogs.latest_checkpoint(run_dir)
    info.update(
        {
            "finished": runfolder.now(),
            "status": "ok" if code == 0 else ("interrupted" if code == 130 else "failed"),
            "exit_code": code,
            "wall_s": round(time.monotonic() - start, 2),
            "last_checkpoint": str(latest) if latest else None,
            "last_metrics": feed.last,
        }
    )
    if record:
        runfolder.write_run_json(run_dir, info)
    if code != 0:
        refused = parser_error(feed.tail) if code == 2 else None
        if refused:  # swift's argument parser: its one line says it all (the usage runs to pages)
            raise ArgumentsRefused(
                f"ms-swift refused an argument: {refused}",
                hint="`swift rlhf --help` lists them; nothing was trained",
            )
        if code == 130:
            raise Interrupted(f"swift {command.argv[1]} stopped", hint=f"full log: {log_path}")
        console().print("\n".join(feed.tail), markup=False, highlight=False)
        raise SatoriError(
            f"swift {command.argv[1]} failed with exit code {code}", exit_code=1, hint=f"full log: {log_path}"
        )
    return info


# -- the dry run -----------------------------------------------------------------------------------
def rollout_lines(plan: TrainPlan, opts: TrainOptions, program: str, split: DeviceSplit) -> list[str]:
    """What runs the rollouts: the server satori starts here, or the command for each rollout machine."""
    from satori_cli.train.rollout import PLACEHOLDER_URL, rollout_args, rollout_command

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
