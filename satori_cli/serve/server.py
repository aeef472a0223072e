"""`satori serve` and every model server satori starts: the options checked, the server planned
(backend, model, command line) or only the demo (with --base-url), then the plan printed (a
dry run) or the server brought up and kept, with the demo, until stopped.

Every check runs before anything starts; a dry run builds nothing and binds no port. Addresses
are checked up front (a bad --host or --port is one line, not a traceback minutes later);
`--port 0` picks a free port.

vLLM is never imported: it pins `pillow>=13`, which gradio 6 refuses, so it usually lives in
its own environment and we only build its argv (`--vllm-bin` points at it).

The server runs in its own process group so that Ctrl-C and shutdown reach its workers too,
and it is told to stop when satori dies in any way (`kill -9`, a closed SSH session); Ctrl-C,
SIGTERM and SIGHUP (a closed terminal or SSH session) stop the server and the demo the same
way. We keep the last lines of its log: when it dies, the user sees why, and its exit code is
passed through.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from satori_cli import models
from satori_cli.config import paths
from satori_cli.console import console, err_console
from satori_cli.errors import SatoriError, install_hint
from satori_cli.http_client import check_api_key, check_base_url, http_ok
from satori_cli.models import Model
from satori_cli.pixels import PAPER_BUDGET, PixelBudget, env_bounds
from satori_cli.process import Command, find_program, flag_args, spawn, stop_group
from satori_cli.serve.client import CANNED_NOTICE, SERVED_MODEL_NAME
from satori_cli.train.runfolder import model_grammar
from satori_cli.vllm_settings import engine_settings

BACKENDS = ("vllm", "transformers", "fake")
REDACTED = "***"


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

    planned = None if opts.base_url else plan_server(opts, backend, model, budget, opts.port)
    if opts.dry_run:
        print_plan(opts, planned, model, grammar)
        return
    chosen = check_ports(opts.host, wanted)  # in use, privileged, not local; 0 -> a free port
    ui_port = chosen.pop() if opts.ui else None
    if planned is None:
        run_demo(opts.base_url, opts.api_key, budget, opts.host, ui_port, grammar=grammar)
        return
    if chosen[0] != opts.port:
        planned = plan_server(opts, backend, model, budget, chosen[0])
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


@dataclass(frozen=True)
class ServerPlan:
    """A server about to start: which backend, its command line, and where it will answer."""

    backend: str
    model: str
    command: Command
    host: str
    port: int
    api_key: str | None = None
    log_file: Path | None = None  # default: $SATORI_HOME/logs/serve-<backend>-<port>.log

    @property
    def base_url(self) -> str:
        return root_url(self.host, self.port) + "/v1"

    @property
    def health_url(self) -> str:
        # open even when an API key guards /v1 (vLLM, swift, fake)
        return root_url(self.host, self.port) + "/health"

    def display(self) -> str:
        """The command line, with the API key hidden."""
        if not self.api_key:
            return self.command.display()
        argv = [REDACTED if a == self.api_key else a for a in self.command.argv]
        env = {k: REDACTED if v == self.api_key else v for k, v in self.command.env.items()}
        return Command(argv, env, self.command.cwd).display()

    @property
    def log_path(self) -> Path:
        return self.log_file or paths().home / "logs" / f"serve-{self.backend}-{self.port}.log"


def pick_backend(backend: str, vllm_bin: str) -> str:
    if backend != "auto":
        return backend
    try:
        find_program(vllm_bin, "")
    except SatoriError:
        return "transformers"
    return "vllm"


def budget_model(model: str | None) -> Model | None:
    """The model named beside a server that runs elsewhere: only a run's (local) budget is used."""
    return models.resolve(model, hub="keep") if model else None


def pixel_budget(model: Model | None = None) -> PixelBudget:
    """The run's budget; else MIN_PIXELS / MAX_PIXELS; else the paper's. A contradiction is one line."""
    low, high = env_bounds()
    named = [model] if model is not None else []
    return models.settle_budget(named, low, high, "MIN_PIXELS/MAX_PIXELS in the environment")


def plan_server(opts: ServeOptions, backend: str, model: Model, budget: PixelBudget, port: int) -> ServerPlan:
    """Everything about the server to start, checked; a dry run touches nothing.

    `backend` is picked already (`pick_backend`); the host and `port` are checked by the caller
    (`check_ports`).
    """
    host, api_key = opts.host, opts.api_key
    if backend == "fake":
        command = fake_command(host, port, budget, api_key)
        return ServerPlan(backend, "(none: canned answers)", command, host, port, api_key)
    if backend == "transformers":
        if opts.gpus > 1:
            raise SatoriError(
                "--gpus > 1 needs --backend vllm", hint="the transformers backend uses one device"
            )
        command = swift_command(model.path, host, port, budget, api_key, model_type=model.model_type)
    else:
        command = vllm_command(
            model.path, host, port, budget, api_key, opts.vllm_bin, opts.gpus, opts.max_model_len
        )
    if not opts.dry_run:
        command = resolve_program(command, backend)
        models.check_reachable(model)  # a hub model the server downloads: cached, or not offline
    return ServerPlan(backend, model.path, command, host, port, api_key)


# -- the backends' command lines ------------------------------------------------------------------
def root_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def vllm_command(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    budget: PixelBudget = PAPER_BUDGET,
    api_key: str | None = None,
    vllm_bin: str = "vllm",
    gpus: int = 1,
    max_model_len: int | None = None,  # None: derived (satori_cli/vllm_settings.py)
) -> Command:
    """`vllm serve` with the engine settings `satori eval` uses too; dict flags as JSON, as vLLM's
    parser expects. The API key travels in VLLM_API_KEY, not in argv (`ps` shows argv)."""
    # One image per prompt, no video: the profiling run then reserves one image only.
    engine = engine_settings(model, budget, images=1, tensor_parallel=gpus, max_model_len=max_model_len)
    del engine["model"]  # positional
    options = {
        "served_model_name": SERVED_MODEL_NAME,
        "host": host,
        "port": port,
        **engine,
        "max_num_seqs": 32,
    }
    env = {"VLLM_WORKER_MULTIPROC_METHOD": "spawn"}
    if api_key:
        env["VLLM_API_KEY"] = api_key
    return Command([vllm_bin, "serve", model, *flag_args(options, style="kebab")], env=env)


def swift_command(
    model: str,
    host: str,
    port: int,
    budget: PixelBudget,
    api_key: str | None = None,
    model_type: str | None = None,
) -> Command:
    """`swift deploy` over transformers: ms-swift's maintained OpenAI-compatible server, CPU-capable."""
    template = model_type or "qwen2_5_vl"  # from config.json when known (a hub id: SATORI's)
    options = {
        "model": model,
        "model_type": template,
        "template": template,
        "infer_backend": "transformers",
        "host": host,
        "port": port,
        "served_model_name": SERVED_MODEL_NAME,
        "max_new_tokens": 512,
        "use_hf": True,
        "verbose": False,
        "log_interval": -1,
        "api_key": api_key or None,  # none: an open server
    }
    # ms-swift's Qwen2.5-VL template reads the budget from MIN_PIXELS / MAX_PIXELS.
    return Command(["swift", "deploy", *flag_args(options)], env=budget.env())


def fake_command(host: str, port: int, budget: PixelBudget, api_key: str | None = None) -> Command:
    """The fake SATORI server (`satori_cli.serve.fake_server`) as a child process."""
    env = budget.env()
    if api_key:
        env["SATORI_FAKE_API_KEY"] = api_key
    argv = [sys.executable, "-m", "satori_cli.serve.fake_server", "--host", host, "--port", str(port)]
    return Command(argv, env=env)


def resolve_program(command: Command, backend: str) -> Command:
    """Replace argv[0] (vllm or swift) by its absolute path, or explain how to install it."""
    hints = {
        "vllm": f"{install_hint('gpu')}, or pass --vllm-bin /path/to/a/vllm-env/bin/vllm",
        "transformers": f"install the train extra: {install_hint('train')}",
    }
    program = find_program(command.program, hints[backend])
    return Command([program, *command.argv[1:]], dict(command.env), command.cwd)


# -- the addresses --------------------------------------------------------------------------------
def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple]:
    """What `host` resolves to for a server socket, or a one-line error."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SatoriError(
            f"--host {host!r} is not an address this machine can listen on ({reason})",
            hint="e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces)",
        ) from None
    family, _, _, _, address = infos[0]
    return family, address


def check_ports(host: str, ports: list[tuple[int, str]], probe: bool = True) -> list[int]:
    """Check that `host` can listen on each (port, flag); port 0 becomes a free port.

    Each port is bound for a moment (all at once, so two `0`s get two different ports): what
    the server would meet (in use, privileged, not an address of this machine) is reported now
    as one line. `probe=False` (a dry run) checks only the numbers and the host name.
    """
    for port, flag in ports:
        if not 0 <= port <= 65535:
            raise SatoriError(f"{flag} {port} is not a port number (1-65535, or 0 for a free one)")
    if not probe:
        _address(host, 0)
        return [port for port, _ in ports]
    chosen: list[int] = []
    with contextlib.ExitStack() as held:
        for port, flag in ports:
            family, address = _address(host, port)
            sock = held.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise _bind_error(exc, host, port, flag) from None
            chosen.append(sock.getsockname()[1])
    return chosen


def _bind_error(exc: OSError, host: str, port: int, flag: str) -> SatoriError:
    if exc.errno == errno.EADDRINUSE:
        return SatoriError(
            f"port {port} on {host} is already in use",
            hint=f"choose another {flag}, or {flag} 0 for a free one",
        )
    if exc.errno == errno.EACCES:
        return SatoriError(
            f"{flag} {port} needs administrator rights (ports below 1024)", hint=f"use {flag} 8000"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return SatoriError(
            f"--host {host} is not an address of this machine",
            hint="use 127.0.0.1, 0.0.0.0 or a local address",
        )
    return SatoriError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


# -- the server process ---------------------------------------------------------------------------
class ServerDied(SatoriError):
    """The server exited; carries its exit code and the last lines of its log."""

    def __init__(self, name: str, code: int, tail: list[str], log_path: Path | None) -> None:
        hint = f"full log: {log_path}" if log_path else None
        if code < 0:  # killed by a signal: report it the way a shell would (128 + signal)
            super().__init__(f"{name} was killed by signal {-code}", exit_code=128 - code, hint=hint)
        else:
            super().__init__(f"{name} exited with code {code}", exit_code=code or 1, hint=hint)
        self.tail = tail


class ServerProcess:
    """A server child process: its log tail, health wait, and clean shutdown."""

    def __init__(self, command: Command, name: str, log_path: Path | None = None) -> None:
        self.command = command
        self.name = name
        self.log_path = log_path
        self._tail: collections.deque[str] = collections.deque(maxlen=30)
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> ServerProcess:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(self.command, die_with_parent=True)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") if self.log_path else contextlib.nullcontext() as log:
            for line in self.proc.stdout:
                self._tail.append(line.rstrip("\n"))
                if log is not None:
                    log.write(line)
                    log.flush()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died(self) -> ServerDied:
        """Its exit as an error, with the last lines it wrote (once the reader has drained them)."""
        assert self.proc is not None and self._reader is not None
        code = self.proc.wait()
        self._reader.join(timeout=2.0)
        return ServerDied(self.name, code, list(self._tail), self.log_path)

    def wait_healthy(self, url: str, timeout: float, on_tick: Callable[[float], None] | None = None) -> None:
        """Poll `url` until it answers 200. Raises ServerDied or a timeout SatoriError."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if http_ok(url):
                return
            if not self.alive:
                raise self.died()
            if on_tick is not None:
                on_tick(time.monotonic() - start)
            time.sleep(0.5)
        self.stop()
        raise SatoriError(
            f"{self.name} did not become healthy within {timeout:.0f} s",
            exit_code=1,
            hint=f"see {self.log_path}" if self.log_path else "raise --startup-timeout",
        )

    def stop(self) -> int:
        assert self.proc is not None
        return stop_group(self.proc, grace=10.0)


def start_server(plan: ServerPlan, timeout: float) -> ServerProcess:
    """Start the server and wait for /health with a spinner. Raises ServerDied with its log tail."""
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


def run_demo(
    base_url: str,
    api_key: str | None,
    budget: PixelBudget,
    host: str,
    port: int,
    server=None,
    grammar: str | None = None,
    canned: bool = False,
) -> None:
    """The demo (asking in `grammar`) against `base_url` until Ctrl-C, or until `server` (when given) dies.
    `canned`: the server is the fake backend (the demo says so in a banner)."""
    from satori_cli.serve.demo import build_demo, launch_demo

    built = build_demo(base_url, api_key, budget, grammar=grammar, canned=canned)
    demo = launch_demo(built, host, port, block=False)
    how = " (log in with any user name and the API key as password)" if api_key else ""
    console().print(f"[green]demo:[/] {root_url(host, port)}{how}  (Ctrl-C to stop)")
    try:
        while server is None or server.alive:
            time.sleep(0.5)
        raise server.died()
    finally:
        demo.close()


def run_server(
    plan: ServerPlan, timeout: float, ui_port: int | None, budget: PixelBudget, grammar: str | None = None
) -> None:
    """Start the planned server, print where it answers, and keep it (and the demo) until stopped."""
    canned = plan.backend == "fake"
    if canned:
        console().print(f"[yellow]{escape(CANNED_NOTICE)}[/]")

    def ready(server: ServerProcess) -> None:
        console().print(
            f"[green]SATORI API ready:[/] {plan.base_url} (model `satori`, backend {plan.backend})"
        )
        if ui_port is not None:
            run_demo(
                plan.base_url,
                plan.api_key,
                budget,
                plan.host,
                ui_port,
                server=server,
                grammar=grammar,
                canned=canned,
            )

    hold_server(plan, timeout, ready)


def hold_server(plan: ServerPlan, timeout: float, on_ready: Callable[[ServerProcess], None]) -> None:
    """Start the planned server, call `on_ready(server)`, then keep it until it exits or Ctrl-C.

    The one lifecycle of every server satori starts in the foreground (`satori serve`, `satori
    rollout`): a death before or after it is healthy shows its last lines and passes its exit
    code on; Ctrl-C (and SIGTERM/SIGHUP, see `satori_cli.app`) stops its whole process group.
    """
    server = None
    try:
        server = start_server(plan, timeout)  # stops the server itself if it fails
        on_ready(server)
        if server.proc.wait() != 0:  # Ctrl-C: stopped below, with its whole process group
            raise server.died()
    except ServerDied as exc:
        print_tail(exc)
        raise
    finally:
        if server is not None:
            server.stop()


def print_tail(exc: ServerDied) -> None:
    """The last lines the dead server wrote: usually the reason it died."""
    for line in exc.tail[-15:]:
        err_console().print(f"[dim]| {escape(line)}[/]", soft_wrap=True)
