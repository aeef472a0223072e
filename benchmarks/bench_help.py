"""`satori --help` must be instant: wall time of a fresh process, and no heavy imports.

Target: median under 0.5 s, and none of torch, swift, vlmeval, gradio, vllm, transformers
imported (checked with `python -X importtime`).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "swift", "vlmeval", "gradio", "vllm", "transformers")
TARGET_S = 0.5


def main() -> int:
    cmd = [sys.executable, "-m", "satori_cli", "--help"]
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    trace = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], capture_output=True, text=True)
    imported = {
        line.split("|")[-1].strip().split(".")[0] for line in trace.stderr.splitlines() if "|" in line
    }
    heavy = sorted(set(HEAVY) & imported)
    median = statistics.median(times)
    print(
        f"satori --help: median {median * 1000:.0f} ms, min {min(times) * 1000:.0f} ms "
        f"over {len(times)} runs (target < {TARGET_S * 1000:.0f} ms)"
    )
    print(f"heavy modules imported: {', '.join(heavy) or 'none'}")
    return 0 if median < TARGET_S and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
