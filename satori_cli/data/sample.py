"""A small synthetic set shaped like VQA-Verify: coloured shapes on canvases, with exact boxes.

Each row asks about the shapes (colour, count, kind, left/right), and carries the answer, a
caption of the whole picture and the ground-truth boxes of the shapes the answer is about,
in original-image pixels. The raw form is Visual-CoT-like (`question`, `answer`, `image`,
`bboxs`, `width`, `height`, `dataset`, `split`, `image_caption`), the form `prepare` reads.
Sizes include ones that are not multiples of 28, so the pixel budget matters. Captions and
multi-box answers list the shapes left to right.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

from satori_cli import outputs
from satori_cli.errors import SatoriError

SIZES = ((320, 240), (500, 375), (640, 480), (448, 448))
COLORS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 160, 60), "yellow": (230, 200, 30)}
SHAPES = ("square", "circle", "triangle")
FORMS = ("jsonl", "json", "parquet", "zip", "tar.gz")
NUMBERS = {1: "one", 2: "two", 3: "three"}


def _place(rng: random.Random, width: int, height: int, taken: list[list[float]]) -> list[float]:
    """A box that does not overlap the ones already placed (gives up overlap after 50 tries)."""
    for _ in range(50):
        side = rng.randint(max(16, min(width, height) // 8), max(24, min(width, height) // 3))
        x1, y1 = rng.randint(0, width - side), rng.randint(0, height - side)
        box = [float(x1), float(y1), float(x1 + side), float(y1 + side)]
        if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
            return box
    return box


def _draw(draw, shape: str, box: list[float], rgb: tuple[int, int, int]) -> None:
    # PIL shapes include their last pixel: the drawn area is exactly [x1, x2) x [y1, y2).
    x1, y1, x2, y2 = box[0], box[1], box[2] - 1, box[3] - 1
    if shape == "square":
        draw.rectangle((x1, y1, x2, y2), fill=rgb)
    elif shape == "circle":
        draw.ellipse((x1, y1, x2, y2), fill=rgb)
    else:
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=rgb)


def _phrase(objects: list[tuple[str, str]]) -> str:
    parts = [f"a {color} {shape}" for color, shape in objects]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text[0].upper() + text[1:]


def make_row(index: int, rng: random.Random, size: tuple[int, int] | None = None) -> tuple[dict, bytes]:
    """One raw row and its PNG bytes."""
    from PIL import Image, ImageDraw

    width, height = size or rng.choice(SIZES)
    n = rng.choice((1, 2, 2, 3))
    colors = rng.sample(list(COLORS), n)
    shapes = [rng.choice(SHAPES) for _ in range(n)]
    if n >= 2 and rng.random() < 0.5:
        shapes[1] = shapes[0]  # sometimes two of a kind, for counting questions
    boxes: list[list[float]] = []
    for _ in range(n):
        boxes.append(_place(rng, width, height, boxes))
    # Left to right: the caption and a multi-box answer list the objects in an order the image
    # determines (not the order they were drawn in), so a model can learn to say it.
    order = sorted(range(n), key=lambda j: (boxes[j][0], boxes[j][1]))
    colors, shapes, boxes = ([seq[j] for j in order] for seq in (colors, shapes, boxes))
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for shape, color, box in zip(shapes, colors, boxes, strict=True):
        _draw(draw, shape, box, COLORS[color])
    objects = list(zip(colors, shapes, strict=True))
    caption = f"{_phrase(objects)} on a white background."

    kind = rng.choice(("color", "count", "shape", "left") if n >= 2 else ("color", "count", "shape"))
    i = rng.randrange(n)
    if kind == "color" and shapes.count(shapes[i]) == 1:
        question, answer, gt = f"What color is the {shapes[i]}?", colors[i], [boxes[i]]
    elif kind == "count":
        target = shapes[i]
        idx = [j for j in range(n) if shapes[j] == target]
        count = len(idx)
        question = f"How many {target}s are there?"
        answer, gt = [str(count), NUMBERS[count]], [boxes[j] for j in idx]
    elif kind == "left":
        j = (i + 1) % n
        question = f"Is the {colors[i]} {shapes[i]} to the left of the {colors[j]} {shapes[j]}?"
        left = (boxes[i][0] + boxes[i][2]) < (boxes[j][0] + boxes[j][2])
        answer, gt = ("yes" if left else "no"), [boxes[i], boxes[j]]
    else:
        question, answer, gt = f"What shape is the {colors[i]} object?", shapes[i], [boxes[i]]
    row = {
        "question_id": f"shapes-{index:05d}",
        "question": question,
        "answer": json.dumps(answer) if isinstance(answer, list) else answer,
        "image": f"images/shapes-{index:05d}.png",
        "bboxs": gt,
        "width": width,
        "height": height,
        "dataset": "synthetic-shapes",
        "split": "train",
        "image_caption": caption,
    }
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
    return row, buf.getvalue()


def write_sample(
    out_dir: str | Path,
    n: int = 32,
    seed: int = 0,
    form: str = "jsonl",
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `n` raw rows to `out_dir` and return the path to hand to `prepare`.

    `form`: `jsonl` (data.jsonl + images/*.png, relative paths), `json` (one array),
    `parquet` (images embedded as `{"bytes", "path"}` structs, the Hugging Face layout),
    `zip` / `tar.gz` (the jsonl form in an archive). Deterministic for a seed. Files that
    exist and that satori did not write are replaced only with `overwrite` (checked before
    anything is written); every file appears whole or not at all.
    """
    if form not in FORMS:
        raise SatoriError(f"unknown sample format '{form}'", hint=f"choose one of: {', '.join(FORMS)}")
    out_dir = outputs.ensure_dir(Path(out_dir).expanduser())
    outputs.clean_stale(out_dir)
    rng = random.Random(seed)
    if form == "parquet":
        target = out_dir / "data.parquet"
        outputs.check_target(target, overwrite)
        return _write_parquet(target, (make_row(i, rng, size) for i in range(n)))
    if form in ("zip", "tar.gz"):
        target = out_dir / f"{ARCHIVE_NAME}.{form}"
        outputs.check_target(target, overwrite)
        scratch = outputs.scratch_name(out_dir / "sample")
        try:
            _write_files(scratch / ARCHIVE_NAME, n, rng, size, "jsonl")
            with outputs.atomic_file(target, "wb") as fh:
                _archive(scratch, fh, form)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target
    names = [f"data.{form}"] + [f"images/shapes-{i:05d}.png" for i in range(n)]
    outputs.check_targets([out_dir / name for name in names], overwrite)
    images = outputs.ensure_dir(out_dir / "images")
    outputs.clean_stale(images)
    return _write_files(out_dir, n, rng, size, form)


ARCHIVE_NAME = "vqa-verify-sample"


def _write_files(folder: Path, n: int, rng, size, form: str) -> Path:
    """data.jsonl or data.json plus images/*.png in `folder`; each file written atomically."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows, written = [], []
    for i in range(n):
        row, png = make_row(i, rng, size)
        written.append(folder / row["image"])
        with outputs.atomic_file(written[-1], "wb", remember=False) as fh:
            fh.write(png)
        rows.append(row)
    path = folder / f"data.{form}"
    with outputs.atomic_file(path, remember=False) as fh:
        if form == "json":
            fh.write(json.dumps(rows, indent=1) + "\n")
        else:
            fh.write("".join(json.dumps(r) + "\n" for r in rows))
    outputs.record([*written, path])
    return path


def _archive(folder: Path, fh, form: str) -> None:
    """The sample folder as a zip or tar.gz written to `fh` (members under ARCHIVE_NAME/)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if form == "zip":
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                zf.write(path, path.relative_to(folder).as_posix())
    else:
        with tarfile.open(fileobj=fh, mode="w:gz") as tf:
            for path in files:
                tf.add(path, path.relative_to(folder).as_posix(), recursive=False)


def _write_parquet(path: Path, rows, batch: int = 256) -> Path:
    """Stream rows into parquet in row groups (the benchmark writes 12,000 images this way)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("question_id", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("bboxs", pa.list_(pa.list_(pa.float64()))),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("dataset", pa.string()),
            ("split", pa.string()),
            ("image_caption", pa.string()),
        ]
    )
    with outputs.atomic_file(path, "wb") as fh, pq.ParquetWriter(fh, schema) as writer:
        chunk: list[dict] = []
        for row, png in rows:
            chunk.append({**row, "image": {"bytes": png, "path": row["image"].split("/")[-1]}})
            if len(chunk) == batch:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    return path
