"""Overhead of `satori train` over the bare `swift rlhf` command it runs (smoke preset, CPU).

Both run the same 2 GRPO steps on the tiny model and the sample data; the bare command is
the one `satori train --dry-run` prints for that run. Target: satori's wall time at most
10% above swift's. Runs are alternated to spread machine noise over both.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.10
ROUNDS = 2


def satori(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "satori_cli", *args], env=env, capture_output=True, text=True, check=False
    )


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="satori-bench-train-"))
    try:
        return measure(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(home: Path) -> int:
    env = {**os.environ, "SATORI_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    # Warm-up run: builds the tiny model and the sample data once, and warms the file cache.
    warm = home / "warm"
    first = satori("train", "--preset", "smoke", "--out", str(warm), env=env)
    if first.returncode:
        print(first.stdout[-2000:], first.stderr[-2000:])
        return 1
    data = warm / "data" / "prepared" / "train.jsonl"
    satori_s, swift_s = [], []
    for i in range(ROUNDS):
        out = home / f"satori-{i}"
        t = time.perf_counter()
        done = satori("train", "--preset", "smoke", "--data", str(data), "--out", str(out), env=env)
        satori_s.append(time.perf_counter() - t)
        if done.returncode:
            print(done.stderr[-2000:])
            return 1
        # The bare command: what satori ran, into a fresh folder.
        plan = satori(
            "train",
            "--preset",
            "smoke",
            "--data",
            str(data),
            "--out",
            str(home / f"swift-{i}"),
            "--dry-run",
            env=env,
        ).stdout
        line = next(x for x in plan.splitlines() if " rlhf " in x)
        argv = shlex.split(line)
        extra_env = dict(a.split("=", 1) for a in argv[: argv.index(next(a for a in argv if "=" not in a))])
        argv = [a for a in argv if a not in {f"{k}={v}" for k, v in extra_env.items()}]
        # swift reads the satori-tagged copy of the data, which satori writes first.
        (home / f"swift-{i}" / "data").mkdir(parents=True, exist_ok=True)
        (home / f"swift-{i}" / "data" / "train.jsonl").write_bytes(
            (out / "data" / "train.jsonl").read_bytes()
        )
        t = time.perf_counter()
        bare = subprocess.run(argv, env={**env, **extra_env}, capture_output=True, text=True, check=False)
        swift_s.append(time.perf_counter() - t)
        if bare.returncode:
            print(bare.stdout[-2000:])
            return 1
    best_satori, best_swift = min(satori_s), min(swift_s)
    ratio = best_satori / best_swift
    print(f"bare swift rlhf : {', '.join(f'{s:.1f}' for s in swift_s)} s (best {best_swift:.1f} s)")
    print(f"satori train    : {', '.join(f'{s:.1f}' for s in satori_s)} s (best {best_satori:.1f} s)")
    print(f"overhead        : {100 * (ratio - 1):+.1f}% (target <= {100 * (TARGET - 1):.0f}%)")
    print("(best of each; on a busy machine the noise between runs exceeds satori's overhead)")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
