"""A loopback OpenAI-compatible server for the `api` backend tests (stdlib only).

It answers like a good SATORI model: it looks at the image's colour, finds the option that
names it in the question, and replies `<caption>..</caption> <bbox>..</bbox> <answer>X</answer>`.
Every request is recorded so tests can check what the client sent.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from satori_cli.grammar import format_completion

NAMES = {(255, 0, 0): "red", (0, 160, 0): "green", (0, 0, 255): "blue"}


def _colour(url: str) -> str:
    raw = base64.b64decode(url.split(",", 1)[1])
    rgb = Image.open(io.BytesIO(raw)).convert("RGB").getpixel((0, 0))
    return min(NAMES.items(), key=lambda kv: sum((a - b) ** 2 for a, b in zip(kv[0], rgb, strict=True)))[1]


def answer_for(body: dict) -> str:
    user = body["messages"][-1]["content"]
    url = next(p["image_url"]["url"] for p in user if p["type"] == "image_url")
    text = " ".join(p["text"] for p in user if p["type"] == "text")
    colour = _colour(url)
    letter = re.search(rf"^([A-Z])\. {colour}$", text, re.M)
    return format_completion(f"a {colour} square", [[0, 0, 28, 28]], letter.group(1) if letter else "?")


class FakeServer:
    def __init__(self, model: str = "satori-fake") -> None:
        self.model = model
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, payload: dict, code: int = 200) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send({"object": "list", "data": [{"id": outer.model, "object": "model"}]})
                else:
                    self._send({"error": "not found"}, 404)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                content = answer_for(body)
                self._send({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
