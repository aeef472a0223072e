"""The GPU paths in one command: the tiny model through `satori eval` and one `satori train` step.

    python benchmarks/gpu_check.py          # or: make gpu-check

On a CUDA machine, offline (HF_HUB_OFFLINE=1), in a temporary SATORI_HOME, within 8 minutes:
  1. `satori tiny-model` and `satori data sample-bench` (the tiny random Qwen2.5-VL, an 8-row TSV);
  2. `satori eval --backend transformers` with 1 process, and with 2 when 2 GPUs are visible;
  3. `satori train --preset smoke --gpus 1 -- --max_steps 1 --save_steps 1`: one GRPO step on the GPU.
It prints what ran and what was seen: which GPUs each step used (memory.used sampled from
nvidia-smi), the device ms-swift put the model on, the image size the model was fed where
`satori eval` records it (next to the size `smart_resize` says it must be) and the step time.
A step fails loudly: a non-zero exit, no GPU touched, two eval ranks on one GPU, or the time
budget spent.

Needs: an NVIDIA driver (nvidia-smi), torch built for CUDA, transformers, and satori's train and
eval extras (ms-swift 4.6, msgspec, qwen-vl-utils, ms-vlmeval 0.0.20): `pip install -e '.[gpu]'`,
or, where the machine has no package index, wheels downloaded elsewhere and installed with
`pip install --no-index --find-links WHEELS -e '.[train,eval]'`. satori itself runs from this
checkout (PYTHONPATH), installed or not.

Exit codes: 0 every step passed; 1 a step failed (its last log lines are printed); 2 a
prerequisite is missing (named, with the command that installs it); 77 no CUDA GPU, nothing ran
(automake's "skipped", so a caller can tell a skip from a pass).
"""

from __future__ import annotations

import argparse
import base64
import csv
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from satori_cli.gpus import Gpu, detect_gpus  # noqa: E402
from satori_cli.pixels import PAPER_BUDGET, PixelBudget  # noqa: E402

SKIPPED, FAILED, MISSING = 77, 1, 2
BUDGET_S = 8 * 60
# Step limits in seconds (each also capped by what is left of BUDGET_S).
LIMITS = {"tiny": 180, "bench": 60, "eval": 240, "train": 300}
# The Python modules the steps import, and the extra that brings each.
NEEDS = {
    "torch": "train",
    "transformers": "train",
    "swift": "train",
    "msgspec": "train",
    "qwen_vl_utils": "train",
    "vlmeval": "eval",
}
SMOKE_BUDGET = PixelBudget(3136, 12544)  # satori_cli/presets/smoke.yaml
USED_MIB = 64  # memory.used growth that counts as "this GPU was used"


@dataclass(frozen=True)
class Paths:
    """Where the check writes, all under one temporary folder."""

    work: Path

    @property
    def tiny(self) -> Path:
        return self.work / "tiny-model"

    @property
    def lmu(self) -> Path:
        return self.work / "lmu"

    @property
    def tsv(self) -> Path:
        return self.lmu / "TinyBench.tsv"

    def eval_dir(self, procs: int) -> Path:
        return self.work / f"eval-{procs}"

    @property
    def train(self) -> Path:
        return self.work / "train"


def tiny_argv(p: Paths) -> list[str]:
    return ["tiny-model", "--out", str(p.tiny)]


def bench_argv(p: Paths) -> list[str]:
    return ["data", "sample-bench", "--out", str(p.tsv)]


def eval_argv(p: Paths, procs: int, dry_run: bool = False) -> list[str]:
    argv = ["eval", "--data", str(p.tsv), "--model", str(p.tiny), "--backend", "transformers"]
    argv += ["--gpus", str(procs), "--max-new-tokens", "16", "--data-dir", str(p.lmu)]
    argv += ["--out", str(p.eval_dir(procs)), "--overwrite"]
    return [*argv, "--dry-run"] if dry_run else argv


def train_argv(p: Paths, dry_run: bool = False) -> list[str]:
    """The smoke preset on one GPU (`--gpus 1`; its default 0 hides the GPUs), one step, saved."""
    argv = ["train", "--preset", "smoke", "--gpus", "1", "--model", str(p.tiny), "--out", str(p.train)]
    argv.append("--overwrite")  # `--keep DIR` twice: the second check replaces the first one's run
    if dry_run:
        argv.append("--dry-run")
    return [*argv, "--", "--max_steps", "1", "--save_steps", "1"]


def child_env(home: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """This checkout's satori, a throwaway SATORI_HOME, and no network for the hubs."""
    env = dict(os.environ if environ is None else environ)
    env.update(
        {
            "SATORI_HOME": str(home),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
        }
    )
    for key in ("MIN_PIXELS", "MAX_PIXELS", "IMAGE_MIN_TOKEN_NUM", "IMAGE_MAX_TOKEN_NUM"):
        env.pop(key, None)
    return env


# -- what the machine has ----------------------------------------------------------------------
def torch_cuda(python: str = sys.executable) -> dict[str, Any]:
    """torch's view of CUDA, asked in a child process so this one never holds a CUDA context."""
    probe = (
        "import json, torch\n"
        "ok = torch.cuda.is_available()\n"
        "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'available': ok,"
        " 'count': torch.cuda.device_count() if ok else 0}))\n"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["torch failed to import"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def missing_modules() -> list[str]:
    return [name for name in NEEDS if importlib.util.find_spec(name) is None]


def versions() -> str:
    from importlib import metadata

    found = []
    for dist in ("transformers", "ms-swift", "ms-vlmeval", "trl", "deepspeed", "vllm"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


# -- what a step did on the GPUs ---------------------------------------------------------------
def gpu_memory_mib() -> dict[int, float]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {}
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    memory = {}
    for line in out.strip().splitlines():
        index, _, used = line.partition(",")
        if index.strip().isdigit():
            memory[int(index)] = float(used)
    return memory


@dataclass
class GpuSampler:
    """Peak memory.used per GPU while a step runs, above what was in use before it."""

    interval: float = 0.5
    baseline: dict[int, float] = field(default_factory=dict)
    peak: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        self.baseline = gpu_memory_mib()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for index, used in gpu_memory_mib().items():
                self.peak[index] = max(self.peak.get(index, 0.0), used)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def used(self) -> dict[int, float]:
        """{GPU index: MiB above the baseline} for the GPUs this step touched."""
        grown = {i: peak - self.baseline.get(i, 0.0) for i, peak in self.peak.items()}
        return {i: mib for i, mib in sorted(grown.items()) if mib >= USED_MIB}


def describe_used(used: dict[int, float]) -> str:
    if not used:
        return "no GPU memory used"
    return "GPUs " + ", ".join(f"{i} (+{mib / 1024:.1f} GiB)" for i, mib in used.items())


# -- what the outputs say ----------------------------------------------------------------------
def first_image_size(tsv: Path) -> tuple[int, int] | None:
    """(width, height) of the first image of a VLMEvalKit TSV (base64 in the `image` column)."""
    from PIL import Image

    csv.field_size_limit(sys.maxsize)
    with open(tsv, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row.get("image"):
                with Image.open(io.BytesIO(base64.b64decode(row["image"]))) as image:
                    return image.size
    return None


def recorded_sizes(value: Any, path: str = "") -> list[str]:
    """Entries of summary.json that record image sizes, pixels, devices or decoding (any nesting)."""
    words = ("size", "pixel", "grid", "device", "resolved", "decoding", "repetition")
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if any(w in str(key).lower() for w in words) and not isinstance(item, (dict, list)):
                found.append(f"{where}={item}")
            else:
                found += recorded_sizes(item, where)
    elif isinstance(value, list):
        for n, item in enumerate(value[:3]):
            found += recorded_sizes(item, f"{path}[{n}]")
    return found


def swift_device(log: Path) -> str | None:
    """The device_map ms-swift logged when it loaded the model (`model_kwargs: {...}`)."""
    if not log.is_file():
        return None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if "model_kwargs:" in line and "device_map" in line:
            return line.split("'device_map':", 1)[1].split(",", 1)[0].strip(" '}")
    return None


def step_times(run: Path) -> str:
    from satori_cli.train import runlogs

    rows = runlogs.read_metrics(run)
    speeds = [f"{row['train_speed(s/it)']} s/it" for row in rows if "train_speed(s/it)" in row]
    return ", ".join(speeds) or "no step metrics logged"


# -- running -----------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    seen: str = ""
    log: str = ""


class Check:
    def __init__(self, paths: Paths, env: dict[str, str], deadline: float) -> None:
        self.paths, self.env, self.deadline = paths, env, deadline
        self.steps: list[Step] = []

    def satori(
        self, name: str, argv: list[str], limit: float, env: dict[str, str] | None = None
    ) -> tuple[Step, GpuSampler]:
        timeout = max(1.0, min(limit, self.deadline - time.monotonic()))
        start = time.monotonic()
        with GpuSampler() as sampler:
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "satori_cli", *argv],
                    env=env or self.env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
                ok, log = done.returncode == 0, done.stdout + done.stderr
                if not ok:
                    log += f"\n(exit code {done.returncode})"
            except subprocess.TimeoutExpired as exc:
                ok = False
                out = exc.stdout or b""
                log = (out.decode(errors="replace") if isinstance(out, bytes) else out) + (
                    f"\n(stopped after {timeout:.0f} s: step limit or {BUDGET_S // 60}-minute budget)"
                )
        step = Step(name, ok, time.monotonic() - start, log=log)
        return step, sampler

    def record(self, step: Step) -> Step:
        self.steps.append(step)
        mark = "ok" if step.ok else "FAIL"
        print(f"[{mark:>4}] {step.name:<22} {step.seconds:6.1f} s  {step.seen}", flush=True)
        if not step.ok:
            tail = "\n".join(step.log.strip().splitlines()[-40:])
            print(f"------ last lines of {step.name} ------\n{tail}\n------", flush=True)
        return step

    def prepare(self) -> bool:
        step, _ = self.satori("tiny model", tiny_argv(self.paths), LIMITS["tiny"])
        if not self.record(step).ok:
            return False
        step, _ = self.satori("sample benchmark", bench_argv(self.paths), LIMITS["bench"])
        return self.record(step).ok

    def evaluate(self, procs: int) -> Step:
        step, sampler = self.satori(
            f"eval, {procs} process(es)", eval_argv(self.paths, procs), LIMITS["eval"]
        )
        used = sampler.used()
        seen = [describe_used(used)]
        size = first_image_size(self.paths.tsv)
        if size:
            h, w = PAPER_BUDGET.resized_hw(size[1], size[0])
            seen.append(f"image {size[0]}x{size[1]} must reach the model as {w}x{h}")
        summary = self.paths.eval_dir(procs) / "summary.json"
        if summary.is_file():
            recorded = recorded_sizes(json.loads(summary.read_text(encoding="utf-8")))
            seen.append("summary.json: " + ("; ".join(recorded[:6]) if recorded else "records no sizes"))
        if step.ok and not used:
            step.ok, step.log = False, step.log + "\n(the eval used no GPU memory: it ran on the CPU)"
        elif step.ok and len(used) < procs:
            step.ok = False
            step.log += f"\n({procs} ranks but only {describe_used(used)}: ranks share a GPU)"
        step.seen = "; ".join(seen)
        return self.record(step)

    def train(self, gpu: Gpu) -> Step:
        # One GPU: with more visible, ms-swift would spread a single process over all of them.
        one = {**self.env, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(gpu.index)}
        step, sampler = self.satori("train smoke, 1 step", train_argv(self.paths), LIMITS["train"], one)
        used = sampler.used()
        device = swift_device(self.paths.train / "train.log")
        h, w = SMOKE_BUDGET.resized_hw(480, 640)
        seen = [
            f"model on {device or 'an unlogged device'}",
            describe_used(used),
            f"budget {SMOKE_BUDGET.min_pixels}-{SMOKE_BUDGET.max_pixels} px (640x480 trains at {w}x{h})",
            step_times(self.paths.train),
        ]
        if step.ok and (not used or not (device or "").startswith("cuda")):
            step.ok = False
            step.log += f"\n(training did not run on the GPU: device {device}, {describe_used(used)})"
        step.seen = "; ".join(seen)
        return self.record(step)


def run_check(work: Path, gpus: list[Gpu], cuda: dict[str, Any]) -> int:
    print(
        f"gpu check: {len(gpus)} x {gpus[0].name} ({gpus[0].memory_gib:.0f} GiB); torch {cuda['torch']} "
        f"(CUDA {cuda['cuda']}, {cuda['count']} device(s)); {versions()}",
        flush=True,
    )
    start = time.monotonic()
    check = Check(Paths(work), child_env(work / "home"), start + BUDGET_S)
    if check.prepare():
        check.evaluate(1)
        if cuda["count"] >= 2:
            check.evaluate(2)
        else:
            print(f"[skip] {'eval, 2 process(es)':<22}          only one GPU", flush=True)
        check.train(gpus[0])
    failed = [s.name for s in check.steps if not s.ok]
    took = time.monotonic() - start
    if failed:
        print(f"gpu check FAILED ({', '.join(failed)}) after {took:.0f} s")
        return FAILED
    print(f"gpu check passed: {len(check.steps)} steps in {took:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", type=Path, help="write into this folder and keep it (default: a temp folder)"
    )
    args = parser.parse_args(argv)
    gpus = detect_gpus()
    if not gpus:
        print("no CUDA GPU (nvidia-smi found none): skipped", flush=True)
        return SKIPPED
    missing = missing_modules()
    if missing:
        extras = sorted({NEEDS[m] for m in missing})
        print(
            f"error: missing Python modules: {', '.join(missing)} "
            f"(pip install -e '.[{','.join(extras)}]' from this checkout)",
            file=sys.stderr,
        )
        return MISSING
    cuda = torch_cuda()
    if not cuda.get("available"):
        reason = cuda.get("error") or f"torch {cuda.get('torch')} (CUDA {cuda.get('cuda')}) cannot use them"
        print(f"error: nvidia-smi sees {len(gpus)} GPU(s), but {reason}", file=sys.stderr)
        return MISSING
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run_check(args.keep.resolve(), gpus, cuda)
    with tempfile.TemporaryDirectory(prefix="satori-gpu-check-") as tmp:
        return run_check(Path(tmp), gpus, cuda)


if __name__ == "__main__":
    sys.exit(main())
