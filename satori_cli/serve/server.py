"""Decide which server to start (backend, model, command) and bring it up behind a spinner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from satori_cli.cmdline import Command, find_program
from satori_cli.config import DEFAULT_MODEL, paths
from satori_cli.errors import SatoriError
from satori_cli.pixels import PixelBudget
from satori_cli.serve.backends import (
    TINY,
    ServerProcess,
    fake_command,
    port_in_use,
    resolve_program,
    root_url,
    swift_command,
)
from satori_cli.serve.vllm_command import VllmSettings, vllm_command

REDACTED = "***"


@dataclass(frozen=True)
class ServerPlan:
    """A server about to start: which backend, its command line, and where it will answer."""

    backend: str
    model: str
    command: Command
    host: str
    port: int
    api_key: str | None = None

    @property
    def root(self) -> str:
        return root_url(self.host, self.port)

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    @property
    def health_url(self) -> str:
        return self.root + "/health"  # open even when an API key guards /v1 (vLLM, swift, fake)

    def display(self) -> str:
        """The command line, with the API key hidden."""
        if not self.api_key:
            return self.command.display()
        argv = [REDACTED if a == self.api_key else a for a in self.command.argv]
        env = {k: REDACTED if v == self.api_key else v for k, v in self.command.env.items()}
        return Command(argv, env, self.command.cwd).display()

    @property
    def log_path(self) -> Path:
        return paths().home / "logs" / f"serve-{self.backend}-{self.port}.log"


def pick_backend(backend: str, vllm_bin: str) -> str:
    if backend != "auto":
        return backend
    try:
        find_program(vllm_bin, "")
    except SatoriError:
        return "transformers"
    return "vllm"


def resolve_model(model: str | None, build: bool) -> str:
    """`tiny` -> the tiny model folder (built if `build`); None -> SATORI; else as given."""
    if model is None:
        return DEFAULT_MODEL
    if model == TINY:
        if not build:
            return str(paths().tiny_model)
        from satori_cli.tiny_model import ensure_tiny_model

        return str(ensure_tiny_model())
    local = Path(model).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise SatoriError(f"{local} is not a model folder (no config.json)")
        return str(local.resolve())
    if model.count("/") != 1 or model.startswith(("/", ".", "~")):
        raise SatoriError(f"model not found: {model}", hint="give a checkpoint folder, a hub id, or `tiny`")
    return model


def plan_server(
    *,
    backend: str,
    model: str | None,
    host: str,
    port: int,
    gpus: int,
    api_key: str | None,
    vllm_bin: str,
    max_model_len: int,
    budget: PixelBudget,
    resolve: bool,
) -> ServerPlan:
    """Everything about the server to start, checked. `resolve=False` (dry run) touches nothing."""
    backend = pick_backend(backend, vllm_bin)
    if backend == "fake":
        command = fake_command(host, port, budget, api_key)
        chosen = "(none: canned answers)"
    else:
        chosen = resolve_model(model, build=resolve)
        if backend == "transformers":
            if gpus > 1:
                raise SatoriError(
                    "--gpus > 1 needs --backend vllm", hint="the transformers backend uses one device"
                )
            command = swift_command(chosen, host, port, budget, api_key)
        else:
            settings = VllmSettings(
                model=chosen, host=host, port=port, gpus=gpus, max_model_len=max_model_len, budget=budget
            )
            command = vllm_command(settings, vllm_bin, api_key)
    if resolve:
        command = resolve_program(command, backend)
        probe = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if port_in_use(probe, port):
            raise SatoriError(f"port {port} on {host} is already in use", hint="choose another --port")
    return ServerPlan(backend=backend, model=chosen, command=command, host=host, port=port, api_key=api_key)


def start_server(plan: ServerPlan, timeout: float) -> ServerProcess:
    """Start the server and wait for /health with a spinner. Raises ServerDied with its log tail."""
    from satori_cli.ui import console

    server = ServerProcess(plan.command, f"the {plan.backend} server", log_path=plan.log_path).start()
    try:
        with console().status(f"starting the {plan.backend} server for {plan.model} ...") as status:

            def tick(elapsed: float) -> None:
                status.update(f"starting the {plan.backend} server for {plan.model} ... {elapsed:.0f} s")

            server.wait_healthy(plan.health_url, timeout, on_tick=tick)
    except BaseException:
        server.stop()
        raise
    return server
