"""How the fake OpenAI-compatible server answers in the `api` backend tests.

`tests.serve_helpers.FakeServer` is the server; this answer makes it behave like a good
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


# Words `can_infer` cannot map to an option of write_tiny_bench (no option text inside them).
SYNONYMS = {"red": "crimson", "green": "emerald", "blue": "sapphire"}


def paraphrase_for(body: dict) -> str:
    """A model that is right but never names an option: exact matching scores it 0."""
    user = body["messages"][-1]["content"]
    url = next(p["image_url"]["url"] for p in user if p["type"] == "image_url")
    return format_completion("a square", [[0, 0, 28, 28]], f"it is {SYNONYMS[_colour(url)]}")


def judge_for(body: dict) -> str:
    """An LLM judge for VLMEvalKit's MCQ matching prompt (multiple_choice.build_prompt).

    The prompt ends with "Example 3: Question: ...? Options: There are several options: A. red
    B. green ... Answer: <prediction> Your output: "; reply with the letter of the option the
    prediction paraphrases, Z when none. Anything else (the `hello` probe) gets a greeting.
    """
    prompt = body["messages"][-1]["content"]
    if "Example 3" not in prompt:
        return "Hello!"
    case = prompt.rsplit("Example 3", 1)[1]
    said = re.search(r"Answer: (.*)\nYour output:", case, re.S).group(1)
    options = dict(re.findall(r"^([A-Z])\. (.+)$", case, re.M))
    for letter, text in options.items():
        if SYNONYMS.get(text.strip(), text.strip()) in said:
            return letter
    return "Z"
