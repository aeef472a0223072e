"""`satori train` and `satori report`: GRPO on ms-swift 4.x, and plots of what a run did."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from satori_cli.commands.options import (
    DATA,
    GPUS,
    MODEL,
    OUT,
    Config,
    DryRun,
    Grammar,
    Overwrite,
    Preset,
    Verbose,
)

TRAIN_HELP = """Train with SATORI's GRPO recipe on ms-swift 4.x (`swift rlhf --rlhf_type grpo`),
or, with --stage sft, a cold-start SFT (`swift sft`) on gold SATORI completions.

Presets (--preset): paper (the published recipe, 4 GPUs), fast (paper + vLLM colocated
rollouts), server (8 GPUs: vLLM rollouts on 2 of them via `swift rollout`, training on 6),
lora (one 24 GB GPU), smoke (tiny model on CPU, 2 steps; the default), learn (SFT then GRPO
on a CPU miniature that learns; `make learn`).
Precedence: preset < --config FILE < flags < arguments after `--`, which go to swift as is:

  satori train --preset smoke

  satori train --preset learn --stage sft --model M --data D -o runs/sft
  satori train --preset learn --model runs/sft --data D -o runs/grpo

  satori train --preset paper --gpus 4 --data data/vqa/train.jsonl --out runs/paper

  satori train --preset fast --gpus 8 --nodes 2 --node-rank 0 --master-addr 10.0.0.1 -o /shared/run --data ...

  satori train --preset server --data ...   (starts `swift rollout` on GPUs 0-1, trains on 2-7)

  satori train --preset server --gpus 8 --nodes 2 --master-addr 10.0.0.1 -o /shared/run \
      --rollout-url http://10.0.0.9:8000 --data ... --dry-run   (every node's command)

  satori train --preset lora --data ... -- --max_steps 100 --lora_rank 8

  satori train --preset paper --grammar r1 --data ...   (the R1-style baseline; see --grammar)
"""


def train(
    preset: Preset = None,
    stage: Annotated[
        str,
        typer.Option(
            "--stage",
            "-s",
            help="grpo (swift rlhf with the four rewards) or sft (swift sft on gold completions).",
        ),
    ] = "grpo",
    config: Config = None,
    model: Annotated[
        str | None,
        typer.Option(
            *MODEL,
            help="Starting model: hub id, checkpoint folder, `tiny`, `base`, or a `satori train` run folder "
            "(its last checkpoint; the new run keeps its pixel budget). Default: the preset's.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(*DATA, help="Prepared train JSONL, or a raw source that `satori data prepare` reads."),
    ] = None,
    val_data: Annotated[
        str | None, typer.Option("--val-data", help="Prepared validation JSONL (evaluated every eval_steps).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            *OUT,
            metavar="DIR",
            help="Run folder (default: $SATORI_HOME/runs/<preset>-<time>). Multi-node: required, on a "
            "filesystem every node shares.",
        ),
    ] = None,
    gpus: Annotated[
        int | None, typer.Option(*GPUS, help="GPUs (processes) per node; 0 = CPU. Default: the preset's.")
    ] = None,
    nodes: Annotated[
        int, typer.Option("--nodes", help="Number of machines (same command on each, own --node-rank).")
    ] = 1,
    node_rank: Annotated[
        int | None,
        typer.Option(
            "--node-rank", help="This machine's rank, 0..nodes-1 (required to run with --nodes > 1)."
        ),
    ] = None,
    master_addr: Annotated[
        str | None,
        typer.Option("--master-addr", help="Address of node 0 (multi-node; default: $MASTER_ADDR)."),
    ] = None,
    master_port: Annotated[
        int | None,
        typer.Option("--master-port", help="Rendezvous port on node 0 (default: $MASTER_PORT, else 29500)."),
    ] = None,
    rollout_url: Annotated[
        list[str] | None,
        typer.Option(
            "--rollout-url",
            help="Server mode: a running `satori rollout` (http://HOST:PORT; repeat for several) generates "
            "the rollouts; checked before training (it answers, same architecture, GPU split).",
        ),
    ] = None,
    rollout_gpus: Annotated[
        int | None,
        typer.Option(
            "--rollout-gpus",
            help="Server mode on one node: start `swift rollout` on this many GPUs of this machine (the "
            "first of the pool; training takes the next --gpus). Default: the preset's.",
        ),
    ] = None,
    report_to: Annotated[
        str | None,
        typer.Option(
            "--report-to",
            help="Experiment tracker: tensorboard (default; RUN/runs, no network), wandb, swanlab or none. "
            "The run is named after the run folder.",
        ),
    ] = None,
    data_timeout: Annotated[
        float,
        typer.Option(
            "--data-timeout", help="Multi-node: seconds nodes 1..N-1 wait for node 0's prepared data."
        ),
    ] = 3600,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue from the latest checkpoint of --out (or of the newest run)."),
    ] = False,
    resume_from: Annotated[
        Path | None,
        typer.Option(
            "--resume-from", help="Continue from this checkpoint folder (or this run's latest checkpoint)."
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace the run already in --out (only what a run writes; a folder that is not a "
            "satori run is never wiped). Without it an existing run folder is refused.",
        ),
    ] = False,
    grammar: Grammar = None,
    dry_run: DryRun = False,
    skip_memory_check: Annotated[
        bool, typer.Option("--skip-memory-check", help="Do not stop on the rough GPU-memory estimate.")
    ] = False,
    verbose: Verbose = False,
    swift_args: Annotated[
        list[str] | None,
        typer.Argument(metavar="[-- SWIFT_ARGS...]", help="Extra ms-swift arguments after `--` (they win)."),
    ] = None,
) -> None:
    from satori_cli.console import console
    from satori_cli.errors import SatoriError
    from satori_cli.train.runfolder import RunComplete, abandon, replace_earlier_run
    from satori_cli.train.runner import ArgumentsRefused, TrainOptions, build_plan, run_plan, swift_program

    if resume and resume_from is not None:
        raise SatoriError("use either --resume or --resume-from, not both")
    if overwrite and (resume or resume_from is not None):
        raise SatoriError("--overwrite starts the run over; --resume continues it: use one of them")
    opts = TrainOptions(
        preset=preset,
        config=config,
        model=model,
        data=data,
        val_data=val_data,
        output=output,
        gpus=gpus,
        nodes=nodes,
        node_rank=node_rank,
        master_addr=master_addr,
        master_port=master_port,
        resume=str(resume_from) if resume_from is not None else ("latest" if resume else None),
        overwrite=overwrite,
        extra=list(swift_args or []),
        stage=stage,
        grammar=grammar,
        rollout_urls=list(rollout_url or []),
        rollout_gpus=rollout_gpus,
        report_to=report_to,
        data_timeout=data_timeout,
    )
    if not data_timeout > 0:
        raise SatoriError(f"--data-timeout must be a positive number of seconds, not {data_timeout}")
    if dry_run:
        from satori_cli.train.runner import dry_run_text

        try:
            typer.echo(dry_run_text(opts))
        except RunComplete as done:
            console().print(str(done), markup=False, soft_wrap=True)
        return
    if nodes > 1 and node_rank is None:
        raise SatoriError(
            "--nodes > 1 needs --node-rank on each machine", hint="or --dry-run to see all commands"
        )
    from satori_cli.gpus import detect_gpus
    from satori_cli.train.plan import build_commands
    from satori_cli.train.preflight import preflight

    program = swift_program()
    with console().status("preparing the run ..."):
        try:
            plan = build_plan(opts)
        except RunComplete as done:
            console().print(str(done), markup=False, soft_wrap=True)
            return
        try:
            found = detect_gpus() if plan.launch.gpus > 0 else []
            split = preflight(plan, found, memory=not skip_memory_check)
        except BaseException:
            abandon(plan.made_dir, plan.claim)  # a failed preflight leaves no run folder behind
            raise
    (_, command), *_ = build_commands(plan, program)
    if note := replace_earlier_run(plan.claim):
        console().print(note, soft_wrap=True)
    console().print(f"[bold]run folder[/] {plan.output_dir}")
    if plan.launch.gpus:
        console().print(split.describe())
    rollout = None
    if plan.managed_rollout is not None:
        from satori_cli.train.rollout import start_rollout

        rollout = start_rollout(plan, split.rollout, program)
    try:
        info = run_plan(plan, command, verbose=verbose, rollout=rollout.command if rollout else None)
    except ArgumentsRefused:
        abandon(plan.made_dir, plan.claim)  # nothing was trained: as if the preflight had said it
        raise
    except SatoriError:
        if rollout is not None and not rollout.alive:
            from satori_cli.serve.server import print_tail

            print_tail(rollout.died())  # the rollout server died first: its last lines say why
        raise
    finally:
        if rollout is not None:
            rollout.stop()
    console().print(
        f"[green]done[/] in {info['wall_s']:.0f} s; last checkpoint: {info['last_checkpoint']}\n"
        f"plots: satori report {plan.output_dir}"
    )
    from satori_cli.train.report import trend_note, zero_rewards_note
    from satori_cli.train.runlogs import read_metrics

    rows = read_metrics(plan.output_dir)
    if note := zero_rewards_note(rows) or trend_note(rows):
        console().print(f"[yellow]note:[/] {note}")


def report(
    run_dir: Annotated[
        Path | None,
        typer.Argument(
            help="A run folder written by `satori train` (default: the newest under $SATORI_HOME/runs)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            *OUT,
            help="Where to write the report (default: RUN_DIR/report, replaced each time). Elsewhere, "
            "files satori did not write are not replaced without --overwrite.",
        ),
    ] = None,
    overwrite: Overwrite = False,
    max_completions: Annotated[
        int, typer.Option("--max-completions", help="Completions in the gallery (the latest steps first).")
    ] = 24,
) -> None:
    """Plot a run's rewards, KL, completion length and loss, and a gallery of its completions.

    PNG plots over steps of the total reward and each component, KL, completion length and the
    training loss (with token accuracy for an SFT run), and a self-contained HTML gallery of
    logged completions with predicted (red) and ground-truth (green) boxes drawn on their images.
    """
    from satori_cli.console import console
    from satori_cli.train.report import write_report

    if run_dir is None:
        from satori_cli.train.runfolder import newest_run

        run_dir = newest_run("report on")
        console().print(f"run: {run_dir} (the newest)", markup=False, soft_wrap=True)
    with console().status("rendering the report ..."):
        result = write_report(run_dir, out, max_completions=max_completions, overwrite=overwrite)
    for path in result.files:
        console().print(f"[green]wrote[/] {path}")
    for note in result.notes:
        console().print(f"[yellow]note:[/] {note}")
    if result.eval_command:
        console().print("grounding evaluation of the val split (boxes, answers, captions):")
        console().print(f"  {result.eval_command}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train)
    app.command("report")(report)
