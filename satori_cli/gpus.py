"""The GPUs this process may use, found without importing torch, and which of them a child gets.

`nvidia-smi` answers in milliseconds where `import torch` takes seconds, and it works in the
environment that only launches the real tools. A user's `CUDA_VISIBLE_DEVICES` is the pool
satori chooses from, in the user's order, by index or UUID; each child (a `swift rollout`
server, the training processes) is then given its own subset of that pool.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

QUERY = "--query-gpu=index,uuid,name,memory.total"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_gib: float
    uuid: str = ""
    visible_id: str = ""  # how the user's CUDA_VISIBLE_DEVICES named it ("" when it was not set)

    @property
    def device_id(self) -> str:
        """What to write into a child's CUDA_VISIBLE_DEVICES for this GPU."""
        return self.visible_id or str(self.index)


def _row(line: str) -> Gpu | None:
    """`index, name, MiB` or `index, uuid, name, MiB` (nvidia-smi csv,noheader,nounits)."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) not in (3, 4) or not parts[0].isdigit():
        return None
    uuid = parts[1] if len(parts) == 4 else ""
    if len(parts) == 4 and not uuid.startswith(("GPU-", "MIG-")):
        return None
    try:
        return Gpu(int(parts[0]), parts[-2], float(parts[-1]) / 1024, uuid)
    except ValueError:
        return None


def _named_by(gpu: Gpu, token: str) -> bool:
    # CUDA accepts an index, a full UUID or a unique UUID prefix.
    return token == str(gpu.index) or bool(gpu.uuid and len(token) > 4 and gpu.uuid.startswith(token))


def parse_nvidia_smi(output: str, visible: str | None = None) -> list[Gpu]:
    """GPUs from nvidia-smi's csv output, narrowed and ordered by `visible` (CUDA_VISIBLE_DEVICES).

    CUDA numbers the visible devices in the order the variable lists them, so the pool does too.
    """
    gpus = [gpu for gpu in map(_row, output.strip().splitlines()) if gpu is not None]
    if visible is None:
        return gpus
    pool: list[Gpu] = []
    for token in (t.strip() for t in visible.split(",")):
        match = next((g for g in gpus if _named_by(g, token)), None) if token else None
        if match is None:
            break  # CUDA ignores everything from the first entry it cannot resolve
        if all(p.index != match.index for p in pool):
            pool.append(replace(match, visible_id=token))
    return pool


def detect_gpus(timeout: float = 20.0) -> list[Gpu]:
    """Visible NVIDIA GPUs (the pool); an empty list when there is no driver or no GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, QUERY, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out, os.environ.get("CUDA_VISIBLE_DEVICES"))


def visible_env(gpus: Sequence[Gpu], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that gives a child exactly `gpus` (no GPU at all for an empty list).

    Indices from nvidia-smi are in PCI bus order; CUDA's default order is "fastest first", so
    unless the user named the devices themselves (or chose an order), the PCI order is asked for.
    """
    environ = os.environ if environ is None else environ
    env = {"CUDA_VISIBLE_DEVICES": ",".join(g.device_id for g in gpus)}
    if gpus and not any(g.visible_id for g in gpus) and "CUDA_DEVICE_ORDER" not in environ:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env
