"""`satori eval`: VLMEvalKit benchmarks on a SATORI checkpoint, optionally beside the base model."""

from __future__ import annotations

from pathlib import Path

import typer

from satori_cli.config import BASE_MODEL, DEFAULT_MODEL
from satori_cli.grammar import GRAMMAR_HELP
from satori_cli.pixels import PAPER_MAX_PIXELS, PAPER_MIN_PIXELS


def eval_command(
    names: list[str] = typer.Argument(
        None, metavar="[NAMES]...", help="More benchmark names (so `--data MMBench MMStar` works)."
    ),
    data: list[str] = typer.Option(
        None,
        "--data",
        "-d",
        help="Benchmarks: MMBench and MMStar as you know them (MMBench is scored on its dev split), "
        "any VLMEvalKit name, a path to a VLMEvalKit-format .tsv, or a prepared SATORI .jsonl (or a "
        "folder: its val.jsonl) for the grounding benchmark (boxes, answers, captions, scored by the "
        "rewards).",
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help=f"Checkpoint folder, `satori train` run folder (its last checkpoint, scored in the run's "
        f"pixel budget), hub id (default {DEFAULT_MODEL}), `base` or `tiny`; with --backend api, the "
        "served model name (default: the server's first) or the served run's folder (for its budget).",
    ),
    procs: int = typer.Option(
        1,
        "--gpus",
        "-g",
        min=1,
        help="Parallelism. transformers: processes under torchrun, one per GPU (on CPU, CPU processes). "
        "vllm: tensor-parallel GPUs of one engine. api: concurrent requests.",
    ),
    baseline: bool = typer.Option(
        False,
        "--baseline",
        help="Also evaluate the base model (--baseline-model) under identical settings; show the delta.",
    ),
    baseline_model: str = typer.Option(
        BASE_MODEL,
        help="The base model for --baseline: checkpoint or run folder, or hub id (with --backend api, "
        "served name).",
    ),
    baseline_prompt: str = typer.Option(
        "stock",
        help="Prompt of the baseline: `stock` (the question as given, as the paper compares) or "
        "`satori` (its grammar's system prompt and suffix too).",
    ),
    grammar: str = typer.Option(
        None,
        "--grammar",
        help=f"Output grammar the model was trained for (its prompt, suffix and answer reading): "
        f"{GRAMMAR_HELP} Default: what the model's `satori train` run recorded, else satori. A baseline "
        "run folder keeps its own.",
    ),
    judge: str = typer.Option(
        "exact_matching",
        help="How answers are matched to options: `exact_matching` (deterministic, offline) or an LLM "
        "judge name served at --judge-url.",
    ),
    judge_url: str = typer.Option(None, help="OpenAI-compatible base URL of the LLM judge (ends in /v1)."),
    judge_key: str = typer.Option(None, help="API key of the LLM judge.", envvar="SATORI_JUDGE_KEY"),
    limit: int = typer.Option(None, min=1, help="Evaluate only the first N items of each benchmark."),
    backend: str = typer.Option(
        "transformers",
        help="transformers (CPU or GPU), vllm (GPU, much faster), or api (an OpenAI-compatible server "
        "such as `satori serve`).",
    ),
    base_url: str = typer.Option(None, help="Server for --backend api, e.g. http://127.0.0.1:8000/v1."),
    api_key: str = typer.Option("EMPTY", help="API key for --backend api.", envvar="SATORI_API_KEY"),
    data_dir: Path = typer.Option(
        None,
        help="Folder of the official VLMEvalKit TSVs and their decoded images (default: $LMUData if "
        "set, else $SATORI_HOME/data/vlmeval). Offline: place them here. A .tsv given by path is "
        "linked into OUT/data instead.",
    ),
    work_dir: Path = typer.Option(
        None,
        "--out",
        "-o",
        metavar="DIR",
        help="Output folder (default: a new folder per run under $SATORI_HOME/runs/eval).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier results in --out."),
    max_new_tokens: int = typer.Option(
        2048, min=1, help="Most tokens to generate per answer (the original's 2048)."
    ),
    temperature: float = typer.Option(
        0.0, min=0.0, help="0 = greedy (default, as VLMEvalKit's Qwen2-VL); > 0 samples."
    ),
    top_p: float = typer.Option(1.0, help="Nucleus sampling cut (only when --temperature > 0)."),
    top_k: int = typer.Option(0, min=0, help="Top-k cut, 0 = off (only when --temperature > 0)."),
    repetition_penalty: float = typer.Option(
        1.0, help="1.0 = none (the checkpoint's generation_config.json is never used)."
    ),
    min_pixels: int = typer.Option(
        None,
        help=f"Smallest image area the model sees (default: a run's own, else {PAPER_MIN_PIXELS}).",
    ),
    max_pixels: int = typer.Option(
        None,
        help=f"Largest image area the model sees (default: a run's own, else {PAPER_MAX_PIXELS}).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the VLMEvalKit launch and its model spec; run nothing."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show VLMEvalKit's whole log."),
) -> None:
    """Evaluate SATORI on MMBench / MMStar, any VLMEvalKit benchmark, or the grounding benchmark.

    Runs VLMEvalKit with SATORI's prompt (or another output grammar's, --grammar), the shared
    pixel budget and explicit decoding (greedy, repetition penalty 1.0, by default), each
    model in its own launch; the answer inside
    <answer> is scored, the raw output is kept. The exit code is non-zero when any benchmark
    failed, even where VLMEvalKit itself would exit 0.
    """
    from satori_cli.evaluation.orchestrate import EvalRequest, evaluate

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
