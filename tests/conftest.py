"""Shared fixtures: an isolated SATORI_HOME, the tiny model built once, and the CLI as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests stop real commands with Ctrl-C. A suite started in the background (`make test &`, nohup, a
# non-interactive shell's `&`) inherits SIGINT ignored, and so would every command it starts: Python
# then installs no KeyboardInterrupt handler and Ctrl-C does nothing. Caught here, the children get
# the default back (a caught signal is reset on exec; an ignored one is not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def satori_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own SATORI_HOME, and never touches the network."""
    home = tmp_path_factory.mktemp("satori_home")
    monkeypatch.setenv("SATORI_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    budget = ("MIN_PIXELS", "MAX_PIXELS", "IMAGE_MIN_TOKEN_NUM", "IMAGE_MAX_TOKEN_NUM")
    for var in (*budget, "SATORI_MODELS_DIR", "SATORI_DATA_DIR", "SATORI_RUNS_DIR"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny random Qwen2.5-VL, built once per test session (about 10 s)."""
    from satori_cli.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2_5_vl")


def satori_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"  # wide tables unless a test asks for a width (pytest-xdist exports 80)
    env.update(extra or {})
    return env


def run_satori(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run `satori ARGS...` in a fresh process, exactly as a user would (this checkout's code)."""
    return subprocess.run(
        [sys.executable, "-m", "satori_cli", *args],
        env=satori_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


@pytest.fixture
def satori():
    """`satori(*args)` runs the CLI in a subprocess and returns the CompletedProcess."""
    return run_satori


# One minimal prepared GRPO row (the shape `satori data prepare` writes), for the CLI tests that
# only need `--data` to pass the preflight; its image path is never opened.
PREPARED_ROW = {
    "id": "a",
    "messages": [{"role": "user", "content": "<image>Q?"}],
    "images": ["/x.png"],
    "bboxs": [[0, 0, 1, 1]],
    "width": 2,
    "height": 2,
    "possible_answers": ["a"],
    "image_caption": "c",
}


def prepared(tmp_path: Path) -> Path:
    """`tmp_path/train.jsonl` holding `PREPARED_ROW`."""
    import json

    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(PREPARED_ROW) + "\n")
    return path
