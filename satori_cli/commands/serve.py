"""`satori serve` and `satori predict`: SATORI behind an OpenAI-compatible API, a demo, a CLI round trip."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer

from satori_cli.grammar import GRAMMAR_HELP

API_KEY_ENV = "SATORI_API_KEY"


def serve(
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint folder, `satori train` run folder (its last checkpoint, in the run's pixel "
        "budget), hub id (default: justairr/SATORI), or `tiny` (the tiny random model, built on first "
        "use; noise, for trying the plumbing on a CPU). With --base-url: the served run, for its budget.",
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Loopback by default; 0.0.0.0 exposes it."),
    port: int = typer.Option(8000, help="Port of the OpenAI-compatible API."),
    gpus: int = typer.Option(1, "--gpus", "-g", min=1, help="GPUs for vLLM tensor parallelism."),
    api_key: str = typer.Option(
        None, envvar=API_KEY_ENV, help=f"Require this Bearer key on /v1 (also read from ${API_KEY_ENV})."
    ),
    backend: str = typer.Option(
        "auto",
        help="vllm (GPU), transformers (ms-swift deploy; CPU works), fake (canned SATORI answers, "
        "no model), or auto: vllm when a vllm executable is found, else transformers.",
    ),
    vllm_bin: str = typer.Option(
        "vllm", help="The vllm executable; point it at a separate environment (vLLM pins pillow>=13)."
    ),
    ui: bool = typer.Option(False, "--ui", help="Also start the Gradio demo against the server."),
    grammar: str = typer.Option(
        None,
        "--grammar",
        help=f"Output grammar the demo asks and reads in: {GRAMMAR_HELP} Default: what the model's "
        "`satori train` run recorded, else satori.",
    ),
    ui_port: int = typer.Option(7860, help="Port of the demo."),
    base_url: str = typer.Option(
        None,
        help="Attach the demo to an already running server (e.g. http://gpu-box:8000/v1); starts no server.",
    ),
    max_model_len: int = typer.Option(
        None,
        help="vLLM context length (default: the prompt at the pixel budget plus 2048 new tokens, "
        "3584 at the paper's budget; see satori_cli/vllm_settings.py).",
    ),
    startup_timeout: float = typer.Option(900, help="Seconds to wait for the server's /health."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the server command and exit."),
) -> None:
    """Serve SATORI over an OpenAI-compatible API (served model name `satori`), optionally with a demo.

    The pixel budget is a run's own (when --model is a run folder or one of its checkpoints), else
    MIN_PIXELS / MAX_PIXELS, else the paper's; the demo resizes images to it before sending, so boxes
    map back exactly.

    --port 0 / --ui-port 0 pick free ports (printed). Ctrl-C, SIGTERM or a closed terminal stop
    the server and everything it started; so does satori dying any other way.
    """
    from satori_cli.errors import SatoriError
    from satori_cli.http_client import check_api_key
    from satori_cli.serve.backends import BACKENDS, root_url
    from satori_cli.serve.server import (
        check_ports,
        pick_backend,
        plan_server,
        run_demo,
        run_server,
        served_model,
    )
    from satori_cli.train.runinfo import model_grammar
    from satori_cli.ui import console

    _check_number(startup_timeout, "--startup-timeout", positive=True)
    if max_model_len is not None:
        _check_number(max_model_len, "--max-model-len", positive=True)
    check_api_key(api_key)
    grammar = model_grammar(grammar, model).name  # a run folder answers in its own grammar
    if base_url and not ui:
        raise SatoriError(
            "--base-url only attaches the demo; add --ui", hint="or drop --base-url to start a server"
        )
    if backend not in (*BACKENDS, "auto"):
        raise SatoriError(f"unknown backend {backend!r}", hint="choose vllm, transformers, fake or auto")
    wanted = [] if base_url else [(port, "--port")]
    if ui:
        if not base_url and ui_port == port and port != 0:
            raise SatoriError(
                f"--ui-port {ui_port} is the API's --port too", hint="give them different ports"
            )
        wanted.append((ui_port, "--ui-port"))
    check_ports(host, wanted, probe=False)  # numbers and host name, before anything else
    if base_url:
        chosen_model = _budget_model(model)
    else:
        backend = pick_backend(backend, vllm_bin)
        chosen_model = served_model(model, backend, resolve=not dry_run)
    budget = _budget(chosen_model)

    def plan(port: int):
        return plan_server(
            backend=backend,
            model=chosen_model,
            host=host,
            port=port,
            gpus=gpus,
            api_key=api_key,
            vllm_bin=vllm_bin,
            max_model_len=max_model_len,
            budget=budget,
            resolve=not dry_run,
        )

    planned = None if base_url else plan(port)
    if dry_run:
        if planned is None:
            console().print(
                f"would start the demo on {root_url(host, ui_port)} against {base_url} (grammar {grammar})"
            )
            return
        console().print(planned.display(), soft_wrap=True, markup=False, highlight=False)
        if chosen_model is not None and chosen_model.run is not None:
            console().print(f"# model: {chosen_model.describe()}", soft_wrap=True, markup=False)
        if ui:
            console().print(
                f"# then the demo on {root_url(host, ui_port)} against {planned.base_url} "
                f"(grammar {grammar})",
                markup=False,
            )
        return
    chosen = check_ports(host, wanted)  # in use, privileged, not local; 0 -> a free port
    if ui:
        ui_port = chosen.pop()
    if planned is None:
        run_demo(base_url, api_key, budget, host, ui_port, grammar=grammar)
        return
    if chosen[0] != port:
        planned = plan(chosen[0])
    run_server(planned, startup_timeout, ui_port if ui else None, budget, grammar=grammar)


def _check_number(value: float, flag: str, positive: bool = False) -> None:
    """A finite number >= 0 (> 0 when `positive`), else one line and exit 2."""
    from satori_cli.errors import SatoriError

    if value != value or value in (float("inf"), float("-inf")) or value < 0 or (positive and value == 0):
        need = "a positive number" if positive else "a number >= 0"
        raise SatoriError(f"{flag} must be {need}, not {value}")


def _budget_model(model: str | None):
    """The model named beside a server that runs elsewhere: only a run's (local) budget is used."""
    from satori_cli import models

    return models.resolve(model, hub="keep") if model else None


def _budget(model=None):
    """The run's budget; else MIN_PIXELS / MAX_PIXELS; else the paper's. A contradiction is one line."""
    from satori_cli import models

    low, high = models.env_bounds()
    named = [model] if model is not None else []
    return models.settle_budget(named, low, high, "MIN_PIXELS/MAX_PIXELS in the environment")


def predict(
    image: Path = typer.Argument(..., help="The image file."),
    question: str = typer.Argument(..., help="The question about the image."),
    base_url: str = typer.Option(
        "http://127.0.0.1:8000/v1", help="The OpenAI-compatible API (from `satori serve`)."
    ),
    api_key: str = typer.Option(
        None, envvar=API_KEY_ENV, help=f"Bearer key of the server (or ${API_KEY_ENV})."
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="The run folder (or a checkpoint of it) the server serves: its pixel budget and grammar are "
        "used (default: MIN_PIXELS / MAX_PIXELS, else the paper's; satori).",
    ),
    save: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Write the image with the boxes drawn (PNG); a file satori did not write is not replaced "
        "without --overwrite.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the result as JSON (boxes in original pixels)."
    ),
    temperature: float = typer.Option(0.0, help="Sampling temperature (0 = greedy, repeatable boxes)."),
    max_tokens: int = typer.Option(512, "--max-new-tokens", help="Most tokens to generate per answer."),
    grammar: str = typer.Option(
        None,
        "--grammar",
        help=f"Output grammar to ask and read in (default: the --model run's, else satori): {GRAMMAR_HELP}",
    ),
    timeout: float = typer.Option(300, help="Seconds to wait for the answer."),
    wait: float = typer.Option(
        0, help="Seconds to wait for the server's /health first (for scripts that just started it)."
    ),
) -> None:
    """Ask SATORI about one image: caption, boxes on the original image, answer (or the parts of
    another --grammar: thinking for satori-v2 and r1)."""
    from satori_cli.serve.client import SatoriClient, draw_boxes, load_image
    from satori_cli.ui import console

    _check_number(timeout, "--timeout", positive=True)
    _check_number(wait, "--wait")
    _check_number(temperature, "--temperature")
    _check_number(max_tokens, "--max-new-tokens", positive=True)
    if save is not None:  # before the question is asked: a refused --out costs nothing
        from satori_cli import outputs

        outputs.check_folder(save.parent, "--out")
        outputs.check_target(save, overwrite, "--out")
    served = _budget_model(model)
    budget = _budget(served)
    if grammar is None and served is not None and served.run is not None:
        grammar = served.run.grammar  # the served run answers in its own grammar
    picture = load_image(image)
    client = SatoriClient(base_url, api_key=api_key, budget=budget, timeout=timeout, grammar=grammar)
    if wait > 0:
        from satori_cli.cmdline import wait_until
        from satori_cli.http_client import http_ok

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
