"""What the GPU-path eval tests need beside the tiny model: the real checkpoint's sampling fields
and a wide-image TSV.

The tiny model carries the real Qwen2.5-VL-3B-Instruct `preprocessor_config.json` (min_pixels
3136 / max_pixels 12845056) and `generation_config.json` (sampling, repetition_penalty 1.05): the
fields that made evaluation differ from the paper, so the real checkpoint's traps are armed on it.
"""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

# The sampling fields of the real checkpoint's generation_config.json (the tiny model ships that
# file verbatim; tests/test_tiny_model.py pins it): the fields evaluation must never inherit.
REAL_SAMPLING = {"do_sample": True, "temperature": 1e-06, "repetition_penalty": 1.05}


def write_wide_bench(path: Path, size: tuple[int, int] = (1920, 1080)) -> Path:
    """Two MCQ rows, each a plain-colour image of `size` (width, height), in VLMEvalKit's TSV format."""
    from PIL import Image

    rows = []
    for index, (rgb, answer) in enumerate([((255, 0, 0), "A"), ((0, 0, 255), "C")]):
        buf = io.BytesIO()
        Image.new("RGB", size, rgb).save(buf, format="PNG")
        rows.append(
            {
                "index": index,
                "question": "What colour is this image?",
                "A": "red",
                "B": "green",
                "C": "blue",
                "D": "black",
                "answer": answer,
                "image": base64.b64encode(buf.getvalue()).decode("ascii"),
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path
