"""Scaling out: which GPUs each child gets, the multi-node data step (two real processes on one
folder), and the server-mode preflight against a fake `swift rollout` (down, another model, not a
rollout server, a key the trainer cannot send, a wrong GPU split): one line and exit 2 each."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from satori_cli.errors import SatoriError
from satori_cli.gpus import Gpu, parse_nvidia_smi, visible_env
from satori_cli.train import rundata
from satori_cli.train.preflight import DeviceSplit, is_this_machine, split_devices
from tests.conftest import REPO, satori_env
from tests.fake_rollout import FakeRollout, fake_nvidia_smi
from tests.serve_helpers import free_port

SMI = "\n".join(
    f"{i}, GPU-{i}abc{i}-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 81559" for i in range(8)
)


def ids(gpus) -> list[str]:
    return [g.device_id for g in gpus]


# -- GPU pools and splits -------------------------------------------------------------------------------
def test_the_pool_follows_cuda_visible_devices_in_its_order_by_index_or_uuid():
    assert [g.index for g in parse_nvidia_smi(SMI)] == list(range(8))
    pool = parse_nvidia_smi(SMI, "5,GPU-1abc1,3")
    assert [g.index for g in pool] == [5, 1, 3] and ids(pool) == ["5", "GPU-1abc1", "3"]
    assert [g.index for g in parse_nvidia_smi(SMI, "2,9,4")] == [2]  # CUDA stops at an unknown entry
    assert parse_nvidia_smi(SMI, "") == [] and parse_nvidia_smi(SMI, "-1") == []
    # The older three-column query still parses.
    assert parse_nvidia_smi("0, A100, 81920\n") == [Gpu(0, "A100", 80.0)]


def test_a_child_gets_exactly_its_gpus_in_the_numbering_they_were_named_in():
    eight = parse_nvidia_smi(SMI)
    assert visible_env(eight[2:4], {}) == {"CUDA_VISIBLE_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert visible_env(eight[2:4], {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}) == {"CUDA_VISIBLE_DEVICES": "2,3"}
    named = parse_nvidia_smi(SMI, "GPU-7abc7,6")
    assert visible_env(named[:1], {}) == {
        "CUDA_VISIBLE_DEVICES": "GPU-7abc7"
    }  # the user's names, the user's order
    assert visible_env([], {}) == {"CUDA_VISIBLE_DEVICES": ""}


def test_gpus_n_on_a_bigger_box_takes_the_first_n_of_the_pool():
    eight = parse_nvidia_smi(SMI)
    assert ids(split_devices(eight, 4).train) == ["0", "1", "2", "3"]
    assert split_devices(eight, 0) == DeviceSplit()  # a CPU run
    assert ids(split_devices(parse_nvidia_smi(SMI, "6,7,0,1"), 2).train) == ["6", "7"]
    with pytest.raises(SatoriError, match=r"--gpus 9 asked for, but 8 GPU\(s\) visible"):
        split_devices(eight, 9)
    with pytest.raises(SatoriError, match="no GPU visible"):
        split_devices([], 1)


def test_a_rollout_server_on_this_machine_takes_the_first_gpus_and_training_the_next():
    eight = parse_nvidia_smi(SMI)
    split = split_devices(eight, 6, 2, managed=True)
    assert ids(split.rollout) == ["0", "1"] and ids(split.train) == ["2", "3", "4", "5", "6", "7"]
    assert split.describe() == "rollout on GPU(s) 0,1, training on GPU(s) 2,3,4,5,6,7"
    # A server started by `satori rollout` on the same pool: the same split.
    assert ids(split_devices(eight, 6, 2).train) == ["2", "3", "4", "5", "6", "7"]
    # CUDA_VISIBLE_DEVICES naming exactly the training GPUs: taken as they are.
    pinned = parse_nvidia_smi(SMI, "2,3,4,5,6,7")
    assert ids(split_devices(pinned, 6, 2, pinned=True).train) == ["2", "3", "4", "5", "6", "7"]
    # ... but not for a server satori starts itself (it needs GPUs of its own), nor when the
    # pool is neither big enough for both nor exactly the training GPUs.
    for kwargs in ({"pinned": True, "managed": True}, {"pinned": False}):
        with pytest.raises(SatoriError) as exc:
            split_devices(pinned, 6, 2, **kwargs)
        message = str(exc.value)
        assert "\n" not in message and exc.value.exit_code == 2
        assert message.startswith(
            "wrong GPU split: the rollout server takes 2 GPU(s) of this machine and training asks for 6, "
            "but 6 GPU(s) are visible"
        )
        assert "--gpus 4" in message
    with pytest.raises(SatoriError, match="wrong GPU split"):
        split_devices(parse_nvidia_smi(SMI, "1,2,3,4,5,6,7"), 6, 2, pinned=True)  # 7: ambiguous


def test_this_machine_is_recognised_by_binding_not_by_name():
    assert is_this_machine("127.0.0.1") and is_this_machine("localhost") and is_this_machine("0.0.0.0")
    assert is_this_machine("127.0.0.2")  # not named specially: found by binding to it
    assert not is_this_machine("192.0.2.1")  # TEST-NET-1: never an address of this machine
    assert not is_this_machine("no-such-host.invalid")


# -- the multi-node data step ----------------------------------------------------------------------------
NODE = """
import json, sys, time
from pathlib import Path
from satori_cli.errors import SatoriError
from satori_cli.train.runner import TrainOptions, build_plan
rank, out, data, timeout = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
start = time.time()
try:
    plan = build_plan(TrainOptions(preset="paper", data=data, output=out, nodes=2, node_rank=rank,
                                   master_addr="127.0.0.1", data_timeout=timeout))
except SatoriError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(2)
stat = plan.train_path.stat()
print(json.dumps({"start": start, "end": time.time(), "train": str(plan.train_path), "ino": stat.st_ino,
                  "mtime_ns": stat.st_mtime_ns}))
"""


def prepared(path: Path, rows: int = 50) -> Path:
    with open(path, "w") as handle:
        for i in range(rows):
            row = {
                "id": f"r{i}",
                "messages": [{"role": "user", "content": "<image>Q?"}],
                "images": [f"/{i}.png"],
                "bboxs": [[0, 0, 1, 1]],
                "width": 2,
                "height": 2,
            }
            handle.write(json.dumps(row) + "\n")
    return path


def node(rank: int, out: Path, data: Path, timeout: float = 60) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", NODE, str(rank), str(out), str(data), str(timeout)],
        env=satori_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_node_0_prepares_the_data_once_and_node_1_waits_and_verifies_it(tmp_path):
    data, run = prepared(tmp_path / "train.jsonl"), tmp_path / "shared-run"
    waiting = node(1, run, data)
    time.sleep(2.0)  # node 1 is waiting for a file nobody has written yet
    assert waiting.poll() is None and not (run / "data" / "train.jsonl").exists()
    first = node(0, run, data)
    out0, err0 = first.communicate(timeout=120)
    out1, err1 = waiting.communicate(timeout=120)
    assert first.returncode == 0 and waiting.returncode == 0, err0 + err1
    zero, one = json.loads(out0), json.loads(out1)
    ready = run / "data" / rundata.READY
    record = json.loads(ready.read_text())
    assert one["train"] == zero["train"] == str(run / "data" / "train.jsonl")
    assert one["end"] >= ready.stat().st_mtime - 1  # node 1 went on only after node 0 published
    # Node 1 read the very file node 0 wrote (same inode, untouched) and checked its hash.
    assert (one["ino"], one["mtime_ns"]) == (zero["ino"], zero["mtime_ns"])
    assert record["train"]["sha256"] == rundata.fingerprint(run / "data" / "train.jsonl")["sha256"]
    assert (
        record["train"]["rows"] == 50
        and record["source"]["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    )
    assert all(json.loads(line)["solution"].startswith("r") for line in (run / "data" / "train.jsonl").open())


def test_node_1_refuses_data_node_0_prepared_from_something_else(tmp_path):
    data, run = prepared(tmp_path / "train.jsonl"), tmp_path / "run"
    zero = node(0, run, data)
    assert zero.wait(timeout=120) == 0, zero.stderr.read()
    other = prepared(tmp_path / "other.jsonl", rows=7)
    result = node(1, run, other, timeout=1.5)
    out, _ = result.communicate(timeout=60)
    assert result.returncode == 2
    error = json.loads(out)["error"]
    assert "waited 1.5 s for node 0's data: node 0 prepared its data from" in error
    assert f"but this node was given {other}" in error
    # A file changed after node 0 recorded it is not trusted either.
    with open(run / "data" / "train.jsonl", "a") as handle:
        handle.write("{}\n")
    with pytest.raises(SatoriError, match="does not match the sha256 node 0 recorded"):
        rundata.wait_for_data(run, rundata.source_of(str(data), None), timeout=0.5, interval=0.1)


def test_node_1_times_out_with_one_line_when_node_0_never_writes(satori, tmp_path):
    data, run = prepared(tmp_path / "train.jsonl"), tmp_path / "run"
    result = satori(
        "train",
        "--preset",
        "paper",
        "--gpus",
        "1",
        "--nodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "127.0.0.1",
        "-o",
        str(run),
        "--data",
        str(data),
        "--data-timeout",
        "1",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "waited 1 s for node 0's data: node 0 has not published the prepared data" in lines[0]
    assert "same --out on a filesystem every node shares" in lines[0]
    assert not (run / "data" / "train.jsonl").exists()  # node 1 never writes the data


def test_multi_node_needs_an_explicit_shared_output(satori, tmp_path):
    result = satori(
        "train",
        "--preset",
        "paper",
        "--gpus",
        "4",
        "--nodes",
        "2",
        "--master-addr",
        "h",
        "--data",
        str(prepared(tmp_path / "t.jsonl")),
        "--dry-run",
    )
    assert result.returncode == 2 and "--nodes > 1 needs --out" in result.stderr
    assert "filesystem every node shares" in result.stderr


# -- server-mode preflight against a fake `swift rollout` -------------------------------------------------
def train_with_rollout(tmp_path: Path, tiny_model: Path, url: str, *extra: str, gpus=8, **env: str):
    bin_dir = tmp_path / "gpu-bin"
    fake_nvidia_smi(bin_dir, gpus)
    environ = satori_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env})
    if "CUDA_VISIBLE_DEVICES" not in env:
        environ.pop("CUDA_VISIBLE_DEVICES", None)
    args = [
        "train",
        "--preset",
        "server",
        "--model",
        str(tiny_model),
        "--data",
        str(prepared(tmp_path / "train.jsonl")),
        "-o",
        str(tmp_path / "run"),
        "--rollout-url",
        url,
        *extra,
    ]
    return subprocess.run(
        [sys.executable, "-m", "satori_cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def one_line_error(result, text: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_rollout_server_serving_the_training_model_passes(tmp_path, tiny_model):
    with FakeRollout(world_size=2, layers=2, blocks=2) as server:
        result = train_with_rollout(tmp_path, tiny_model, server.url)
    # Past the rollout checks and the GPU split, it stops at the first thing this CPU box lacks.
    one_line_error(result, "ZeRO (--deepspeed) needs the Python package 'deepspeed'")
    assert (
        f"rollout server {server.url}: 2 vLLM GPU(s) on this machine; same architecture as" in result.stdout
    )
    assert "(2 layers + 2 vision blocks)" in result.stdout


def test_rollout_server_down(tmp_path, tiny_model):
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(
        train_with_rollout(tmp_path, tiny_model, url), f"no rollout server answers at {url}"
    )
    assert "satori rollout --model MODEL --gpus N --host 0.0.0.0" in line


def test_rollout_server_serving_another_model(tmp_path, tiny_model):
    with FakeRollout(world_size=2, layers=36, blocks=32) as server:
        result = train_with_rollout(tmp_path, tiny_model, server.url)
    line = one_line_error(result, f"the rollout server at {server.url} serves another model")
    assert (
        "36 language layers and 32 vision blocks, while" in line
        and "has 2 language layers and 2 vision" in line
    )
    with FakeRollout(world_size=2, layers=2, blocks=0) as server:  # a text-only model
        result = train_with_rollout(tmp_path, tiny_model, server.url)
    one_line_error(result, "2 language layers and no vision tower")


def test_a_server_that_is_not_swift_rollout(tmp_path, tiny_model):
    with FakeRollout(swift=False) as server:  # /health only, like `vllm serve` or `satori serve`
        result = train_with_rollout(tmp_path, tiny_model, server.url)
    line = one_line_error(result, f"the server at {server.url} is not a `swift rollout` server")
    assert "cannot serve GRPO rollouts" in line
    with FakeRollout(api_key="secret") as server:
        result = train_with_rollout(tmp_path, tiny_model, server.url)
    one_line_error(result, "requires an API key, which ms-swift's trainer cannot send")


def test_wrong_gpu_split_with_a_rollout_server_on_this_machine(tmp_path, tiny_model):
    with FakeRollout(world_size=4, layers=2, blocks=2) as server:
        result = train_with_rollout(tmp_path, tiny_model, server.url)
    line = one_line_error(
        result,
        "wrong GPU split: the rollout server takes 4 GPU(s) of this machine and training "
        "asks for 6, but 8 GPU(s) are visible",
    )
    assert "--gpus 4" in line
    with FakeRollout(world_size=2, layers=2, blocks=2) as server:  # the user pinned the training GPUs
        result = train_with_rollout(tmp_path, tiny_model, server.url, CUDA_VISIBLE_DEVICES="2,3,4,5,6,7")
    one_line_error(result, "ZeRO (--deepspeed) needs")


def test_a_bad_rollout_url_is_one_line(satori, tmp_path):
    for url in (
        "10.0.0.9:8000",
        "http://10.0.0.9",
        "http://10.0.0.9:8000/v1",
        "ftp://x:1",
        "http://[::1",
        "http://h:abc",
    ):
        result = satori("train", "--preset", "server", "--rollout-url", url, "--dry-run")
        one_line_error(result, "is not http://HOST:PORT")


def test_not_swift_rollout_is_told_by_the_status_not_by_digits_in_the_address():
    """A 404 from a server whose address holds "401" (port 40191 did, in a parallel run) is
    'not swift rollout', never 'requires an API key': the probe reads the status code."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from satori_cli.train.rollout import probe_rollout

    class HealthOnly(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200 if self.path.endswith("/health") else 404)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthOnly)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/x401y403"
        with pytest.raises(SatoriError) as caught:
            probe_rollout(url, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert "is not a `swift rollout` server" in caught.value.message, caught.value.message


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_fingerprint_reads_in_chunks_and_counts_like_lines(tmp_path, chunk):
    """The data fingerprint hashes in fixed chunks (a raw parquet file may have no newline for
    hundreds of megabytes) and still counts the non-blank lines a line-by-line read counts."""
    import random

    from satori_cli.train.runfolder import fingerprint

    rng = random.Random(chunk)
    for case in range(40):
        data = bytes(rng.choice(b"ab \t\r\n\n") for _ in range(rng.randrange(0, 60)))
        path = tmp_path / f"case{case}.jsonl"
        path.write_bytes(data)
        with open(path, "rb") as handle:
            expected_rows = sum(bool(line.strip()) for line in handle)
        got = fingerprint(path, chunk=chunk)
        assert got["sha256"] == hashlib.sha256(data).hexdigest()
        assert got["rows"] == expected_rows, data
