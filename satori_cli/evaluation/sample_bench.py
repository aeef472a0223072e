"""A small MMBench-style TSV (VLMEvalKit's format) to try `satori eval` offline, and for its tests."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

from PIL import Image

COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255)}
OPTIONS = ["red", "green", "blue", "black"]


def png_b64(rgb: tuple[int, int, int], size: int = 32) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_tiny_bench(path: Path, overwrite: bool = False) -> Path:
    """8 rows: 4 questions in 3 categories, each asked twice with the options rotated.

    Rotations share `index % 1_000_000`, as in MMBench, so VLMEvalKit scores them circularly
    when the benchmark's name contains "mmbench"; here the name is free. An existing file is
    replaced only when satori wrote it or with `overwrite`, and never when it is a link or a
    special file (the TSV is written beside it and renamed into place).
    """
    from satori_cli import outputs

    path = Path(path).expanduser()
    outputs.ensure_dir(path.parent)
    outputs.check_target(path, overwrite)
    outputs.clean_stale(path.parent)
    rows = []
    questions = [
        ("red", "colour", "perception"),
        ("green", "colour", "perception"),
        ("blue", "hue", "reasoning"),
        ("red", "shade", "reasoning"),
    ]
    for q, (colour, category, l2) in enumerate(questions):
        for rotation in range(2):
            opts = OPTIONS[rotation:] + OPTIONS[:rotation]
            rows.append(
                {
                    "index": q + rotation * 1_000_000,
                    "question": "What colour is this image?",
                    "hint": "",
                    "A": opts[0],
                    "B": opts[1],
                    "C": opts[2],
                    "D": opts[3],
                    "answer": "ABCD"[opts.index(colour)],
                    "category": category,
                    "l2-category": l2,
                    "image": png_b64(COLOURS[colour]),
                }
            )
    with outputs.atomic_file(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path
