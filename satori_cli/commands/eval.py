"""`satori eval`: VLMEvalKit benchmarks on a SATORI checkpoint, optionally beside the base model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from satori_cli.commands.options import (
    DATA,
    GPUS,
    MODEL,
    OUT,
    ApiKey,
    BaseUrl,
    DryRun,
    Grammar,
    MaxNewTokens,
    MaxPixels,
    MinPixels,
    Overwrite,
    Temperature,
    Verbose,
    check_number,
)
from satori_cli.config import BASE_MODEL, DEFAULT_MODEL


def eval_command(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="[NAMES]...", help="More benchmark names (so `--data MMBench MMStar` works)."),
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            *DATA,
            help="Benchmarks: MMBench and MMStar as you know them (MMBench is scored on its dev split), "
            "any VLMEvalKit name, a path to a VLMEvalKit-format .tsv, or a prepared SATORI .jsonl (or a "
            "folder: its val.jsonl) for the grounding benchmark (boxes, answers, captions, scored by the "
            "rewards).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            *MODEL,
            help=f"Checkpoint folder, `satori train` run folder (its last checkpoint, scored in the run's "
            f"pixel budget), hub id (default {DEFAULT_MODEL}), `base` or `tiny`; with --backend api, the "
            "served model name (default: the server's first) or the served run's folder (for its budget).",
        ),
    ] = None,
    procs: Annotated[
        int,
        typer.Option(
            *GPUS,
            min=1,
            help="Parallelism. transformers: processes under torchrun, one per GPU (on CPU, CPU "
            "processes). vllm: tensor-parallel GPUs of one engine. api: concurrent requests.",
        ),
    ] = 1,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            help="Also evaluate the base model (--baseline-model) under identical settings; show the delta.",
        ),
    ] = False,
    baseline_model: Annotated[
        str,
        typer.Option(
            "--baseline-model",
            help="The base model for --baseline: checkpoint or run folder, or hub id (with --backend api, "
            "served name).",
        ),
    ] = BASE_MODEL,
    baseline_prompt: Annotated[
        str,
        typer.Option(
            "--baseline-prompt",
            help="Prompt of the baseline: `stock` (the question as given, as the paper compares) or "
            "`satori` (its grammar's system prompt and suffix too).",
        ),
    ] = "stock",
    grammar: Grammar = None,
    judge: Annotated[
        str,
        typer.Option(
            "--judge",
            help="How answers are matched to options: `exact_matching` (deterministic, offline) or an "
            "LLM judge name served at --judge-url.",
        ),
    ] = "exact_matching",
    judge_url: Annotated[
        str | None,
        typer.Option("--judge-url", help="OpenAI-compatible base URL of the LLM judge (ends in /v1)."),
    ] = None,
    judge_key: Annotated[
        str | None, typer.Option("--judge-key", help="API key of the LLM judge.", envvar="SATORI_JUDGE_KEY")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Evaluate only the first N items of each benchmark.")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="transformers (CPU or GPU), vllm (GPU, much faster), or api (an OpenAI-compatible server "
            "such as `satori serve`).",
        ),
    ] = "transformers",
    base_url: BaseUrl = None,
    api_key: ApiKey = "EMPTY",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder of the official VLMEvalKit TSVs and their decoded images (default: $LMUData if "
            "set, else $SATORI_HOME/data/vlmeval). Offline: place them here. A .tsv given by path is "
            "linked into OUT/data instead.",
        ),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            *OUT,
            metavar="DIR",
            help="Output folder (default: a new folder per run under $SATORI_HOME/runs/eval).",
        ),
    ] = None,
    overwrite: Overwrite = False,
    max_new_tokens: MaxNewTokens = 2048,
    temperature: Temperature = 0.0,
    top_p: Annotated[
        float, typer.Option("--top-p", help="Nucleus sampling cut (only when --temperature > 0).")
    ] = 1.0,
    top_k: Annotated[
        int, typer.Option("--top-k", min=0, help="Top-k cut, 0 = off (only when --temperature > 0).")
    ] = 0,
    repetition_penalty: Annotated[
        float,
        typer.Option(
            "--repetition-penalty",
            help="1.0 = none (the checkpoint's generation_config.json is never used).",
        ),
    ] = 1.0,
    min_pixels: MinPixels = None,
    max_pixels: MaxPixels = None,
    dry_run: DryRun = False,
    verbose: Verbose = False,
) -> None:
    """Evaluate SATORI on MMBench / MMStar, any VLMEvalKit benchmark, or the grounding benchmark.

    Runs VLMEvalKit with SATORI's prompt (or another output grammar's, --grammar), the shared
    pixel budget and explicit decoding (greedy, repetition penalty 1.0, by default), each
    model in its own launch; the answer inside
    <answer> is scored, the raw output is kept. The exit code is non-zero when any benchmark
    failed, even where VLMEvalKit itself would exit 0.
    """
    from satori_cli.evaluation.orchestrate import evaluate
    from satori_cli.evaluation.plan import EvalRequest

    check_number(max_new_tokens, "--max-new-tokens", positive=True)
    check_number(temperature, "--temperature")
    evaluate(
        EvalRequest(
            data=[*(data or []), *(names or [])],
            model=model,
            procs=procs,
            baseline=baseline_model if baseline else None,
            baseline_prompt=baseline_prompt,
            grammar=grammar,
            judge=judge,
            judge_url=judge_url,
            judge_key=judge_key,
            limit=limit,
            backend=backend,
            base_url=base_url,
            api_key=api_key,
            data_dir=data_dir,
            work_dir=work_dir,
            overwrite=overwrite,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            dry_run=dry_run,
            verbose=verbose,
        )
    )


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
