"""`satori serve` and `satori predict`: SATORI behind an OpenAI-compatible API, a demo, a CLI round trip."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer

from satori_cli.commands.options import (
    GPUS,
    MODEL,
    OUT,
    ApiKey,
    BaseUrl,
    DryRun,
    Grammar,
    Host,
    MaxNewTokens,
    Overwrite,
    Port,
    StartupTimeout,
    Temperature,
    check_number,
)


def serve(
    model: Annotated[
        str | None,
        typer.Option(
            *MODEL,
            help="Checkpoint folder, `satori train` run folder (its last checkpoint, in the run's pixel "
            "budget), hub id (default: justairr/SATORI), or `tiny` (the tiny random model, built on first "
            "use; noise, for trying the plumbing on a CPU). With --base-url: the served run, for its budget.",
        ),
    ] = None,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    gpus: Annotated[int, typer.Option(*GPUS, min=1, help="GPUs for vLLM tensor parallelism.")] = 1,
    api_key: ApiKey = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="vllm (GPU), transformers (ms-swift deploy; CPU works), fake (canned SATORI answers, "
            "no model), or auto: vllm when a vllm executable is found, else transformers.",
        ),
    ] = "auto",
    vllm_bin: Annotated[
        str,
        typer.Option(
            "--vllm-bin",
            help="The vllm executable; point it at a separate environment (vLLM pins pillow>=13).",
        ),
    ] = "vllm",
    ui: Annotated[bool, typer.Option("--ui", help="Also start the Gradio demo against the server.")] = False,
    grammar: Grammar = None,
    ui_port: Annotated[int, typer.Option("--ui-port", help="Port of the demo.")] = 7860,
    base_url: BaseUrl = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(
            "--max-model-len",
            help="vLLM context length (default: the prompt at the pixel budget plus 2048 new tokens, "
            "3584 at the paper's budget; see satori_cli/vllm_settings.py).",
        ),
    ] = None,
    startup_timeout: StartupTimeout = 900,
    dry_run: DryRun = False,
) -> None:
    """Serve SATORI over an OpenAI-compatible API (served model name `satori`), optionally with a demo.

    The pixel budget is a run's own (when --model is a run folder or one of its checkpoints), else
    MIN_PIXELS / MAX_PIXELS, else the paper's; the demo resizes images to it before sending, so boxes
    map back exactly. With --ui --base-url URL the demo attaches to a server already running there
    and no server starts.

    --port 0 / --ui-port 0 pick free ports (printed). Ctrl-C, SIGTERM or a closed terminal stop
    the server and everything it started; so does satori dying any other way.
    """
    from satori_cli.serve import server

    check_number(startup_timeout, "--startup-timeout", positive=True)
    if max_model_len is not None:
        check_number(max_model_len, "--max-model-len", positive=True)
    server.serve(
        server.ServeOptions(
            model=model,
            host=host,
            port=port,
            gpus=gpus,
            api_key=api_key,
            backend=backend,
            vllm_bin=vllm_bin,
            ui=ui,
            grammar=grammar,
            ui_port=ui_port,
            base_url=base_url,
            max_model_len=max_model_len,
            startup_timeout=startup_timeout,
            dry_run=dry_run,
        )
    )


def predict(
    image: Annotated[Path, typer.Argument(help="The image file.")],
    question: Annotated[str, typer.Argument(help="The question about the image.")],
    base_url: BaseUrl = "http://127.0.0.1:8000/v1",
    api_key: ApiKey = None,
    model: Annotated[
        str | None,
        typer.Option(
            *MODEL,
            help="The run folder (or a checkpoint of it) the server serves: its pixel budget and grammar "
            "are used (default: MIN_PIXELS / MAX_PIXELS, else the paper's; satori).",
        ),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            *OUT,
            help="Write the image with the boxes drawn (PNG); a file satori did not write is not replaced "
            "without --overwrite.",
        ),
    ] = None,
    overwrite: Overwrite = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (boxes in original pixels).")
    ] = False,
    temperature: Temperature = 0.0,
    max_tokens: MaxNewTokens = 512,
    grammar: Grammar = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the answer.")] = 300,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            help="Seconds to wait for the server's /health first (for scripts that just started it).",
        ),
    ] = 0,
) -> None:
    """Ask SATORI about one image: caption, boxes on the original image, answer (or the parts of
    another --grammar: thinking for satori-v2 and r1)."""
    from satori_cli.console import console
    from satori_cli.serve.client import SatoriClient, draw_boxes, load_image
    from satori_cli.serve.server import budget_model, pixel_budget
    from satori_cli.train.runfolder import model_grammar

    check_number(timeout, "--timeout", positive=True)
    check_number(wait, "--wait")
    check_number(temperature, "--temperature")
    check_number(max_tokens, "--max-new-tokens", positive=True)
    if save is not None:  # before the question is asked: a refused --out costs nothing
        from satori_cli import outputs

        outputs.check_folder(save.parent, "--out")
        outputs.check_target(save, overwrite, "--out")
    budget = pixel_budget(budget_model(model))
    picture = load_image(image)
    grammar = model_grammar(grammar, model)  # the served run answers in its own grammar
    client = SatoriClient(base_url, api_key=api_key, budget=budget, timeout=timeout, grammar=grammar)
    if wait > 0:
        from satori_cli.http_client import http_ok
        from satori_cli.process import wait_until

        health = base_url.rstrip("/").removesuffix("/v1") + "/health"
        with console().status(f"waiting for {health} ..."):
            wait_until(lambda: http_ok(health), timeout=wait, interval=0.5)
    with console().status("asking SATORI ...") if not as_json else contextlib.nullcontext():
        prepared, prediction = client.predict(picture, question, temperature, max_tokens)
    if save is not None:
        outputs.ensure_dir(save.parent, "--out")
        with outputs.atomic_file(save, "wb") as fh:
            draw_boxes(prepared.original, prediction).save(fh, format="PNG")
    if as_json:
        payload = prediction.to_json()
        if save is not None:
            payload["saved"] = str(save)
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    from rich.markup import escape

    c, g = prediction.completion, client.grammar
    if g.has_caption:
        console().print(f"[bold]caption:[/] {escape(c.caption or '(missing)')}", soft_wrap=True)
    for label, box in zip(prediction.labels(), prediction.boxes, strict=True):
        console().print(f"[bold]{label}:[/] {list(box)}")
    if g.thinking_tag:
        console().print(f"[bold]thinking:[/] {escape(c.thinking or '(missing)')}", soft_wrap=True)
    console().print(f"[bold]answer:[/] {escape(c.answer or '(missing)')}", soft_wrap=True)
    if prediction.problem:
        console().print(f"[yellow]not in {g.title} format:[/] {escape(prediction.problem)}")
    if save is not None:
        console().print(f"[green]saved:[/] {save}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("predict")(predict)
