"""Shared helpers for the serve tests: synthetic images with a red box at a known place, free ports,
and `FakeServer`, the product's canned-answer backend in a thread with the hooks only tests need."""

from __future__ import annotations

import asyncio
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from satori_cli.pixels import PixelBudget
from satori_cli.serve.fake_server import CannedModel, make_app

# (width, height) -> the red box in original pixels (x1, y1, x2, y2), right/bottom exclusive.
# Sizes chosen to exercise down-scaling, up-scaling (min_pixels) and odd ratios.
CASES = {
    (640, 480): (160, 120, 480, 360),
    (300, 400): (75, 100, 225, 300),
    (1920, 1080): (480, 270, 1440, 810),
    (1000, 333): (250, 83, 750, 249),
}


def red_box_image(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> Path:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(255, 0, 0))
    img.save(path)
    return path


def free_port() -> int:
    """A port nothing listens on right now (for servers that cannot be told to bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class ScriptedModel(CannedModel):
    """The canned model plus what tests look at: every request body, what the last one carried,
    and an optional `answer(body) -> text` that replaces the canned answer (then text-only chats,
    as an LLM judge sends them, are accepted)."""

    def __init__(self, budget: PixelBudget | None, answer: Callable[[dict[str, Any]], str] | None) -> None:
        super().__init__(budget)
        self.answer = answer
        self.image_required = answer is None
        self.requests: list[dict[str, Any]] = []
        self.last: dict[str, Any] = {}

    def reply(self, body: dict[str, Any], image: Any) -> str:
        self.requests.append(body)
        self.last = {
            "received_size": list(image.size) if image is not None else None,
            "model_input_size": list(self.budget.resized_wh(*image.size)) if image is not None else None,
            "mm_processor_kwargs": body.get("mm_processor_kwargs"),
            "temperature": body.get("temperature"),
            "max_tokens": body.get("max_tokens"),
        }
        return self.answer(body) if self.answer is not None else super().reply(body, image)


class FakeServer:
    """The fake backend on 127.0.0.1 (port 0: a free one) in a background thread; a context manager.

    Test hooks: `answer=` (see ScriptedModel), `delay=` seconds before any chat answer starts
    (a slow model), and `healthy`: clear it and /health answers 503 (a server still loading);
    `health_polls` counts the /health requests.
    """

    def __init__(
        self,
        api_key: str | None = None,
        delay: float = 0.0,
        budget: PixelBudget | None = None,
        port: int = 0,
        answer: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        import uvicorn
        from fastapi import Request
        from fastapi.responses import Response

        self.model = ScriptedModel(budget, answer)
        self.app = make_app(self.model, api_key)
        self.healthy = threading.Event()
        self.healthy.set()
        self.health_polls = 0
        self.chats_received = 0  # chat requests that arrived, answered or not (tests wait on it)

        @self.app.middleware("http")
        async def hooks(request: Request, call_next):
            if request.url.path == "/health":
                self.health_polls += 1
                if not self.healthy.is_set():
                    return Response(status_code=503)
            if request.url.path.endswith("/chat/completions"):
                self.chats_received += 1
                if delay:
                    await asyncio.sleep(delay)
            return await call_next(request)

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat request body answered so far."""
        return self.model.requests

    @property
    def last(self) -> dict[str, Any]:
        """What the last answered chat request carried (image sizes, sampling, processor kwargs)."""
        return self.model.last

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def start(self) -> FakeServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Iterator[tuple[Any, int]]:
    """`satori serve --port 0 ARGS` in a subprocess, until it says where it answers.

    Yields (process, API port); `process.ui_port` is the demo's port with --ui. Output keeps being
    drained (into `process.lines`) so the pipe never blocks. Whatever is still running at the end
    is stopped with SIGINT, then SIGKILL.
    """
    from tests.conftest import satori_env

    argv = [sys.executable, "-m", "satori_cli", "serve", "--port", "0", *args]
    proc = subprocess.Popen(
        argv, env=satori_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()
    proc.lines = []

    def drain() -> None:
        for line in proc.stdout:
            proc.lines.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        port = proc.ui_port = None
        deadline = time.monotonic() + timeout
        while port is None or ("--ui" in args and proc.ui_port is None):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"satori serve exited ({proc.wait()}): {''.join(proc.lines)}")
            if m := re.search(r"API ready: http://[^ ]+:(\d+)/v1", line):
                port = int(m.group(1))
            if m := re.search(r"demo: http://[^ ]+:(\d+)", line):
                proc.ui_port = int(m.group(1))
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
