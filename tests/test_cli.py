"""The CLI as a user meets it: fast help, version, one-line errors, doctor telling the truth."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from satori_cli import __version__
from satori_cli.commands.doctor import diagnose
from satori_cli.config import paths
from satori_cli.errors import one_line

HEAVY = ("torch", "swift", "vlmeval", "gradio", "vllm", "transformers", "openai", "pandas", "matplotlib")


def _imported_modules(*args: str) -> set[str]:
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "satori_cli", *args], capture_output=True, text=True
    )
    assert trace.returncode == 0, trace.stderr[-2000:]
    return {line.split("|")[-1].strip().split(".")[0] for line in trace.stderr.splitlines() if "|" in line}


def test_help_imports_no_heavy_library():
    assert not set(HEAVY) & _imported_modules("--help")


def test_every_subcommand_help_imports_no_heavy_library(satori):
    from satori_cli.app import app

    names = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert names
    for name in names:
        assert not set(HEAVY) & _imported_modules(name, "--help"), name


def test_doctor_imports_no_heavy_library():
    assert not set(HEAVY) & _imported_modules("doctor", "--no-hub")


def test_help_lists_commands(satori):
    result = satori("--help")
    assert result.returncode == 0
    for name in ("doctor", "tiny-model"):
        assert name in result.stdout


def test_version(satori):
    result = satori("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"satori {__version__}"


def test_user_error_is_one_line_without_traceback(satori, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = satori("tiny-model", "--out", str(tmp_path / "full"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not empty" in lines[0]


def test_unknown_option_is_a_usage_error(satori):
    result = satori("doctor", "--bogus")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_doctor_tells_the_truth(satori_home):
    report = diagnose(paths().home, check_hub=False)
    for name, dist in (("ms-swift", "ms-swift"), ("gradio", "gradio"), ("torch", "torch")):
        check = report.check(name)
        assert check.ok and check.detail == metadata.version(dist)
    vllm = report.check("vllm")
    try:
        metadata.version("vllm")
        assert vllm.ok
    except metadata.PackageNotFoundError:
        assert not vllm.ok and "satori-r1[gpu]" in vllm.hint
    assert report.check("GPUs").ok == bool(report.gpus)
    assert "train" in report.jobs


def test_doctor_serve_rows_follow_the_backend_serve_picks(monkeypatch, tmp_path, satori_home):
    """`serve` and `serve --ui` start the backend `auto` picks (vLLM when a vllm executable is
    found, else transformers): doctor's rows name that backend and need what it needs."""
    from satori_cli.commands.doctor import SERVE_BACKEND_NEEDS, UI_NEEDS
    from satori_cli.serve.server import pick_backend

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    before = diagnose(paths().home, check_hub=False)
    picked = pick_backend("auto", "vllm")

    def missing(report, needs: list[str]) -> list[str]:
        return [n for n in needs if not report.check({"gpu": "GPUs"}.get(n, n)).ok]

    assert before.jobs[f"serve (auto: {picked})"] == missing(before, SERVE_BACKEND_NEEDS[picked])
    ui_needs = UI_NEEDS + SERVE_BACKEND_NEEDS[picked]
    assert before.jobs[f"serve --ui (auto: {picked})"] == missing(before, ui_needs)

    fake_vllm = bin_dir / "vllm"  # now serve's auto would pick vLLM, so must doctor
    fake_vllm.write_text("#!/bin/sh\nexit 0\n")
    fake_vllm.chmod(0o755)
    after = diagnose(paths().home, check_hub=False)
    assert pick_backend("auto", "vllm") == "vllm"
    assert after.check("vllm executable").ok and "serve --ui (auto: transformers)" not in after.jobs
    ui_vllm = after.jobs["serve --ui (auto: vllm)"]
    assert ui_vllm == missing(after, UI_NEEDS + SERVE_BACKEND_NEEDS["vllm"])
    assert "vllm executable" not in ui_vllm and ("gpu" in ui_vllm) == (not after.gpus)


def test_doctor_hub_check_honours_offline(monkeypatch, satori_home):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = diagnose(paths().home, check_hub=True).check("hub")
    assert not hub.ok and "HF_HUB_OFFLINE" in hub.detail


def test_doctor_command_runs(satori):
    result = satori("doctor", "--no-hub")
    assert result.returncode == 0, result.stderr
    assert "ms-swift" in result.stdout and "ready for" in result.stdout
    assert "satori-r1[gpu]" in result.stdout or "vllm" in result.stdout


def test_satori_home_and_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("SATORI_HOME", str(tmp_path / "h"))
    assert paths().models == tmp_path / "h" / "models"
    monkeypatch.setenv("SATORI_RUNS_DIR", str(tmp_path / "runs"))
    assert paths().runs == tmp_path / "runs"
    assert paths(tmp_path / "x").data == tmp_path / "x" / "data"


def test_gpu_detection_parses_nvidia_smi_and_honours_visible_devices():
    from satori_cli.gpus import Gpu, parse_nvidia_smi

    out = "0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559\n2, bad, line, here\n"
    gpus = parse_nvidia_smi(out)
    assert gpus == [
        Gpu(0, "NVIDIA H100 80GB HBM3", 81559 / 1024),
        Gpu(1, "NVIDIA H100 80GB HBM3", 81559 / 1024),
    ]
    assert [g.index for g in parse_nvidia_smi(out, visible="1")] == [1]
    assert parse_nvidia_smi(out, visible="") == []


def test_doctor_hub_check_counts_any_answer_and_names_a_failure(monkeypatch, satori_home):
    """Any HTTP answer (a 404 too) means the endpoint is reachable; a closed port is one reason."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from satori_cli.commands.doctor import hub_reachable

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args) -> None:
            pass

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint + "/")
    assert hub_reachable() == (True, endpoint)
    server.shutdown()
    server.server_close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    ok, detail = hub_reachable()
    assert not ok and detail.startswith(f"{closed} unreachable (") and "refused" in detail
    monkeypatch.setenv("HF_ENDPOINT", "ftp://mirror")
    assert hub_reachable() == (False, "ftp://mirror unreachable (not an http(s) address: ftp://mirror)")


def test_text_from_files_and_servers_is_one_inert_line():
    # Whole escape sequences (clear screen, set title, the C1 CSI colour) go; CR/LF, a bidi
    # override, NUL and a lone ESC become spaces: nothing can drive the terminal.
    hostile = "evil\x1b[2J\x1b]0;pwned\x07\x9b31m\r\nnext\u202eline\x00 \x1b"
    assert one_line(hostile, None) == "evil next line"
    assert one_line("x" * 1000, 10) == "xxxxxxx..."
    assert len(one_line(ValueError("y" * 10_000))) == 300  # the default cap
    assert one_line("short", 10) == "short"
