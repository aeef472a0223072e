"""The one way satori builds and runs the real tools (`swift`, `torchrun`, `vllm`).

Command lines are argv lists, never shell strings: a path with a space or a prompt with a
quote cannot break them. `Command.display()` renders the exact same argv (and the extra
environment) for `--dry-run`, so what is shown is what would run.

Child processes run in their own process group, so Ctrl-C reaches the whole tree (torchrun
and its workers, vLLM and its engine) and nothing is left behind.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from satori_cli.errors import SatoriError


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if not value.is_integer() or abs(value) >= 1e16 else str(int(value))
    if isinstance(value, dict):
        import json

        return json.dumps(value, separators=(",", ":"))
    return str(value)


def flag_args(options: Mapping[str, Any], style: Literal["snake", "kebab"] = "snake") -> list[str]:
    """Turn `{"learning_rate": 1e-6, "reward_funcs": ["a", "b"]}` into argv items.

    - `style="snake"` gives `--learning_rate` (ms-swift), `"kebab"` gives `--learning-rate` (vLLM).
    - Booleans give a value: `--use_vllm true` (ms-swift).
    - Lists and tuples give one flag followed by each item; dicts are JSON; None is skipped.
    """
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + (key.replace("-", "_") if style == "snake" else key.replace("_", "-"))
        if isinstance(value, (list, tuple)):
            if value:  # an empty list gives nothing
                argv += [flag, *map(_format_value, value)]
        elif value is not None:
            argv += [flag, _format_value(value)]
    return argv


@dataclass
class Command:
    """An argv list plus the environment variables it needs on top of the caller's."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a command needs at least the program name")
        self.argv = [str(a) for a in self.argv]
        self.env = {str(k): str(v) for k, v in self.env.items()}

    @property
    def program(self) -> str:
        return self.argv[0]

    def display(self) -> str:
        """A copy-pasteable shell line: `VAR=value ... program args`, quoted where needed."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        line = shlex.join(self.argv)
        if self.cwd is not None:
            line = f"cd {shlex.quote(str(self.cwd))} && {line}"
        return f"{prefix} {line}" if prefix else line


def find_program(name: str, hint: str) -> str:
    """Absolute path of an executable, or a one-line error saying how to get it."""
    if os.sep in name:
        if os.access(name, os.X_OK):
            return name
        raise SatoriError(f"{name} is not an executable file", hint=hint)
    # Prefer the executable beside the running interpreter (the same virtual environment).
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise SatoriError(f"'{name}' was not found on PATH", hint=hint)
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGTERM when this process dies, even by SIGKILL.

    Linux only (prctl PR_SET_PDEATHSIG); None elsewhere. The signal follows the death of the
    *thread* that started the child, so call spawn from the main thread. SIGTERM, not SIGKILL:
    vLLM and uvicorn then shut down their own workers, which a SIGKILL would orphan.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: no loading in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def spawn(
    command: Command,
    *,
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.STDOUT,
    die_with_parent: bool = False,
) -> subprocess.Popen:
    """Start a command in a new process group (so the whole tree can be stopped).

    `die_with_parent`: the child is told (SIGTERM) when satori dies, however it dies (a
    `kill -9`, a closed SSH session), so a server never outlives us and keeps its port.
    """
    try:
        return subprocess.Popen(
            command.argv,
            env={**os.environ, **command.env},
            cwd=command.cwd,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent() if die_with_parent else None,
            text=True,
            bufsize=1,
            errors="replace",
        )
    except FileNotFoundError as exc:
        raise SatoriError(f"cannot start '{command.program}': not found") from exc
    except PermissionError as exc:
        raise SatoriError(f"cannot start '{command.program}': permission denied") from exc


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> int:
    """Stop a process group politely (SIGINT, then SIGTERM, then SIGKILL); return its code."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, grace / 2), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.wait()
    return proc.returncode


def run(
    command: Command,
    *,
    on_line: Callable[[str], None] | None = None,
    log_path: Path | None = None,
) -> int:
    """Run to completion, streaming each output line to `on_line` and to `log_path`.

    Ctrl-C stops the whole process group and returns 130. The child's exit code is
    returned as is; deciding what a failure means is the caller's business.
    """
    log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
    proc = spawn(command)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if log is not None:
                log.write(line)
                log.flush()
            if on_line is not None:
                on_line(line.rstrip("\n"))
        return proc.wait()
    except KeyboardInterrupt:
        stop_group(proc)
        return 130
    finally:
        if proc.poll() is None:
            stop_group(proc)
        if log is not None:
            log.close()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
