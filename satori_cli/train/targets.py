"""Gold SATORI completions from prepared rows: the targets of a cold-start SFT.

A prepared row (`satori data prepare`) holds the caption, the accepted answers and the
ground-truth boxes in original-image pixels. The model must answer with boxes in the pixels
of its *resized* input (the frame the bbox reward maps back from), so the gold completion
maps every box through the shared pixel budget (`PixelBudget.to_resized`) and writes it with
the one grammar module (`grammar.format_completion`), with the row's caption and first accepted
answer; in SATORI's grammar:

    <caption>{image_caption}</caption> <bbox>[[x1,y1,x2,y2], ...]</bbox> <answer>{answer}</answer>

(`nocap` drops the caption; grammars with a thinking part have no gold text for it.)

Coordinates are whole pixels, as Qwen2.5-VL writes them: each one is rounded to the nearest
integer (Python's `round`, halves to even), which moves an edge by at most half a pixel of the
resized image. Rounding never leaves the image: the resized sides are whole numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from satori_cli import outputs
from satori_cli.errors import SatoriError
from satori_cli.grammar import Grammar, format_completion, get_grammar
from satori_cli.pixels import PixelBudget


def gold_completion(row: Mapping[str, Any], budget: PixelBudget, grammar: str | Grammar | None = None) -> str:
    """The completion a perfect model gives for a prepared row, boxes in resized-input pixels.

    >>> row = {"image_caption": "A red square.", "possible_answers": ["red"],
    ...        "bboxs": [[10, 20, 110, 120]], "width": 640, "height": 480}
    >>> gold_completion(row, PixelBudget())
    '<caption>A red square.</caption> <bbox>[[10,20,111,119]]</bbox> <answer>red</answer>'
    """
    spec = get_grammar(grammar)
    if spec.thinking_tag:
        raise SatoriError(f"there is no gold <{spec.thinking_tag}> text for the {spec.name} grammar")
    width, height = int(row["width"]), int(row["height"])
    boxes = budget.to_resized(row["bboxs"], width, height)
    whole = [[round(v) for v in box] for box in boxes]
    answers = row["possible_answers"]
    answer = answers if isinstance(answers, str) else answers[0]
    return format_completion(str(row["image_caption"]).strip(), whole, str(answer).strip(), spec)


def sft_row(
    row: Mapping[str, Any], budget: PixelBudget, grammar: str | Grammar | None = None
) -> dict[str, Any]:
    """A prepared GRPO row plus the assistant turn ms-swift's SFT trains on.

    The user turn and images are kept as they are (the same prompt GRPO sees); the reward
    columns stay too, so the same file can be scored.
    """
    messages = [m for m in row["messages"] if m.get("role") != "assistant"]
    gold = gold_completion(row, budget, grammar)
    return {**row, "messages": [*messages, {"role": "assistant", "content": gold}]}


def write_sft_jsonl(src: Path, dest: Path, budget: PixelBudget, grammar: str | Grammar | None = None) -> Path:
    """Write `dest`: every row of the prepared JSONL `src` with its gold assistant turn.

    Written to a partial file renamed into place at the end: a bad row leaves no `dest`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(src, encoding="utf-8") as fin, outputs.atomic_file(dest, remember=False) as fout:
        for number, line in enumerate(fin, 1):
            if not line.strip():
                continue
            try:
                row = sft_row(json.loads(line), budget, grammar)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                raise SatoriError(
                    f"{src} line {number} is not a prepared row ({type(exc).__name__}: {exc})",
                    hint="prepare the data first: satori data prepare SRC --out DIR",
                ) from exc
            fout.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
        if not written:
            raise SatoriError(f"{src} holds no rows")
    return dest
