"""What each evaluation process really used, written beside VLMEvalKit's files in `<work_dir>/<model>/`.

- `satori_runtime.jsonl`: one line per process: backend, device, the pixel budget the loaded
  processor resolved, and the decoding settings handed to the engine.
- `<model>_<benchmark>_inputs.jsonl`: one line per image: its original size, the size the
  model received and the number of visual tokens, with `source` saying how that size is known
  (the processor's `image_grid_thw`; for vLLM, its visual token count matching the budget's; for
  an API server, the size satori resized the image to before sending it).

`summary.json` reports from these files, so it says what ran, not what was asked for.
Lines are appended whole (O_APPEND), so several ranks can share a file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from satori_cli.train.runlogs import json_objects

RUNTIME_FILE = "satori_runtime.jsonl"


def inputs_file(record_dir: Path, dataset: str) -> Path:
    return record_dir / f"{record_dir.name}_{dataset}_inputs.jsonl"


def append(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def runtime(record_dir: Path) -> dict[str, Any] | None:
    """The processes of one model's run, merged: shared settings once, devices per rank."""
    rows = list(json_objects(record_dir / RUNTIME_FILE))
    if not rows:
        return None
    merged = {k: v for k, v in rows[-1].items() if k not in ("rank", "pid", "device", "visible_devices")}
    by_rank = {int(r.get("rank", 0)): r for r in rows}  # the latest line of each rank
    merged["devices"] = {str(k): by_rank[k].get("device") for k in sorted(by_rank)}
    merged["pids"] = sorted({r["pid"] for r in rows if "pid" in r})
    visible = {str(k): by_rank[k].get("visible_devices") for k in sorted(by_rank)}
    if any(visible.values()):
        merged["visible_devices"] = visible
    keys = ("min_pixels", "max_pixels", "decoding")
    differ = [k for k in keys if len({json.dumps(r.get(k), sort_keys=True) for r in rows}) > 1]
    if differ:
        merged["inconsistent"] = differ
    return merged


def input_sizes(path: Path) -> dict[str, Any] | None:
    """How many images were recorded and at which model-input sizes (`WxH`: count)."""
    rows = list(json_objects(path))
    if not rows:
        return None
    sizes = Counter("x".join(str(v) for v in r["input_wh"]) for r in rows if r.get("input_wh"))
    return {"file": str(path), "images": len(rows), "input_wh": dict(sizes.most_common())}
