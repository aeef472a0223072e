"""`satori download` online, end to end: the real CLI and the real huggingface_hub against a loopback
fake of the hub's HTTP API (tests/fake_hub.py), via HF_ENDPOINT. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from satori_cli.process import wait_until
from tests.conftest import run_satori, satori_env
from tests.fake_hub import FakeHub

TOKEN = "hf_fake_token_for_tests"
MIB = 1024 * 1024
BIG = hashlib.shake_256(b"satori").digest(12 * MIB + 12345)
MODEL_MAIN = {
    "config.json": b'{"model_type": "qwen2_5_vl"}',
    "model.safetensors": bytes(range(256)) * 16,  # 4 KiB: served the LFS way (302 to the "CDN")
    "tokenizer/vocab.json": b'{"a": 0}',
}
MODEL_V1 = {"config.json": b'{"model_type": "qwen2_5_vl", "v": 1}', "README.md": b"# v1"}
DATA = {
    "data/train-00000-of-00001.parquet": b"PAR1" + bytes(3000) + b"PAR1",
    "data/val.jsonl": b'{"question": "q", "answer": "a"}\n',
    "README.md": b"# VQA mini",
}


@pytest.fixture
def satori():
    """The CLI in a subprocess, bounded: a hung download fails the test instead of stalling the suite."""
    return functools.partial(run_satori, timeout=60)


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with FakeHub(token=TOKEN) as fake:
        model = fake.add("acme/tiny-vl", MODEL_MAIN)
        model.add_commit(MODEL_V1, branch="v1")
        fake.add("acme/vqa-mini", DATA, repo_type="dataset")
        fake.add("acme/big", {"config.json": b"{}", "model.safetensors": BIG})
        fake.add("acme/gated", {"config.json": b"{}", "weights.bin": bytes(2048)}, gated=True)
        yield fake


@pytest.fixture
def env(hub, tmp_path: Path) -> dict[str, str]:
    return {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(folder).parts
    }


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def test_model_downloads_into_the_cache_and_a_local_dir_at_a_branch_or_commit(satori, hub, env, tmp_path):
    commits = hub.repos[("model", "acme/tiny-vl")].refs
    done = satori("download", "model", "acme/tiny-vl", env={**env, "TTY_COMPATIBLE": "1"})
    assert done.returncode == 0, done.stderr
    snapshot = tmp_path / "hf" / "hub" / "models--acme--tiny-vl" / "snapshots" / commits["main"]
    assert done.stdout.strip().splitlines()[-1] == str(snapshot)
    assert files_under(snapshot) == MODEL_MAIN
    assert "Fetching 3 files" in done.stdout and "ready" in done.stdout  # rich progress, then the summary

    done = satori(
        "download", "model", "acme/tiny-vl", "--revision", "v1", "--out", str(tmp_path / "v1"), env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str((tmp_path / "v1").resolve())
    assert files_under(tmp_path / "v1") == MODEL_V1

    main = commits["main"]
    done = satori(
        "download", "model", "acme/tiny-vl", "--revision", main, "--out", str(tmp_path / "m"), env=env
    )
    assert done.returncode == 0, done.stderr
    assert files_under(tmp_path / "m") == MODEL_MAIN


def test_dataset_downloads_from_the_dataset_routes(satori, hub, env, tmp_path):
    done = satori("download", "data", "acme/vqa-mini", env=env)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1])
    assert folder.parent.parent.name == "datasets--acme--vqa-mini" and files_under(folder) == DATA
    # the printed folder is a dataset folder satori accepts as is
    again = satori("download", "data", str(folder), env=env)
    assert again.returncode == 0 and "local folder" in again.stdout


def partials(root: Path) -> list[Path]:
    return list(root.rglob("*.incomplete"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_download_stopped_by_a_signal_exits_130_and_leaves_no_half_written_file(hub, env, tmp_path, sig):
    """`kill PID` or a closed SSH session mid-file: by default Python dies on the spot and the
    partial stays in the cache for good; satori takes the Ctrl-C path, where huggingface_hub
    finishes or deletes the files in flight."""
    hub.stall_after["model.safetensors"] = 11 * MIB  # sends 11 MiB, then hangs
    root = tmp_path / "hf" / "hub"
    run = subprocess.Popen(
        [sys.executable, "-m", "satori_cli", "download", "model", "acme/big"],
        env=satori_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: hub.stalled.is_set() and partials(root), timeout=60, interval=0.05)
        run.send_signal(sig)
        hub.release()  # the stalled connection drops; huggingface_hub retries or gives up
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert "Traceback" not in err, err
    assert not partials(root), partials(root)


@pytest.mark.parametrize("token", [None, "hf_wrong"])
def test_a_gated_repo_without_access_is_one_clear_line(satori, hub, env, token):
    extra = {"HF_TOKEN": token} if token else {}
    line = one_line_error(satori("download", "model", "acme/gated", env={**env, **extra}))
    assert "acme/gated is gated" in line and "HF_TOKEN" in line


def test_a_missing_repo_or_revision_is_one_clear_line(satori, hub, env):
    line = one_line_error(satori("download", "model", "acme/nope", env=env))
    assert "model acme/nope not found on " + hub.endpoint in line
    line = one_line_error(satori("download", "data", "acme/tiny-vl", env=env))  # a model, not a dataset
    assert "dataset acme/tiny-vl not found" in line
    line = one_line_error(satori("download", "model", "acme/tiny-vl", "--revision", "v9", env=env))
    assert "has no revision 'v9'" in line
