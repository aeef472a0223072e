"""`satori download`: no network in tests, so the offline paths: a clear one-line failure, a local
folder used as is, and a populated Hugging Face cache found without the hub."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from satori_cli.commands.download import fetch
from satori_cli.errors import SatoriError
from satori_cli.hub import rich_tqdm

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def populate_cache(hub_cache: Path, repo: str, repo_type: str, files: dict[str, str]) -> Path:
    """The layout huggingface_hub writes: <type>s--owner--name/refs/main and snapshots/<commit>/."""
    folder = hub_cache / f"{repo_type}s--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    for name, text in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    return snapshot


def test_offline_with_an_empty_cache_says_how_to_place_files_by_hand(satori, tmp_path: Path) -> None:
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
    }
    for kind, repo in (("data", "justairr/VQA-Verify"), ("model", "justairr/SATORI")):
        done = satori("download", kind, env=env)
        assert done.returncode == 2, done.stdout + done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        line = done.stderr
        assert line.startswith("error: cannot download " + repo) and "HF_HUB_OFFLINE" in line
        assert f"hf download {repo}" in line and f"satori download {kind} DIR" in line
    done = satori("download", "model", "base", env=env)
    assert done.returncode == 2 and "Qwen/Qwen2.5-VL-3B-Instruct" in done.stderr


def test_a_local_folder_is_accepted_in_place_of_a_repo_id(satori, tmp_path: Path) -> None:
    data = tmp_path / "VQA-Verify" / "data"
    data.mkdir(parents=True)
    (data / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    done = satori("download", "data", str(tmp_path / "VQA-Verify"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str((tmp_path / "VQA-Verify").resolve())
    assert "local folder" in done.stdout

    model = tmp_path / "SATORI-3B"
    model.mkdir()
    done = satori("download", "model", str(model))
    assert done.returncode == 2 and "no config.json" in done.stderr
    (model / "config.json").write_text('{"model_type": "llama"}')
    done = satori("download", "model", str(model))
    assert done.returncode == 2 and "is a 'llama' model" in done.stderr  # judged by config.json
    (model / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    done = satori("download", "model", str(model), "--source", "modelscope")
    assert done.returncode == 0 and done.stdout.strip().endswith(str(model.resolve()))


def test_a_populated_hf_cache_is_found_offline(satori, tmp_path: Path) -> None:
    hub = tmp_path / "hf" / "hub"
    snapshot = populate_cache(
        hub, "justairr/VQA-Verify", "dataset", {"data/train.parquet": "x", "README.md": "#"}
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(hub)}
    done = satori("download", "data", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(snapshot)
    done = satori("download", "data", "--revision", COMMIT, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith(str(snapshot))
    model = populate_cache(hub, "Qwen/Qwen2.5-VL-3B-Instruct", "model", {"config.json": "{}"})
    done = satori("download", "model", "base", env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith(str(model))


def test_a_filled_local_dir_is_used_offline(monkeypatch, tmp_path: Path) -> None:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    target = tmp_path / "models" / "satori"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    got = fetch("model", "justairr/SATORI", local_dir=target)
    assert got.path == target.resolve() and got.origin == "hf"


def test_bad_repo_names_and_sources_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(SatoriError, match="no such folder"):
        fetch("data", str(tmp_path / "missing"))
    with pytest.raises(SatoriError, match="neither"):
        fetch("model", "not a repo")
    with pytest.raises(SatoriError, match="unknown --source"):
        fetch("model", "justairr/SATORI", source="ftp")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SatoriError, match="not a dataset"):
        fetch("data", str(tmp_path / "empty"))


def test_hub_progress_bars_become_rich_tasks() -> None:
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(file=io.StringIO())) as progress:
        bar = rich_tqdm(progress)(total=3, desc="Fetching 3 files", unit="B")
        bar.update(2)
        bar.refresh()
        (task,) = progress.tasks
        assert (task.completed, task.total, task.description) == (2, 3, "Fetching 3 files")
        bar.update(1)
        bar.close()
        assert progress.tasks[0].completed == 3


def test_unreachable_modelscope_is_one_quick_line_and_leaves_no_folder(satori, tmp_path: Path) -> None:
    """ModelScope's client retried for 25 s, suggested `hf download` and left an empty --out folder."""
    env = {"MODELSCOPE_ENDPOINT": "127.0.0.1:9", "MODELSCOPE_CACHE": str(tmp_path / "ms-cache")}
    for kind, repo_type in (("model", "model"), ("data", "dataset")):
        target = tmp_path / kind / "new-folder"
        done = satori("download", kind, "--source", "modelscope", "--out", str(target), env=env)
        assert done.returncode == 2, done.stdout + done.stderr
        (line,) = [x for x in done.stderr.splitlines() if x.strip()]
        assert line.startswith("error: cannot reach ModelScope (https://127.0.0.1:9)")
        assert f"modelscope download justairr/{'SATORI' if kind == 'model' else 'VQA-Verify'}" in line
        assert f"--repo-type {repo_type}" in line and "hf download" not in line
        assert not target.exists() and not (tmp_path / kind).exists()
        assert done.stdout == ""
    mine = tmp_path / "mine"
    mine.mkdir()  # a folder the user made stays, empty or not
    done = satori("download", "model", "--source", "modelscope", "--out", str(mine), env=env)
    assert done.returncode == 2 and mine.is_dir()


def test_a_repo_modelscope_does_not_have_leaves_no_folder(satori, tmp_path: Path) -> None:
    """A reachable ModelScope (here a loopback stand-in) that answers 404: one line, and the
    --out folder the download would have filled is gone again."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"Code": 10010205001, "Message": "not found", "Success": false}')

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            "MODELSCOPE_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            "MODELSCOPE_CACHE": str(tmp_path / "ms-cache"),
        }
        target = tmp_path / "new-folder"
        done = satori("download", "model", "--source", "modelscope", "--out", str(target), env=env)
    finally:
        server.shutdown()
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.strip()]
    assert "cannot download justairr/SATORI from ModelScope" in line and "modelscope download" in line
    assert not target.exists()
