"""End to end with the real transformers backend (`swift deploy`) and the tiny model on CPU.

The tiny model's output is noise; what is checked is the plumbing: the server starts, the
API key guards it, `satori predict` completes a round trip, a dead server passes its exit
code and last log lines through, and Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import json
import signal

import pytest

from satori_cli.process import wait_until
from tests.serve_helpers import CASES, free_port, listening, red_box_image, serving

pytestmark = pytest.mark.slow


def test_swift_deploy_serves_the_tiny_model(satori, tiny_model, tmp_path):
    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    args = (
        "--backend",
        "transformers",
        "--model",
        str(tiny_model),
        "--api-key",
        "k",
        "--startup-timeout",
        "120",
    )
    with serving(*args, timeout=180) as (proc, port):
        url = f"http://127.0.0.1:{port}/v1"
        result = satori(
            "predict",
            str(image),
            "what?",
            "--base-url",
            url,
            "--api-key",
            "k",
            "--json",
            "--max-new-tokens",
            "16",
        )
        assert result.returncode == 0, result.stderr
        payload = json.loads(result.stdout)
        assert payload["image_size"] == [640, 480]
        assert isinstance(payload["raw"], str) and payload["raw"]
        denied = satori("predict", str(image), "what?", "--base-url", url, "--api-key", "wrong")
        assert denied.returncode == 1 and "API key" in denied.stderr
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        assert proc.returncode == 130
        assert wait_until(lambda: not listening(port), timeout=10, interval=0.1), (
            "swift deploy outlived satori"
        )


def test_a_model_that_cannot_load_passes_the_exit_code_and_log_through(satori, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")  # refused before any server starts
    refused = satori("serve", "--backend", "transformers", "--model", str(broken), "--port", str(free_port()))
    assert refused.returncode == 2 and "config.json is not valid JSON" in refused.stderr
    # A Qwen2.5-VL config with nothing else: satori's checks pass, swift fails to load it.
    (broken / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    result = satori("serve", "--backend", "transformers", "--model", str(broken), "--port", str(free_port()))
    assert result.returncode not in (0, 2)
    assert "the transformers server exited with code" in result.stderr
    assert "full log:" in result.stderr
    assert "| " in result.stderr, "the last lines of the server log are shown"
