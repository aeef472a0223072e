"""End to end with the real transformers backend (`swift deploy`) and the tiny model on CPU.

The tiny model's output is noise; what is checked is the plumbing: the server starts, the
API key guards it, `satori predict` completes a round trip, a dead server passes its exit
code and last log lines through, and Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from satori_cli.serve.backends import port_in_use
from tests.conftest import satori_env
from tests.serve_helpers import CASES, red_box_image

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_swift_deploy_serves_the_tiny_model(satori, tiny_model, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "satori_cli", "serve", "--backend", "transformers"),
            *("--model", str(tiny_model), "--port", str(port), "--api-key", "k", "--startup-timeout", "120"),
        ],
        env=satori_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    url = f"http://127.0.0.1:{port}/v1"
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert "SATORI API ready" in ready and url in ready, ready
        result = satori(
            "predict",
            str(image),
            "what?",
            "--base-url",
            url,
            "--api-key",
            "k",
            "--json",
            "--max-tokens",
            "16",
        )
        assert result.returncode == 0, result.stderr
        payload = json.loads(result.stdout)
        assert payload["image_size"] == [640, 480]
        assert isinstance(payload["raw"], str) and payload["raw"]
        denied = satori("predict", str(image), "what?", "--base-url", url, "--api-key", "wrong")
        assert denied.returncode == 1 and "API key" in denied.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 130
    time.sleep(1)
    assert not port_in_use("127.0.0.1", port), "swift deploy outlived satori serve"


def test_a_model_that_cannot_load_passes_the_exit_code_and_log_through(satori, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    result = satori("serve", "--backend", "transformers", "--model", str(broken), "--port", str(free_port()))
    assert result.returncode not in (0, 2)
    assert "the transformers server exited with code" in result.stderr
    assert "full log:" in result.stderr
    assert "| " in result.stderr, "the last lines of the server log are shown"
