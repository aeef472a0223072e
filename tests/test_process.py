"""The command builder: argv lists in, exact shell lines out, process groups handled."""

from __future__ import annotations

import shlex
import sys
import time

import pytest

from satori_cli.errors import SatoriError
from satori_cli.process import Command, find_program, flag_args, run, spawn, stop_group


def test_flag_args_snake_with_value_bools():
    argv = flag_args(
        {
            "rlhf_type": "grpo",
            "learning_rate": 1e-6,
            "use_vllm": False,
            "num_generations": 16,
            "reward_funcs": ["a", "b"],
            "beta": 0.001,
            "skip": None,
            "empty": [],
            "max_pixels": 401408.0,
        }
    )
    assert argv == [
        "--rlhf_type", "grpo", "--learning_rate", "1e-06", "--use_vllm", "false",
        "--num_generations", "16", "--reward_funcs", "a", "b", "--beta", "0.001", "--max_pixels", "401408",
    ]  # fmt: skip


def test_flag_args_kebab_with_json():
    argv = flag_args(
        {"served_model_name": "satori", "mm_processor_kwargs": {"min_pixels": 1, "max_pixels": 2}},
        style="kebab",
    )
    assert argv == [
        "--served-model-name",
        "satori",
        "--mm-processor-kwargs",
        '{"min_pixels":1,"max_pixels":2}',
    ]


def test_display_is_the_same_argv_a_shell_would_run():
    cmd = Command(
        ["swift", "rlhf", "--system", 'it\'s a "prompt" with spaces', "--x", "$HOME"],
        env={"MAX_PIXELS": "401408", "NPROC_PER_NODE": "4"},
    )
    line = cmd.display()
    assert line.startswith("MAX_PIXELS=401408 NPROC_PER_NODE=4 swift rlhf")
    assert shlex.split(line)[2:] == cmd.argv


def test_command_rejects_empty_argv():
    with pytest.raises(ValueError):
        Command([])


def test_run_streams_lines_logs_and_returns_the_exit_code(tmp_path):
    lines: list[str] = []
    log = tmp_path / "log.txt"
    code = run(
        Command(
            [sys.executable, "-c", "import os,sys; print('a'); print(os.environ['X']); sys.exit(3)"],
            env={"X": "from-env"},
        ),
        on_line=lines.append,
        log_path=log,
    )
    assert code == 3
    assert lines == ["a", "from-env"]
    assert log.read_text() == "a\nfrom-env\n"


def test_stop_group_stops_the_whole_tree(tmp_path):
    # A parent that starts a child which ignores nothing: both must be gone after stop_group.
    pidfile = tmp_path / "child.pid"
    script = (
        "import subprocess,sys,time;"
        f"p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
        f"open({str(pidfile)!r},'w').write(str(p.pid)); time.sleep(60)"
    )
    proc = spawn(Command([sys.executable, "-c", script]))
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    child = int(pidfile.read_text())
    stop_group(proc, grace=2)
    assert proc.poll() is not None
    import os

    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the grandchild survived stop_group")


def test_find_program():
    assert find_program("python3" if sys.platform != "win32" else "python", "hint")
    with pytest.raises(SatoriError, match="not found on PATH"):
        find_program("definitely-not-a-program-xyz", "install it")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as dead)."""
    import os
    from pathlib import Path

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone meanwhile, or no /proc
        return not Path("/proc/self").exists()  # no /proc: trust kill(pid, 0)


@pytest.mark.parametrize("die_with_parent", [True, False])
def test_a_child_dies_with_a_parent_killed_by_sigkill(tmp_path, die_with_parent):
    """`kill -9` of satori cannot run any cleanup: the child must be told by the kernel."""
    import os
    import signal
    import subprocess

    from satori_cli.process import wait_until

    script = (
        "import sys, time; from satori_cli.process import Command, spawn;"
        "p = spawn(Command([sys.executable, '-c', 'import time; time.sleep(120)']),"
        f" stdout=None, stderr=None, die_with_parent={die_with_parent});"
        "print(p.pid, flush=True); time.sleep(120)"
    )
    env = {**os.environ, "PYTHONPATH": str(__import__("tests.conftest").conftest.REPO)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    try:
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        gone = wait_until(lambda: not _alive(child), timeout=10 if die_with_parent else 1.5, interval=0.05)
        assert gone is die_with_parent, "the child outlived its killed parent" if die_with_parent else ""
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
