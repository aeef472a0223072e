"""benchmarks/gpu_check.py without a GPU: the skip, the prerequisite errors, and the commands it runs."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from satori_cli.pixels import PAPER_BUDGET

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def run_script(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_without_a_gpu_it_says_skipped_and_exits_77(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH without nvidia-smi, even on a GPU machine
    bin_dir.mkdir()
    done = run_script(tmp_path, {"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert done.returncode == 77, done.stderr
    assert done.stdout.strip() == "no CUDA GPU (nvidia-smi found none): skipped"


def test_a_gpu_that_torch_cannot_use_is_a_named_prerequisite_error(gpu_check, monkeypatch, capsys):
    """nvidia-smi sees a GPU, torch does not (a CPU build, a driver too old): exit 2, one line."""
    monkeypatch.setattr(gpu_check, "detect_gpus", lambda: [gpu_check.Gpu(0, "NVIDIA H200", 140.4)])
    # The real torch probe runs in a child; CUDA_VISIBLE_DEVICES='' hides any real GPU from it.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    probe = gpu_check.torch_cuda()
    assert probe["available"] is False and probe["count"] == 0 and probe["torch"]
    assert gpu_check.main([]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nvidia-smi sees 1 GPU(s), but torch ")
    assert lines[0].endswith("cannot use them")


def test_missing_modules_are_named_with_the_install_command(gpu_check, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "detect_gpus", lambda: [gpu_check.Gpu(0, "H200", 139.0)])
    monkeypatch.setattr(gpu_check, "missing_modules", lambda: ["swift", "vlmeval"])
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "missing Python modules: swift, vlmeval" in err and "pip install -e '.[eval,train]'" in err
    assert set(gpu_check.NEEDS.values()) == {"train", "eval"}


def test_the_train_step_targets_one_gpu_and_is_a_valid_satori_command(
    gpu_check, satori, tmp_path, tiny_model
):
    paths = gpu_check.Paths(tmp_path)
    paths.tiny.symlink_to(tiny_model, target_is_directory=True)
    argv = gpu_check.train_argv(paths, dry_run=True)
    assert argv[argv.index("--gpus") + 1] == "1" and argv[argv.index("--preset") + 1] == "smoke"
    done = satori(*argv)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if " rlhf " in line)
    words = shlex.split(line)
    # Not hidden: the one process gets the first GPU of the pool (GPU 0 on a machine without any).
    assert [w for w in words if w.startswith("CUDA_VISIBLE_DEVICES=")] == ["CUDA_VISIBLE_DEVICES=0"]
    assert words[words.index("--max_steps") + 1] == "1" and words[words.index("--save_steps") + 1] == "1"
    assert words[words.index("--output_dir") + 1] == str(paths.train)
    assert "1 node(s) x 1 GPU(s)" in done.stdout
    assert gpu_check.train_argv(paths)[-5:] == ["--", "--max_steps", "1", "--save_steps", "1"]


@pytest.mark.parametrize("procs", [1, 2])
def test_the_eval_steps_are_valid_satori_commands(gpu_check, satori, tmp_path, tiny_model, procs):
    paths = gpu_check.Paths(tmp_path)
    paths.tiny.symlink_to(tiny_model, target_is_directory=True)
    assert satori(*gpu_check.bench_argv(paths)).returncode == 0 and paths.tsv.is_file()
    done = satori(*gpu_check.eval_argv(paths, procs, dry_run=True))
    assert done.returncode == 0, done.stderr
    assert '"backend": "transformers"' in done.stdout and "-m satori_cli.evaluation.worker" in done.stdout
    # One process runs the worker directly; two run it under torchrun, one rank per GPU.
    assert ("--nproc-per-node=2" in done.stdout) == (procs == 2)
    # The sample images are 32x32: the paper budget must blow them up to 448x448.
    assert gpu_check.first_image_size(paths.tsv) == (32, 32)
    assert PAPER_BUDGET.resized_hw(32, 32) == (448, 448)


def test_children_run_offline_on_this_checkout_without_a_stray_budget(gpu_check, tmp_path):
    env = gpu_check.child_env(
        tmp_path, {"PATH": "/bin", "PYTHONPATH": "/x", "MAX_PIXELS": "1", "IMAGE_MAX_TOKEN_NUM": "9"}
    )
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["PYTHONPATH"].split(":")[:2] == [str(REPO), "/x"] and env["SATORI_HOME"] == str(tmp_path)
    assert "MAX_PIXELS" not in env and "IMAGE_MAX_TOKEN_NUM" not in env


def test_what_was_seen_is_read_from_the_outputs(gpu_check, tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "[INFO:swift] loading\n[INFO:swift] model_kwargs: {'device_map': 'cuda:0', 'dtype': torch.float32}\n"
    )
    assert gpu_check.swift_device(log) == "cuda:0"
    assert gpu_check.swift_device(tmp_path / "missing.log") is None
    summary = {"settings": {"min_pixels": 200704, "decoding": {"repetition_penalty": 1.0}}, "results": []}
    assert gpu_check.recorded_sizes(summary) == [
        "settings.min_pixels=200704",
        "settings.decoding.repetition_penalty=1.0",
    ]
    sampler = gpu_check.GpuSampler()
    sampler.baseline, sampler.peak = {0: 500.0, 1: 500.0}, {0: 2548.0, 1: 510.0}
    assert sampler.used() == {0: 2048.0}  # GPU 1 barely moved: not used
    assert gpu_check.describe_used(sampler.used()) == "GPUs 0 (+2.0 GiB)"
    assert gpu_check.describe_used({}) == "no GPU memory used"
