"""`satori rollout`: a `swift rollout` server (vLLM) that generates GRPO rollouts on GPUs of its own."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from satori_cli.commands.options import GPUS, MODEL, Config, DryRun, Host, Port, Preset, StartupTimeout

ROLLOUT_HELP = """Serve GRPO rollouts from dedicated GPUs: `swift rollout` (vLLM, data x tensor parallel).

`satori train --rollout-url http://HOST:PORT` then trains in ms-swift's server mode: every
prompt is generated here, and the trainer pushes its weights here before each generation.
The recipe (--preset, default `server`; or --config) gives the pixel budget, the dtype and the
context length (prompt + completion), exactly as `satori train` uses them:

  satori rollout --gpus 2                               # GPUs 0,1; then on this machine:
  satori train --preset server --gpus 6 --rollout-url http://127.0.0.1:8000 --data ...

  satori rollout --model Qwen/Qwen2.5-VL-7B-Instruct --gpus 8 --tensor-parallel 2 --host 0.0.0.0

The server takes the first --gpus GPUs of CUDA_VISIBLE_DEVICES (else of all GPUs). It has no
API key (ms-swift's trainer cannot send one): with --host 0.0.0.0 keep it on a private network.
Ctrl-C, SIGTERM or a closed terminal stop it and its vLLM workers.
"""


def rollout(
    model: Annotated[
        str | None,
        typer.Option(
            *MODEL,
            help="Hub id, checkpoint folder, `tiny`, `base` or a `satori train` run folder (its last "
            "checkpoint, in its pixel budget). Default: the recipe's. Serve what you train.",
        ),
    ] = None,
    gpus: Annotated[
        int | None, typer.Option(*GPUS, help="GPUs for vLLM (default: the recipe's rollout_gpus, else 1).")
    ] = None,
    tensor_parallel: Annotated[
        int,
        typer.Option(
            "--tensor-parallel", help="GPUs per vLLM engine; --gpus / this = data-parallel engines."
        ),
    ] = 1,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    preset: Preset = None,
    config: Config = None,
    swift_bin: Annotated[
        str,
        typer.Option(
            "--swift-bin",
            help="The swift executable; point it at an environment with vLLM (e.g. .venv-gpu/bin/swift).",
        ),
    ] = "swift",
    startup_timeout: StartupTimeout = 1800,
    dry_run: DryRun = False,
    swift_args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- SWIFT_ROLLOUT_ARGS...]",
            help="Extra `swift rollout` arguments after `--` (they win).",
        ),
    ] = None,
) -> None:
    from satori_cli import models
    from satori_cli.config import paths
    from satori_cli.console import console
    from satori_cli.errors import SatoriError, install_hint
    from satori_cli.gpus import detect_gpus
    from satori_cli.process import find_program
    from satori_cli.serve.server import ServerPlan, check_ports, hold_server, root_url
    from satori_cli.train.preflight import assumed_pool, check_budget, check_token_env
    from satori_cli.train.recipe import parse_passthrough, resolve_recipe
    from satori_cli.train.rollout import RolloutSpec, rollout_args, rollout_command
    from satori_cli.train.runner import inherit_run

    if not startup_timeout > 0:
        raise SatoriError(f"--startup-timeout must be a positive number, not {startup_timeout}")
    recipe = resolve_recipe(preset or ("server" if config is None else None), config, {"model": model})
    # The model train would start from (a run folder: its last checkpoint, in the run's pixel budget).
    resolved = models.resolve(recipe.model, build=not dry_run)
    recipe = inherit_run(recipe, resolved, config)
    count = gpus if gpus is not None else (recipe.rollout_gpus or 1)
    spec = RolloutSpec(gpus=count, tensor_parallel=tensor_parallel, host=host, port=port)
    check_budget(recipe.budget)
    check_ports(host, [(port, "--port")], probe=False)
    found = detect_gpus() or (assumed_pool(count) if dry_run else [])
    if count > len(found):
        have = f"{len(found)} GPU(s) visible" if found else "no GPU visible"
        raise SatoriError(
            f"--gpus {count} asked for, but {have}",
            hint="vLLM needs CUDA GPUs; check CUDA_VISIBLE_DEVICES / nvidia-smi",
        )
    if not dry_run:
        resolved = models.check_reachable(resolved)  # a hub id: cached, or not offline
    chosen = resolved.path
    local = resolved.local and resolved.model_type == "qwen2_5_vl"

    def plan(port: int) -> ServerPlan:
        args = rollout_args(
            chosen,
            recipe,
            RolloutSpec(gpus=count, tensor_parallel=tensor_parallel, host=host, port=port),
            local_qwen2_5_vl=local,
            extra=parse_passthrough(list(swift_args or [])),
        )
        try:
            program = find_program(swift_bin, f"install ms-swift and vLLM: {install_hint('gpu')}")
        except SatoriError:
            if not dry_run:
                raise
            program = swift_bin
        command = rollout_command(args, recipe.budget, found[:count], program)
        log = paths().home / "logs" / f"rollout-{port}.log"
        return ServerPlan(
            backend="rollout", model=chosen, command=command, host=host, port=port, log_file=log
        )

    if dry_run:
        console().print(
            f"# swift rollout of {chosen}: {spec.data_parallel} vLLM engine(s) x "
            f"{spec.tensor_parallel} GPU(s), "
            f"budget {recipe.budget} (preset {recipe.preset})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        console().print(plan(port).command.display(), soft_wrap=True, markup=False, highlight=False)
        return
    check_token_env(recipe.budget)
    (port,) = check_ports(host, [(port, "--port")])  # in use, privileged, not local; 0 -> a free port
    planned = plan(port)
    # What a training node puts in --rollout-url: this machine's name when it listens on all addresses.
    url = root_url(socket.gethostname() if host in ("0.0.0.0", "::") else host, port)

    def ready(_server) -> None:
        devices = planned.command.env.get("CUDA_VISIBLE_DEVICES", "")
        console().print(
            f"[green]rollout server ready:[/] {url} ({spec.data_parallel} x {spec.tensor_parallel} vLLM "
            f"GPU(s): {devices}; Ctrl-C to stop)"
        )
        console().print(f"train with: satori train --rollout-url {url} ...", markup=False, highlight=False)

    hold_server(planned, startup_timeout, ready)


def register(app: typer.Typer) -> None:
    app.command("rollout", help=ROLLOUT_HELP)(rollout)
