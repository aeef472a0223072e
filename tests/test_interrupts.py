"""Ctrl-C (and SIGTERM/SIGHUP) end every command the same way: `interrupted` on stderr, exit 130,
no traceback, no child left running. Each case stops a real command while it works."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from satori_cli.evaluation.sample_bench import write_tiny_bench
from tests.conftest import satori_env
from tests.serve_helpers import FakeServer, listening, red_box_image, serving


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "satori_cli", *args],
        env=satori_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} before the signal:\n{out}\n{err}")
        assert time.monotonic() < deadline, "timed out waiting for the command to get going"
        time.sleep(0.2)


def interrupted(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    """Send `sig`; the command must end with 130 and one `interrupted` line; returns stderr."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, out[-2000:], err[-2000:])
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("interrupted"), err
    return err


@pytest.mark.slow
def test_train_stopped_while_swift_runs_exits_130_and_records_it(tmp_path, tiny_model):
    run = tmp_path / "run"
    proc = start("train", "--preset", "smoke", "--model", str(tiny_model), "--out", str(run))
    log = run / "train.log"
    wait_for(lambda: log.is_file() and log.stat().st_size > 0, proc)  # swift is running
    err = interrupted(proc)
    assert "swift rlhf stopped" in err and str(log) in err
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_eval_stopped_while_asking_a_slow_server_exits_130(tmp_path):
    data, work = tmp_path / "lmu", tmp_path / "work"
    write_tiny_bench(data / "TinyBench.tsv")
    with FakeServer(delay=120) as server:
        proc = start(
            "eval", "--data", "TinyBench", "--backend", "api", "--base-url", server.base_url,
            "--data-dir", str(data), "--out", str(work),
        )  # fmt: skip
        log = work / "eval.log"
        # VLMEvalKit is up and waiting on the model's first answer.
        wait_for(lambda: log.is_file() and "satori" in log.read_text() and len(log.read_text()) > 200, proc)
        err = interrupted(proc)
    assert "evaluation stopped" in err and "crashed" not in err


def test_serve_stopped_exits_130_and_its_server_child_with_it(tmp_path):
    with serving("--backend", "fake") as (proc, port):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        text = "".join(proc.lines)
    assert "interrupted" in text and "Traceback" not in text
    assert not listening(port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_stop_signals_are_ctrl_c_for_every_command(tmp_path, sig):
    """`kill` and a closed terminal take the same path (installed once, in satori_cli.app): here
    `predict` waiting on a slow server, a command that installs no handler of its own."""
    image = red_box_image(tmp_path / "in.png", (64, 48), (16, 12, 48, 36))
    with FakeServer(delay=120) as server:
        proc = start("predict", str(image), "where?", "--base-url", server.base_url)
        wait_for(lambda: server.chats_received > 0, proc)  # the request waits on the server
        interrupted(proc, sig)
