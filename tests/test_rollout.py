"""`satori rollout` and server-mode training: every argv checked against ms-swift 4.6's own parsers,
the managed `swift rollout` child's lifecycle (through a fake `swift` executable: vLLM is CUDA-only),
and the dry runs of one and several nodes."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from satori_cli.gpus import parse_nvidia_smi
from satori_cli.process import wait_until
from satori_cli.train.plan import Launch, TrainPlan, build_commands
from satori_cli.train.recipe import parse_passthrough, resolve_recipe
from satori_cli.train.rollout import RolloutSpec, max_model_len, rollout_args, rollout_command
from tests.conftest import REPO, prepared, satori_env
from tests.fake_rollout import fake_nvidia_smi, fake_swift
from tests.serve_helpers import free_port, listening

FUNCS = ("external_format", "external_bbox_acc", "extern_vqa_acc", "external_caption_acc")
EIGHT = parse_nvidia_smi("\n".join(f"{i}, GPU-{i:08d}-x, NVIDIA H100 80GB HBM3, 81559" for i in range(8)))


def _parser(cls):
    from transformers import HfArgumentParser

    try:
        from swift.utils.utils import _patch_get_type_hints
    except ImportError:  # pragma: no cover - older layouts
        _patch_get_type_hints = contextlib.nullcontext
    with _patch_get_type_hints():
        return HfArgumentParser([cls])


@pytest.fixture(scope="module")
def rollout_parser():
    """ms-swift's `swift rollout` parser (RolloutArguments), built as swift builds it."""
    from swift.arguments import RolloutArguments

    return _parser(RolloutArguments)


@pytest.fixture(scope="module")
def rlhf_parser():
    from swift.arguments import RLHFArguments

    return _parser(RLHFArguments)


def parse(parser, argv: list[str], verb: str):
    assert argv[1] == verb, argv
    namespace, rest = parser.parse_known_args(argv[2:])
    assert rest == [], f"ms-swift 4.6 does not know {rest}"
    flags = [a for a in argv if a.startswith("--")]
    assert len(flags) == len(set(flags)), "a flag appears twice"
    return namespace


def env_and_argv(line: str) -> tuple[dict[str, str], list[str]]:
    """A dry-run line `VAR=value ... program args` split into its environment and argv."""
    words = shlex.split(line)
    env = {}
    while words and "=" in words[0] and words[0].split("=", 1)[0].isupper():
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


# -- the command builder ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "gpus", "tp", "extra"),
    [("server", 2, 1, {}), ("fast", 8, 2, {}), ("smoke", 1, 1, {"vllm_gpu_memory_utilization": "0.5"})],
)
def test_rollout_argv_parses_with_swift_rollout_arguments(rollout_parser, preset, gpus, tp, extra):
    recipe = resolve_recipe(preset)
    spec = RolloutSpec(gpus=gpus, tensor_parallel=tp, host="0.0.0.0", port=8123)
    local = preset == "smoke"
    args = rollout_args(
        "/m/tiny" if local else "Qwen/Qwen2.5-VL-3B-Instruct",
        recipe,
        spec,
        local_qwen2_5_vl=local,
        extra=extra,
    )
    cmd = rollout_command(args, recipe.budget, EIGHT[:gpus], "/venv/bin/swift")
    ns = parse(rollout_parser, cmd.argv, "rollout")
    assert (ns.vllm_data_parallel_size, ns.vllm_tensor_parallel_size) == (gpus // tp, tp)
    assert (
        ns.host,
        ns.port,
        ns.infer_backend.value if hasattr(ns.infer_backend, "value") else ns.infer_backend,
    ) == (
        "0.0.0.0",
        8123,
        "vllm",
    )
    assert json.loads(ns.vllm_limit_mm_per_prompt) == {"image": 1}  # one image per prompt
    # The context is the recipe's prompt + completion (or its own vllm_max_model_len).
    swift = recipe.swift
    want = swift.get("vllm_max_model_len") or swift["max_length"] + swift["max_completion_length"]
    assert ns.vllm_max_model_len == want == max_model_len(swift)
    assert (ns.model_type, ns.template) == (("qwen2_5_vl", "qwen2_5_vl") if local else (None, None))
    # The shared pixel budget (and swift's token counts), and exactly the server's own GPUs.
    assert cmd.env["MIN_PIXELS"] == str(recipe.min_pixels) and cmd.env["MAX_PIXELS"] == str(recipe.max_pixels)
    assert cmd.env["IMAGE_MAX_TOKEN_NUM"] == str(recipe.max_pixels // 784)
    assert cmd.env["CUDA_VISIBLE_DEVICES"] == ",".join(str(i) for i in range(gpus))
    if extra:
        assert ns.vllm_gpu_memory_utilization == 0.5


def test_rollout_spec_refuses_what_vllm_cannot_split():
    from satori_cli.errors import SatoriError

    with pytest.raises(SatoriError, match="--tensor-parallel 3 does not divide --gpus 4"):
        RolloutSpec(gpus=4, tensor_parallel=3)
    with pytest.raises(SatoriError, match="at least one GPU"):
        RolloutSpec(gpus=0)
    assert RolloutSpec(gpus=8, tensor_parallel=2).data_parallel == 4


def server_plan(preset: str, launch: Launch, urls=(), extra=()) -> TrainPlan:
    recipe = resolve_recipe(preset, overrides={"swift": parse_passthrough(list(extra))})
    return TrainPlan(
        recipe=recipe,
        model="Qwen/Qwen2.5-VL-3B-Instruct",
        train_path=Path("/data/train.jsonl"),
        output_dir=Path("/shared/runs/grpo-3b"),
        plugin=Path("/p/swift_plugin.py"),
        reward_funcs=FUNCS,
        system_prompt=Path("/p/system.txt"),
        launch=launch,
        rollout_urls=tuple(urls),
    )


@pytest.mark.parametrize(
    ("preset", "launch", "urls"),
    [
        ("server", Launch(gpus=6, devices=tuple(EIGHT[2:])), ["http://127.0.0.1:8000"]),
        (
            "server",
            Launch(gpus=8, nodes=2, master_addr="10.0.0.1", master_port=29600),
            ["http://10.0.0.9:8000"],
        ),
        ("fast", Launch(gpus=4), ["http://10.0.0.9:8000", "http://10.0.0.10:8000"]),  # colocate -> server
        ("lora", Launch(gpus=1), ["http://[fd00::5]:8000"]),
    ],
    ids=["server-1-node", "server-2-nodes", "fast-two-servers", "lora-ipv6"],
)
def test_server_mode_argv_parses_with_rlhf_arguments(rlhf_parser, preset, launch, urls):
    plan = server_plan(preset, launch, urls, extra=["--report_to", "wandb"])
    for rank, cmd in build_commands(plan, "/venv/bin/swift"):
        ns = parse(rlhf_parser, cmd.argv, "rlhf")
        assert ns.use_vllm is True and ns.vllm_mode == "server"
        assert ns.vllm_server_base_url == urls
        assert ns.report_to == ["wandb"] and ns.run_name == "grpo-3b"  # named after the run folder
        assert cmd.env.get("NODE_RANK", "0") == str(rank)
    if launch.devices:
        assert cmd.env["CUDA_VISIBLE_DEVICES"] == "2,3,4,5,6,7" and cmd.env["NPROC_PER_NODE"] == "6"


def test_tensorboard_is_the_default_tracker(rlhf_parser):
    for preset in ("paper", "smoke", "server"):
        plan = server_plan(preset, Launch(gpus=resolve_recipe(preset).gpus))
        ((_, cmd),) = build_commands(plan)
        ns = parse(rlhf_parser, cmd.argv, "rlhf")
        assert ns.report_to == ["tensorboard"] and plan.report_to == ["tensorboard"]


# -- the CLI -----------------------------------------------------------------------------------------
def gpu_env(tmp_path: Path, count: int = 8, **extra: str) -> dict[str, str]:
    """A PATH whose `nvidia-smi` lists `count` H100s (no CUDA_VISIBLE_DEVICES unless given)."""
    bin_dir = tmp_path / "gpu-bin"
    fake_nvidia_smi(bin_dir, count)
    env = satori_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **extra})
    if "CUDA_VISIBLE_DEVICES" not in extra:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "satori_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_dry_run_server_preset_one_node_starts_its_own_rollout(rollout_parser, rlhf_parser, tmp_path):
    result = run(
        [
            "train",
            "--preset",
            "server",
            "--data",
            str(prepared(tmp_path)),
            "-o",
            str(tmp_path / "run"),
            "--dry-run",
        ],
        gpu_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rollout_line = next(line for line in lines if " rollout " in line and not line.startswith("#"))
    train_line = next(line for line in lines if " rlhf " in line)
    renv, rargv = env_and_argv(rollout_line)
    tenv, targv = env_and_argv(train_line)
    ns = parse(rollout_parser, rargv, "rollout")
    assert renv["CUDA_VISIBLE_DEVICES"] == "0,1" and ns.vllm_data_parallel_size == 2
    assert (ns.host, ns.port) == ("127.0.0.1", 8000)
    tns = parse(rlhf_parser, targv, "rlhf")
    assert tenv["CUDA_VISIBLE_DEVICES"] == "2,3,4,5,6,7" and tenv["NPROC_PER_NODE"] == "6"
    assert tns.vllm_server_base_url == ["http://127.0.0.1:8000"] and tns.vllm_mode == "server"
    assert renv["MIN_PIXELS"] == tenv["MIN_PIXELS"] == "200704"  # one budget for generation and training
    assert "started and stopped by satori train" in result.stdout
    assert not (tmp_path / "run").exists()


def test_dry_run_server_mode_across_nodes_prints_every_command(rollout_parser, rlhf_parser, tmp_path):
    env = gpu_env(tmp_path, MASTER_PORT="31234")  # an exported MASTER_PORT is honoured
    args = [
        "train",
        "--preset",
        "server",
        "--gpus",
        "8",
        "--nodes",
        "3",
        "--master-addr",
        "10.0.0.1",
        "--rollout-url",
        "http://10.0.0.9:8100/",
        "--data",
        str(prepared(tmp_path)),
        "-o",
        str(tmp_path / "shared-run"),
        "--dry-run",
    ]
    result = run(args, env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "satori rollout --preset server --model base --gpus 2 --host 0.0.0.0 --port 8100" in out
    assert "node 0 prepares it once, the other nodes wait for it" in out
    rollout_lines = [line for line in out.splitlines() if " rollout --model" in line]
    assert len(rollout_lines) == 1
    renv, rargv = env_and_argv(rollout_lines[0])
    assert parse(rollout_parser, rargv, "rollout").port == 8100 and renv["CUDA_VISIBLE_DEVICES"] == "0,1"
    train_lines = [line for line in out.splitlines() if " rlhf " in line]
    assert len(train_lines) == 3
    for rank, line in enumerate(train_lines):
        assert f"# node {rank} of 3: training on GPU(s) 0,1,2,3,4,5,6,7" in out
        env_, argv = env_and_argv(line)
        ns = parse(rlhf_parser, argv, "rlhf")
        assert ns.vllm_server_base_url == ["http://10.0.0.9:8100"]
        assert {
            k: env_[k] for k in ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "NPROC_PER_NODE")
        } == {
            "NNODES": "3",
            "NODE_RANK": str(rank),
            "MASTER_ADDR": "10.0.0.1",
            "MASTER_PORT": "31234",
            "NPROC_PER_NODE": "8",
        }
        assert env_["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7" and env_["MIN_PIXELS"] == "200704"
    # The flag wins over the environment.
    flagged = run([*args, "--master-port", "29999"], env)
    assert "MASTER_PORT=29999" in flagged.stdout and "MASTER_PORT=31234" not in flagged.stdout


def test_dry_run_across_nodes_without_a_rollout_url_names_the_placeholder(tmp_path):
    args = [
        "train",
        "--preset",
        "server",
        "--gpus",
        "8",
        "--nodes",
        "2",
        "--master-addr",
        "10.0.0.1",
        "--data",
        str(prepared(tmp_path)),
        "-o",
        str(tmp_path / "run"),
    ]
    result = run([*args, "--dry-run"], gpu_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "--vllm_server_base_url http://ROLLOUT_HOST:8000" in result.stdout
    assert "pass it to every node as --rollout-url" in result.stdout
    real = run([*args, "--node-rank", "0"], gpu_env(tmp_path))
    assert real.returncode == 2 and "server mode across nodes needs --rollout-url" in real.stderr


def test_rollout_dry_run_takes_the_first_gpus_of_the_users_pool(rollout_parser, tmp_path):
    env = gpu_env(tmp_path, CUDA_VISIBLE_DEVICES="6,7,2,3")
    result = run(
        [
            "rollout",
            "--gpus",
            "2",
            "--host",
            "0.0.0.0",
            "--port",
            "8010",
            "--dry-run",
            "--",
            "--vllm_gpu_memory_utilization",
            "0.8",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    renv, argv = env_and_argv(result.stdout.strip().splitlines()[-1])
    ns = parse(rollout_parser, argv, "rollout")
    assert renv["CUDA_VISIBLE_DEVICES"] == "6,7"  # the user's order, the user's names
    assert "CUDA_DEVICE_ORDER" not in renv  # their numbering stays theirs
    assert ns.vllm_gpu_memory_utilization == 0.8 and ns.vllm_data_parallel_size == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "4", "--tensor-parallel", "3"], "--tensor-parallel 3 does not divide --gpus 4"),
        (["--gpus", "9"], "--gpus 9 asked for, but 8 GPU(s) visible"),
        (["--port", "70000"], "is not a port number"),
        (["--preset", "nope"], "unknown preset 'nope'"),
    ],
)
def test_rollout_user_errors_are_one_line(tmp_path, args, message):
    result = run(["rollout", *args], gpu_env(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_rollout_without_gpus_is_refused(tmp_path):
    result = run(["rollout", "--gpus", "1"], gpu_env(tmp_path, count=0))
    assert result.returncode == 2 and "--gpus 1 asked for, but no GPU visible" in result.stderr


# -- the managed child ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_rollout_serves_until_stopped_and_takes_its_server_with_it(tmp_path, tiny_model, sig):
    from satori_cli.http_client import request_json

    swift = fake_swift(tmp_path / "swift-bin")
    log = tmp_path / "fake.jsonl"
    port = free_port()
    env = gpu_env(tmp_path, FAKE_ROLLOUT_LOG=str(log))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "satori_cli",
            "rollout",
            "--swift-bin",
            str(swift),
            "--model",
            str(tiny_model),
            "--preset",
            "smoke",
            "--gpus",
            "2",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert wait_until(lambda: listening(port), timeout=60, interval=0.2), (
            proc.stderr.read() if proc.poll() else ""
        )
        url = f"http://127.0.0.1:{port}"
        assert request_json("GET", f"{url}/get_world_size/") == {"world_size": 2}
        record = json.loads(log.read_text().splitlines()[0])
        assert record["env"]["CUDA_VISIBLE_DEVICES"] == "0,1" and record["env"]["MAX_PIXELS"] == "12544"
        assert record["argv"][0] == "rollout" and str(tiny_model) in record["argv"]
        deadline = time.monotonic() + 30
        while "rollout server ready" not in (line := proc.stdout.readline()) and time.monotonic() < deadline:
            pass
        assert "rollout server ready" in line and url in line
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 130
        assert wait_until(lambda: not listening(port), timeout=10, interval=0.1), (
            "the rollout server outlived satori"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(Exception):
            os.kill(json.loads(log.read_text().splitlines()[0])["pid"], signal.SIGKILL)


def test_a_rollout_that_dies_passes_its_exit_code_and_last_lines(tmp_path, tiny_model):
    swift = fake_swift(tmp_path / "swift-bin")
    env = gpu_env(tmp_path, FAKE_ROLLOUT_EXIT="3")
    port = free_port()
    result = run(
        [
            "rollout",
            "--swift-bin",
            str(swift),
            "--model",
            str(tiny_model),
            "--preset",
            "smoke",
            "--port",
            str(port),
        ],
        env,
        timeout=60,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "CUDA out of memory" in result.stderr and "the rollout server exited with code 3" in result.stderr
    assert f"logs/rollout-{port}.log" in result.stderr.replace("\n", "")  # where the whole log is


def test_train_starts_its_own_rollout_server_on_the_first_gpus_and_stops_it(
    tmp_path, tiny_model, monkeypatch
):
    """One-node server mode: the rollout server is a managed child with the recipe's budget, its
    own GPUs and its log in the run folder (through a fake `swift`: vLLM is CUDA-only)."""
    import dataclasses
    import socket

    from satori_cli.errors import SatoriError
    from satori_cli.train.preflight import split_devices
    from satori_cli.train.rollout import probe_rollout, start_rollout
    from satori_cli.train.runner import TrainOptions, build_plan

    swift = fake_swift(tmp_path / "swift-bin")
    log = tmp_path / "fake.jsonl"
    monkeypatch.setenv("FAKE_ROLLOUT_LOG", str(log))
    opts = TrainOptions(
        preset="server", model=str(tiny_model), data=str(prepared(tmp_path)), output=tmp_path / "run"
    )
    plan = build_plan(opts, prepare_data=False)
    assert plan.managed_rollout is not None and plan.rollout_urls == ("http://127.0.0.1:8000",)
    port = free_port()
    plan.managed_rollout = dataclasses.replace(plan.managed_rollout, port=port)
    (tmp_path / "run").mkdir()
    split = split_devices(EIGHT, 6, 2, managed=True)
    server = start_rollout(plan, split.rollout, str(swift), timeout=60)
    try:
        assert probe_rollout(f"http://127.0.0.1:{port}").world_size == 2
        record = json.loads(log.read_text().splitlines()[0])
        assert record["env"]["CUDA_VISIBLE_DEVICES"] == "0,1" and record["env"]["MIN_PIXELS"] == "200704"
        argv = record["argv"]
        assert argv[argv.index("--vllm_data_parallel_size") + 1] == "2" and argv[
            argv.index("--port") + 1
        ] == str(port)
        assert "fake rollout of" in (tmp_path / "run" / "rollout.log").read_text()
    finally:
        server.stop()
    assert wait_until(lambda: not listening(port), timeout=10, interval=0.1)
    # A port already taken (another rollout server?) is one line that names --rollout-url.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the closed server's TIME_WAIT
        sock.bind(("127.0.0.1", port))
        sock.listen()
        with pytest.raises(SatoriError) as exc:
            start_rollout(plan, split.rollout, str(swift), timeout=5)
    assert "already in use" in str(exc.value) and f"--rollout-url http://127.0.0.1:{port}" in str(exc.value)


def test_rollout_of_a_run_folder_serves_its_last_checkpoint_in_the_runs_budget(rollout_parser, tmp_path):
    """`--model RUN` as train takes it: the last complete checkpoint, in the pixel budget it was
    trained in (here the smoke budget, where the server preset's is the paper's)."""
    from tests.test_models import checkpoint, run_folder

    folder = run_folder(tmp_path / "run")
    checkpoint(folder / "checkpoint-2")
    result = run(["rollout", "--model", str(folder), "--gpus", "1", "--dry-run"], gpu_env(tmp_path))
    assert result.returncode == 0, result.stderr
    renv, argv = env_and_argv(result.stdout.strip().splitlines()[-1])
    ns = parse(rollout_parser, argv, "rollout")
    assert ns.model == str(folder / "checkpoint-2") and ns.model_type == "qwen2_5_vl"
    assert (renv["MIN_PIXELS"], renv["MAX_PIXELS"]) == ("3136", "12544")
