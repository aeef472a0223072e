"""`satori serve` from its options to a running server: check them, plan the server (or only the
demo, with --base-url), then print the plan (a dry run) or run it (`server.run_server`,
`server.run_demo`).

Every check runs before anything starts; a dry run builds nothing and binds no port.
"""

from __future__ import annotations

from dataclasses import dataclass

from satori_cli import models
from satori_cli.console import console
from satori_cli.errors import SatoriError
from satori_cli.http_client import check_api_key, check_base_url
from satori_cli.models import Model
from satori_cli.serve.backends import BACKENDS, root_url
from satori_cli.serve.server import (
    ServerPlan,
    budget_model,
    check_ports,
    pick_backend,
    pixel_budget,
    plan_server,
    run_demo,
    run_server,
)
from satori_cli.train.runfolder import model_grammar


@dataclass(frozen=True)
class ServeOptions:
    """What `satori serve` was asked (its options, one field each; numbers already checked)."""

    model: str | None
    host: str
    port: int
    gpus: int
    api_key: str | None
    backend: str
    vllm_bin: str
    ui: bool
    grammar: str | None
    ui_port: int
    base_url: str | None
    max_model_len: int | None
    startup_timeout: float
    dry_run: bool


def serve(opts: ServeOptions) -> None:
    """Check `opts`, plan, then print the plan (`dry_run`) or serve until stopped."""
    check_api_key(opts.api_key)
    grammar = model_grammar(opts.grammar, opts.model).name  # a run folder answers in its own grammar
    if opts.base_url and not opts.ui:
        raise SatoriError(
            "--base-url only attaches the demo; add --ui", hint="or drop --base-url to start a server"
        )
    if opts.base_url is not None:  # checked here too: a dry run makes no client
        check_base_url(opts.base_url)
    if opts.backend not in (*BACKENDS, "auto"):
        raise SatoriError(f"unknown backend {opts.backend!r}", hint="choose vllm, transformers, fake or auto")
    wanted = [] if opts.base_url else [(opts.port, "--port")]
    if opts.ui:
        if not opts.base_url and opts.ui_port == opts.port and opts.port != 0:
            raise SatoriError(
                f"--ui-port {opts.ui_port} is the API's --port too", hint="give them different ports"
            )
        wanted.append((opts.ui_port, "--ui-port"))
    check_ports(opts.host, wanted, probe=False)  # numbers and host name, before anything else
    backend = opts.backend
    if opts.base_url:
        model = budget_model(opts.model)
    else:
        backend = pick_backend(backend, opts.vllm_bin)
        # A run folder: its last checkpoint, with the run's budget. A dry run builds nothing (a hub
        # id is checked in plan_server); the fake backend serves no model, but a run named with it
        # still sets the budget of the canned answers and the demo.
        model = models.resolve(opts.model, build=not opts.dry_run and backend != "fake")
    budget = pixel_budget(model)

    def plan(port: int) -> ServerPlan:
        return plan_server(
            backend=backend,
            model=model,
            host=opts.host,
            port=port,
            gpus=opts.gpus,
            api_key=opts.api_key,
            vllm_bin=opts.vllm_bin,
            max_model_len=opts.max_model_len,
            budget=budget,
            resolve=not opts.dry_run,
        )

    planned = None if opts.base_url else plan(opts.port)
    if opts.dry_run:
        print_plan(opts, planned, model, grammar)
        return
    chosen = check_ports(opts.host, wanted)  # in use, privileged, not local; 0 -> a free port
    ui_port = chosen.pop() if opts.ui else None
    if planned is None:
        run_demo(opts.base_url, opts.api_key, budget, opts.host, ui_port, grammar=grammar)
        return
    if chosen[0] != opts.port:
        planned = plan(chosen[0])
    run_server(planned, opts.startup_timeout, ui_port, budget, grammar=grammar)


def print_plan(opts: ServeOptions, planned: ServerPlan | None, model: Model | None, grammar: str) -> None:
    """The dry run: the server's command line (API key hidden), the run it serves, the demo."""
    if planned is None:
        console().print(
            f"would start the demo on {root_url(opts.host, opts.ui_port)} against {opts.base_url} "
            f"(grammar {grammar})"
        )
        return
    console().print(planned.display(), soft_wrap=True, markup=False, highlight=False)
    if model is not None and model.run is not None:
        console().print(f"# model: {model.describe()}", soft_wrap=True, markup=False)
    if opts.ui:
        console().print(
            f"# then the demo on {root_url(opts.host, opts.ui_port)} against {planned.base_url} "
            f"(grammar {grammar})",
            markup=False,
        )
