"""The tiny model with the real Qwen2.5-VL-3B-Instruct processor and generation files, and a wide-image TSV.

The real checkpoint's `preprocessor_config.json` carries min_pixels 3136 / max_pixels
12845056 (and no `size`, no `processor_config.json`); its `generation_config.json` asks for
sampling with top_k 1 and repetition_penalty 1.05. Those are the fields that made evaluation
differ from the paper; a copy with them in place arms the same traps as the real model,
whatever the tiny model's own files say.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from pathlib import Path

REAL_PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}
REAL_SAMPLING = {"do_sample": True, "temperature": 0.1, "top_p": 0.001, "top_k": 1}
REAL_SAMPLING["repetition_penalty"] = 1.05


def real_style_copy(tiny: Path, dst: Path) -> Path:
    """Copy the tiny model and give it the real checkpoint's processor and generation fields."""
    shutil.copytree(tiny, dst)
    processor_config = dst / "processor_config.json"
    if processor_config.is_file():  # transformers 5 nests the image processor here; the real model does not
        nested = json.loads(processor_config.read_text())
        nested.pop("image_processor", None)
        rest = set(nested) - {"processor_class"}
        if rest:
            processor_config.write_text(json.dumps(nested, indent=2))
        else:
            processor_config.unlink()
    (dst / "preprocessor_config.json").write_text(json.dumps(REAL_PREPROCESSOR, indent=2))
    generation = dst / "generation_config.json"
    config = json.loads(generation.read_text()) if generation.is_file() else {}
    generation.write_text(json.dumps(config | REAL_SAMPLING, indent=2))
    return dst


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
