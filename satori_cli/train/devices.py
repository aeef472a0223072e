"""Which GPUs of this machine the rollout server and the training processes get.

ms-swift puts its processes on every GPU it can see: with more GPUs visible than processes it
splits each process's model over several of them (which DeepSpeed and vLLM refuse), and a
`swift rollout` beside the training would share their GPUs. So satori gives every child its own
`CUDA_VISIBLE_DEVICES`, chosen from the pool (the user's `CUDA_VISIBLE_DEVICES`, in its order,
else every GPU): a rollout server on this machine takes the first GPUs of the pool, training the
next ones. The batch rule counts the training processes only.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from satori_cli.errors import SatoriError
from satori_cli.gpus import Gpu


@dataclass(frozen=True)
class DeviceSplit:
    """The GPUs of one machine: the rollout server's (none when it runs elsewhere) and training's."""

    rollout: tuple[Gpu, ...] = ()
    train: tuple[Gpu, ...] = ()

    def describe(self) -> str:
        def ids(gpus: tuple[Gpu, ...]) -> str:
            return ",".join(g.device_id for g in gpus)

        train = f"training on GPU(s) {ids(self.train)}" if self.train else "training on the CPU"
        return f"rollout on GPU(s) {ids(self.rollout)}, {train}" if self.rollout else train


def assumed_pool(count: int) -> list[Gpu]:
    """GPUs 0..count-1: the pool shown by a dry run on a machine that has none (another node)."""
    return [Gpu(i, "", 0.0) for i in range(count)]


def split_devices(
    pool: Sequence[Gpu], train: int, rollout: int = 0, *, pinned: bool = False, managed: bool = False
) -> DeviceSplit:
    """Give a rollout server on this machine the first `rollout` GPUs of the pool, training `train` next.

    `rollout` is 0 when the rollout server runs on another machine. A rollout server already
    running here (`managed=False`) was started on the first GPUs of the same pool by `satori
    rollout`, unless the user `pinned` CUDA_VISIBLE_DEVICES to exactly the training GPUs: then
    those are taken as they are. Anything else that does not fit is refused in one line.
    """
    pool = list(pool)
    if train == 0:
        return DeviceSplit()
    if rollout == 0:
        if train > len(pool):
            have = f"{len(pool)} GPU(s) visible" if pool else "no GPU visible"
            raise SatoriError(
                f"--gpus {train} asked for, but {have}",
                hint="use --gpus 0 with --preset smoke on a CPU, or check CUDA_VISIBLE_DEVICES / nvidia-smi",
            )
        return DeviceSplit((), tuple(pool[:train]))
    if rollout + train <= len(pool):
        return DeviceSplit(tuple(pool[:rollout]), tuple(pool[rollout : rollout + train]))
    if not managed and pinned and len(pool) == train:
        return DeviceSplit((), tuple(pool))
    pinning = "" if managed else f", or set CUDA_VISIBLE_DEVICES to exactly the {train} training GPUs"
    raise SatoriError(
        f"wrong GPU split: the rollout server takes {rollout} GPU(s) of this machine and training asks "
        f"for {train}, but {len(pool)} GPU(s) are visible",
        hint=f"use --gpus {max(len(pool) - rollout, 0)} (training processes only) or fewer rollout GPUs, "
        f"or run the rollout server on another machine{pinning}",
    )


def url_host(url: str) -> str:
    return urlsplit(url).hostname or ""


def is_this_machine(host: str) -> bool:
    """Whether `host` names this machine: loopback, or an address one of its interfaces holds.

    An address is this machine's exactly when a socket can be bound to it.
    """
    if host in ("", "localhost", "0.0.0.0", "::") or host.endswith(".localhost"):
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        return False
    for family, _, _, _, address in infos:
        with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind((address[0], 0))
            except OSError:
                continue
            return True
    return False
