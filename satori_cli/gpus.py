"""The GPUs this process may use, found without importing torch.

`nvidia-smi` answers in milliseconds where `import torch` takes seconds, and it works in the
environment that only launches the real tools. `CUDA_VISIBLE_DEVICES` is honoured by index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_gib: float


def parse_nvidia_smi(output: str, visible: str | None = None) -> list[Gpu]:
    """GPUs from `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`."""
    gpus = []
    for line in output.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        try:
            gpus.append(Gpu(int(parts[0]), parts[1], float(parts[2]) / 1024))
        except ValueError:
            continue
    if visible is not None:
        wanted = [v.strip() for v in visible.split(",") if v.strip()]
        gpus = [g for g in gpus if str(g.index) in wanted]
    return gpus


def detect_gpus(timeout: float = 20.0) -> list[Gpu]:
    """Visible NVIDIA GPUs; an empty list when there is no driver or no GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out, os.environ.get("CUDA_VISIBLE_DEVICES"))
