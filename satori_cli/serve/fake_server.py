"""`satori serve --backend fake`: an OpenAI-compatible server with canned SATORI answers, no model.

For trying the demo and the client on any machine. It answers in the output grammar whose
system prompt a request carries (`satori` otherwise), so the demo and `predict` in any
`--grammar` get answers they can read. It behaves like vLLM where it matters to a
client: `/health` (open even with an API key), `/v1/models`, `/v1/chat/completions` with and
without streaming (SSE), Bearer API keys on `/v1/*`, 400 with a message for a bad request,
and the Qwen2.5-VL coordinate convention: it resizes the image with the pixel budget (the
identity when the client pre-resized it, as ours does) and answers with the box of the
reddest region *in those resized pixels*, so a client that maps boxes back wrongly draws them
in the wrong place.

Run it alone with `python -m satori_cli.serve.fake_server --port 8000`.
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
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from satori_cli.decoding import prepare_image
from satori_cli.errors import SatoriError
from satori_cli.grammar import GRAMMARS, Grammar, format_completion, get_grammar
from satori_cli.pixels import PixelBudget
from satori_cli.serve.client import CANNED_OWNER, MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES, SERVED_MODEL_NAME

MAX_REQUEST_BYTES = 2 * MAX_UPLOAD_BYTES  # one base64 image (4/3 of its bytes) and the text
MAX_TOKENS_LIMIT = 32768


class ImageURL(BaseModel):
    url: str


class Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None
    image_url: ImageURL | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[Part] | None = None


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat request this server reads; others are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(None, ge=0, le=2)


class BadRequest(Exception):
    """A request this server refuses with 400 and the message."""


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


def grammar_asked(body: dict[str, Any]) -> Grammar:
    """The grammar whose system prompt a request (as sent) carries; satori when none matches."""
    from satori_cli.grammar import load_prompt

    messages = body.get("messages") if isinstance(body, dict) else None
    system = next(
        (m.get("content") for m in messages or () if isinstance(m, dict) and m.get("role") == "system"), None
    )
    if isinstance(system, list):
        system = " ".join(str(p.get("text") or "") for p in system if isinstance(p, dict))
    if isinstance(system, str):
        for grammar in GRAMMARS.values():
            if system.strip() == load_prompt("system", grammar=grammar):
                return grammar
    return get_grammar(None)


def decode_image(request: ChatRequest) -> Any:
    """The first image of the chat (a base64 data URL), checked like an upload; None if there is none."""
    from PIL import Image

    for message in request.messages:
        for part in message.content if isinstance(message.content, list) else ():
            if part.type != "image_url":
                continue
            url = part.image_url.url if part.image_url else ""
            if not url.startswith("data:") or ";base64," not in url:
                raise BadRequest("only base64 data URLs are supported")
            encoded = url.split(";base64,", 1)[1]
            if len(encoded) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
                raise BadRequest(f"the image is larger than {MAX_UPLOAD_BYTES >> 20} MB")
            try:
                with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as img:
                    if img.width * img.height > MAX_IMAGE_PIXELS:
                        raise BadRequest(f"the image has more than {MAX_IMAGE_PIXELS:,} pixels")
                    return img.convert("RGB")
            except Image.DecompressionBombError:
                raise BadRequest(f"the image has more than {MAX_IMAGE_PIXELS:,} pixels") from None
            except (binascii.Error, OSError, ValueError) as exc:
                raise BadRequest(f"cannot decode the image: {exc}") from None
    return None


class CannedModel:
    """What the fake backend answers: a box around the image's red (else dark) region."""

    image_required = True

    def __init__(self, budget: PixelBudget | None = None) -> None:
        self.budget = budget or PixelBudget.from_env()

    def reply(self, body: dict[str, Any], image: Any) -> str:
        """The completion for a validated request (`body` as sent) and its decoded image, in the
        grammar the request asks for, with its box in the budget-resized pixels."""
        try:
            seen = prepare_image(image, self.budget).resized
        except SatoriError as exc:  # e.g. an aspect ratio over 200
            raise BadRequest(exc.message) from None
        box, what = find_box(seen)
        caption = f"a {seen.width}x{seen.height} picture with a {what} region"
        thinking = f"the region at {box} is {what}"
        return format_completion(caption, [box], what, grammar_asked(body), thinking=thinking)


def _validation_message(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "json_invalid":
        return f"the body is not valid JSON: {error['msg']}"
    return f"{where or 'the body'}: {error['msg']}"


def _as_sent(raw: bytes) -> dict[str, Any]:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise BadRequest(f"the body cannot be read: {str(exc)[:100]}") from None


def make_app(model: CannedModel | None = None, api_key: str | None = None):
    """The FastAPI app serving `model` (the canned answers by default)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.requests import ClientDisconnect

    model = model or CannedModel()
    app = FastAPI(title="satori fake server")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1"):
            got = request.headers.get("authorization", "")
            if not (got.startswith("Bearer ") and secrets.compare_digest(got[7:].encode(), api_key.encode())):
                return error(401, "invalid API key")
        return await call_next(request)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": SERVED_MODEL_NAME, "object": "model", "owned_by": CANNED_OWNER}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        raw = bytearray()
        try:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_REQUEST_BYTES:
                    return error(413, f"the request is larger than {MAX_REQUEST_BYTES >> 20} MB")
        except ClientDisconnect:  # the client gave up (its timeout): nobody to answer
            return Response(status_code=499)
        try:
            parsed = ChatRequest.model_validate_json(bytes(raw))
        except ValidationError as exc:
            return error(400, _validation_message(exc))
        if parsed.model != SERVED_MODEL_NAME:
            return error(404, f"model {parsed.model!r} does not exist")
        try:
            image = await asyncio.to_thread(decode_image, parsed)
            if image is None and model.image_required:
                raise BadRequest("the request has no image")
            text = await asyncio.to_thread(model.reply, _as_sent(raw), image)
        except BadRequest as exc:
            return error(400, str(exc))
        text = text[: max(1, 8 * (parsed.max_tokens or 512))]
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": SERVED_MODEL_NAME}
        if not parsed.stream:
            return {
                **head,
                "object": "chat.completion",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": len(text), "total_tokens": len(text) + 1},
            }

        def chunk(delta: dict[str, str], finish: str | None = None) -> str:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
            return f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': choices})}\n\n"

        async def events():
            for i in range(0, len(text), 8):  # a few characters at a time, like tokens
                yield chunk({"content": text[i : i + 8]} if i else {"role": "assistant", "content": text[:8]})
                await asyncio.sleep(0.005)
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    app = make_app(CannedModel(PixelBudget.from_env()), os.environ.get("SATORI_FAKE_API_KEY") or None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
