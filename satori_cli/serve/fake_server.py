"""A small OpenAI-compatible server that answers in SATORI format, for tests, benchmarks and demos.

It answers in the output grammar whose system prompt a request carries (`satori` otherwise),
so the demo and `predict` in any `--grammar` get answers they can read.

It behaves like vLLM where it matters to the client: `/health` (open even with an API key),
`/v1/models`, `/v1/chat/completions` with and without streaming (SSE), Bearer API keys on
`/v1/*`, and the Qwen2.5-VL coordinate convention. It resizes the received image with the
pixel budget (the identity when the client pre-resized it, as ours does) and answers with
the box of the reddest region *in those resized pixels*, so a client that maps boxes back
wrongly draws them in the wrong place and the tests see it.

Run it alone with `python -m satori_cli.serve.fake_server --port 8000` or
`satori serve --backend fake`.
"""

# No `from __future__ import annotations`: FastAPI must resolve the handlers' `Request` at runtime.
import argparse
import asyncio
import base64
import binascii
import io
import json
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from satori_cli.grammar import GRAMMARS, Grammar, format_completion, get_grammar
from satori_cli.pixels import PixelBudget
from satori_cli.serve.vllm_command import SERVED_MODEL_NAME


def find_box(image: Any) -> tuple[list[int], str]:
    """The box (x1, y1, x2, y2, right/bottom exclusive) of the red region, else of non-white pixels."""
    import numpy as np

    a = np.asarray(image.convert("RGB")).astype(np.int16)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    for mask, what in (((r > 150) & (g < 100) & (b < 100), "red"), ((a < 235).any(axis=-1), "dark")):
        ys, xs = np.nonzero(mask)
        if len(xs):
            return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1], what
    return [0, 0, image.width, image.height], "blank"


def answer_for(
    image: Any, budget: PixelBudget, grammar: str | Grammar | None = None
) -> tuple[str, tuple[int, int]]:
    """The completion for an image in a grammar, with its box in the budget-resized pixels."""
    from PIL import Image

    size = budget.resized_wh(image.width, image.height)
    seen = image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)
    box, what = find_box(seen)
    caption = f"a {seen.width}x{seen.height} picture with a {what} region"
    thinking = f"the region at {box} is {what}"
    return format_completion(caption, [box], what, grammar, thinking=thinking), seen.size


def grammar_asked(messages: list[dict[str, Any]]) -> Grammar:
    """The grammar whose system prompt the request carries (satori when none matches)."""
    from satori_cli.prompts import load_prompt

    system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
    if isinstance(system, list):
        system = " ".join(p.get("text", "") for p in system if isinstance(p, dict))
    for grammar in GRAMMARS.values():
        if isinstance(system, str) and system.strip() == load_prompt("system", grammar=grammar):
            return grammar
    return get_grammar(None)


class BadRequest(Exception):
    pass


def _has_image(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") == "image_url"
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def _decode_image(messages: list[dict[str, Any]]) -> Any:
    from PIL import Image

    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                if not url.startswith("data:") or ";base64," not in url:
                    raise BadRequest("only base64 data URLs are supported")
                try:
                    data = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
                    return Image.open(io.BytesIO(data)).convert("RGB")
                except (binascii.Error, OSError) as exc:
                    raise BadRequest(f"cannot decode the image: {exc}") from exc
    raise BadRequest("the request has no image")


def make_app(
    budget: PixelBudget | None = None,
    api_key: str | None = None,
    delay: float = 0.0,
    answer: Callable[[dict[str, Any]], str] | None = None,
):
    """The FastAPI app. `delay` seconds pass before the answer (or its first chunk): a slow model.

    `answer(request_body) -> completion text` replaces the default answer (a box around the
    image's red or dark region), for tests that need a particular reply, and then text-only
    chats are accepted too (as an LLM judge receives them); every request body is kept in
    `app.state.requests`.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    budget = budget or PixelBudget.from_env()
    app = FastAPI(title="satori fake server")
    app.state.last_request = None
    app.state.requests = []

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1"):
            got = request.headers.get("authorization", "")
            if not (got.startswith("Bearer ") and secrets.compare_digest(got[7:], api_key)):
                return error(401, "invalid API key")
        return await call_next(request)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": SERVED_MODEL_NAME, "object": "model", "owned_by": "satori"}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        if body.get("model") != SERVED_MODEL_NAME:
            return error(404, f"model {body.get('model')!r} does not exist")
        messages = body.get("messages") or []
        text_only = answer is not None and not _has_image(messages)
        try:  # an `answer` hook may take text-only chats (an LLM judge's prompts)
            image = None if text_only else _decode_image(messages)
        except BadRequest as exc:
            return error(400, str(exc))
        app.state.requests.append(body)
        asked = grammar_asked(messages)
        text, seen = answer_for(image, budget, asked) if image is not None else ("", None)
        if answer is not None:
            text = answer(body)
        app.state.last_request = {
            "received_size": list(image.size) if image is not None else None,
            "model_input_size": list(seen) if seen is not None else None,
            "mm_processor_kwargs": body.get("mm_processor_kwargs"),
            "temperature": body.get("temperature"),
            "max_tokens": body.get("max_tokens"),
        }
        text = text[: max(1, 8 * int(body.get("max_tokens") or 512))]
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.get("stream"):
            if delay:
                await asyncio.sleep(delay)
            return {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": SERVED_MODEL_NAME,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": len(text), "total_tokens": len(text) + 1},
            }
        pieces = [text[i : i + 8] for i in range(0, len(text), 8)]

        async def events():
            if delay:  # a slow model: nothing arrives until the first token
                await asyncio.sleep(delay)
            for i, piece in enumerate(pieces):
                delta = {"content": piece} if i else {"role": "assistant", "content": piece}
                chunk = {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": SERVED_MODEL_NAME,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
                await asyncio.sleep(0.005)
            end = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": SERVED_MODEL_NAME,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield f"data: {json.dumps(end)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/fake/last")
    async def last() -> dict[str, Any]:
        return app.state.last_request or {}

    return app


class FakeServer:
    """The fake server in a background thread on a free loopback port (a context manager)."""

    def __init__(
        self,
        api_key: str | None = None,
        delay: float = 0.0,
        budget: PixelBudget | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        answer: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        import uvicorn

        self.app = make_app(budget, api_key, delay, answer)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat request body received so far."""
        return self.app.state.requests

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def start(self) -> "FakeServer":
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

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--delay", type=float, default=float(os.environ.get("SATORI_FAKE_DELAY", "0")))
    args = parser.parse_args(argv)
    app = make_app(PixelBudget.from_env(), os.environ.get("SATORI_FAKE_API_KEY") or None, args.delay)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
