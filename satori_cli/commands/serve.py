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
        help="Checkpoint folder or hub id (default: justairr/SATORI). `tiny` = the tiny random "
        "model (built on first use; noise, for trying the plumbing on a CPU).",
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Loopback by default; 0.0.0.0 exposes it."),
    port: int = typer.Option(8000, help="Port of the OpenAI-compatible API."),
    gpus: int = typer.Option(1, min=1, help="GPUs for vLLM tensor parallelism."),
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
    max_model_len: int = typer.Option(2048, help="vLLM context length (SATORI trained with 2048)."),
    startup_timeout: float = typer.Option(900, help="Seconds to wait for the server's /health."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the server command and exit."),
) -> None:
    """Serve SATORI over an OpenAI-compatible API (served model name `satori`), optionally with a demo.

    Images are resized to the pixel budget (MIN_PIXELS / MAX_PIXELS) before sending: boxes map back exactly.

    Ctrl-C stops the server and everything it started.
    """
    from satori_cli.errors import SatoriError
    from satori_cli.serve.backends import BACKENDS, root_url
    from satori_cli.train.runinfo import model_grammar
    from satori_cli.ui import console

    budget = _budget()
    grammar = model_grammar(grammar, model).name  # a run folder answers in its own grammar
    if ui and not dry_run:
        _check_ui_port(host, ui_port, None if base_url else port)
    if base_url:
        if not ui:
            raise SatoriError(
                "--base-url only attaches the demo; add --ui", hint="or drop --base-url to start a server"
            )
        if dry_run:
            console().print(
                f"would start the demo on {root_url(host, ui_port)} against {base_url} (grammar {grammar})"
            )
            return
        _sigterm_as_interrupt()
        _run_ui(base_url, api_key, budget, host, ui_port, grammar=grammar)
        return
    if backend not in (*BACKENDS, "auto"):
        raise SatoriError(f"unknown backend {backend!r}", hint="choose vllm, transformers, fake or auto")
    from satori_cli.serve.backends import ServerDied
    from satori_cli.serve.server import plan_server, start_server

    plan = plan_server(
        backend=backend,
        model=model,
        host=host,
        port=port,
        gpus=gpus,
        api_key=api_key,
        vllm_bin=vllm_bin,
        max_model_len=max_model_len,
        budget=budget,
        resolve=not dry_run,
    )
    if dry_run:
        console().print(plan.display(), soft_wrap=True, markup=False, highlight=False)
        if ui:
            console().print(
                f"# then the demo on {root_url(host, ui_port)} against {plan.base_url} (grammar {grammar})",
                markup=False,
            )
        return
    _sigterm_as_interrupt()
    try:
        server = start_server(plan, startup_timeout)
    except ServerDied as exc:
        _print_tail(exc)
        raise
    try:
        console().print(
            f"[green]SATORI API ready:[/] {plan.base_url} (model `satori`, backend {plan.backend})"
        )
        if ui:
            _run_ui(plan.base_url, api_key, budget, host, ui_port, server=server, grammar=grammar)
        else:
            code = server.wait()
            if code != 0:
                raise server.died()
    except ServerDied as exc:
        _print_tail(exc)
        raise
    finally:
        server.stop()


def _check_ui_port(host: str, ui_port: int, api_port: int | None) -> None:
    """Refuse a busy demo port before starting a server that would then have to be stopped."""
    from satori_cli.errors import SatoriError
    from satori_cli.serve.backends import port_in_use

    if ui_port == api_port:
        raise SatoriError(f"--ui-port {ui_port} is the API's --port too", hint="give them different ports")
    if port_in_use("127.0.0.1" if host in ("0.0.0.0", "") else host, ui_port):
        raise SatoriError(f"port {ui_port} on {host} is already in use", hint="choose another --ui-port")


def _budget():
    """The pixel budget from MIN_PIXELS / MAX_PIXELS; a bad value is the user's to fix."""
    from satori_cli.errors import SatoriError
    from satori_cli.pixels import PixelBudget

    try:
        return PixelBudget.from_env()
    except ValueError as exc:
        raise SatoriError(str(exc), hint="unset MIN_PIXELS / MAX_PIXELS or give whole numbers") from exc


def _sigterm_as_interrupt() -> None:
    """`kill PID` (SIGTERM) stops the server tree the same way Ctrl-C does."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _print_tail(exc) -> None:
    """The last lines the dead server wrote: usually the reason it died."""
    from rich.markup import escape

    from satori_cli.ui import err_console

    for line in exc.tail[-15:]:
        err_console().print(f"[dim]| {escape(line)}[/]", soft_wrap=True)


def _run_ui(
    base_url: str, api_key: str | None, budget, host: str, port: int, server=None, grammar: str | None = None
) -> None:
    from satori_cli.serve.backends import root_url
    from satori_cli.serve.ui import build_demo, launch_demo
    from satori_cli.ui import console

    demo = launch_demo(build_demo(base_url, api_key, budget, grammar=grammar), host, port, block=False)
    console().print(f"[green]demo:[/] {root_url(host, port)}  (Ctrl-C to stop)")
    try:
        import time

        while server is None or server.alive:
            time.sleep(0.5)
        raise server.died()
    finally:
        demo.close()


def predict(
    image: Path = typer.Argument(..., help="The image file."),
    question: str = typer.Argument(..., help="The question about the image."),
    base_url: str = typer.Option(
        "http://127.0.0.1:8000/v1", help="The OpenAI-compatible API (from `satori serve`)."
    ),
    api_key: str = typer.Option(
        None, envvar=API_KEY_ENV, help=f"Bearer key of the server (or ${API_KEY_ENV})."
    ),
    save: Path = typer.Option(None, "--save", help="Write the image with the boxes drawn (PNG)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the result as JSON (boxes in original pixels)."
    ),
    temperature: float = typer.Option(0.0, help="Sampling temperature (0 = greedy, repeatable boxes)."),
    max_tokens: int = typer.Option(512, help="Most tokens to generate."),
    grammar: str = typer.Option(
        None, "--grammar", help=f"Output grammar to ask and read in (default satori): {GRAMMAR_HELP}"
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

    budget = _budget()
    picture = load_image(image)
    client = SatoriClient(base_url, api_key=api_key, budget=budget, timeout=timeout, grammar=grammar)
    if wait > 0:
        from satori_cli.cmdline import wait_until
        from satori_cli.serve.backends import http_ok

        health = base_url.rstrip("/").removesuffix("/v1") + "/health"
        with console().status(f"waiting for {health} ..."):
            wait_until(lambda: http_ok(health), timeout=wait, interval=1.0)
    with console().status("asking SATORI ...") if not as_json else contextlib.nullcontext():
        prepared, prediction = client.predict(picture, question, temperature, max_tokens)
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        draw_boxes(prepared.original, prediction).save(save, format="PNG")
    if as_json:
        payload = prediction.to_json()
        if save is not None:
            payload["saved"] = str(save)
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    from rich.markup import escape

    c = prediction.completion
    g = client.grammar
    if g.has_caption:
        console().print(f"[bold]caption:[/] {escape(c.caption or '(missing)')}")
    for label, box in zip(prediction.labels(), prediction.boxes, strict=True):
        console().print(f"[bold]{label}:[/] {list(box)}")
    if g.thinking_tag:
        console().print(f"[bold]thinking:[/] {escape(c.thinking or '(missing)')}")
    console().print(f"[bold]answer:[/] {escape(c.answer or '(missing)')}")
    if not c.well_formed:
        console().print(f"[yellow]not in the {g.name} format:[/] {escape(c.reason or '')}")
    if save is not None:
        console().print(f"[green]saved:[/] {save}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("predict")(predict)
