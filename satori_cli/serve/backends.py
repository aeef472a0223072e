"""The model server's command line (vLLM, `swift deploy` or the fake), and its child process:
start, watch, stop.

vLLM is never imported: it pins `pillow>=13`, which gradio 6 refuses, so it usually lives in
its own environment and we only build its argv (`--vllm-bin` points at it).

The server runs in its own process group so that Ctrl-C and shutdown reach its workers too,
and it is told to stop when satori dies in any way (`kill -9`, a closed SSH session). We keep
the last lines of its log: when it dies before it is healthy, the user sees why, and its exit
code is passed through.
"""

from __future__ import annotations

import collections
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from satori_cli.errors import SatoriError, install_hint
from satori_cli.http_client import http_ok
from satori_cli.pixels import PAPER_BUDGET, PixelBudget
from satori_cli.process import Command, find_program, flag_args, spawn, stop_group
from satori_cli.vllm_settings import engine_settings

BACKENDS = ("vllm", "transformers", "fake")
SERVED_MODEL_NAME = "satori"


class ServerDied(SatoriError):
    """The server exited; carries its exit code and the last lines of its log."""

    def __init__(self, name: str, code: int, tail: list[str], log_path: Path | None) -> None:
        hint = f"full log: {log_path}" if log_path else None
        if code < 0:  # killed by a signal: report it the way a shell would (128 + signal)
            super().__init__(f"{name} was killed by signal {-code}", exit_code=128 - code, hint=hint)
        else:
            super().__init__(f"{name} exited with code {code}", exit_code=code or 1, hint=hint)
        self.tail = tail


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
