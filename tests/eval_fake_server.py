"""How the fake OpenAI-compatible server answers in the `api` backend tests.

`satori_cli.serve.fake_server.FakeServer` is the server; this answer makes it behave like a good
SATORI model on `write_tiny_bench`'s questions: it looks at the image's colour, finds the option
that names it in the question, and replies `<caption>..</caption> <bbox>..</bbox> <answer>X</answer>`.
"""

from __future__ import annotations

import base64
import io
import re

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
