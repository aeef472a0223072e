"""Which GPU an evaluation process uses.

Under torchrun, importing `vlmeval.run` narrows CUDA_VISIBLE_DEVICES to this rank's GPUs. The
CUDA runtime reads that variable once, at its first call (`torch.cuda.is_available()` is one),
so a CUDA call before the import puts every rank on GPU 0. The worker therefore imports
`vlmeval.run` first and only then calls `bind_device`, which picks the rank's GPU and makes it
the current device; the model goes to `model_device()`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def _ids(value: str | None) -> list[str]:
    return [x.strip() for x in (value or "").split(",") if x.strip()]


def device_index(visible_before: str | None, visible_now: str | None, device_count: int) -> int:
    """The CUDA ordinal, in this process, of the first GPU in `visible_now` (this rank's slice).

    If the runtime started after the narrowing it enumerates only the slice: ordinal 0. If
    something started it earlier it still enumerates `visible_before` (all GPUs when unset), so
    the rank's GPU is found in that list.
    """
    before, now = _ids(visible_before), _ids(visible_now)
    if not now or device_count <= len(now) or now == before:
        return 0
    if before:
        return before.index(now[0]) if now[0] in before else 0
    return int(now[0]) if now[0].isdigit() and int(now[0]) < device_count else 0


def bind_device(visible_before: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Make this rank's GPU the current CUDA device; return "cuda:<i>", or "cpu" without CUDA.

    Call it after `import vlmeval.run` and before any other CUDA call.
    """
    import torch

    environ = os.environ if environ is None else environ
    if not torch.cuda.is_available():
        return "cpu"
    index = device_index(visible_before, environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count())
    torch.cuda.set_device(index)
    return f"cuda:{index}"


def model_device() -> str:
    """Where the model goes: the current CUDA device (set by `bind_device`), else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{torch.cuda.current_device()}"
