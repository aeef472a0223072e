"""Read what VLMEvalKit wrote and decide, honestly, whether the evaluation worked.

VLMEvalKit exits 0 even when a benchmark failed, was skipped, or its data could not be
fetched. The truth is in `<work_dir>/<model>/status.json` and `<model>_<data>_acc.csv`; this
module reads them, writes `summary.json` / `summary.csv`, and lists every failure.

`summary.json` also says what ran, not what was asked for, from what each evaluation process
recorded (`evaluation/model.py`) beside VLMEvalKit's files in `<work_dir>/<model>/`:

- `satori_runtime.jsonl`: one line per process: backend, device, the pixel budget the loaded
  processor resolved, and the decoding settings handed to the engine.
- `<model>_<benchmark>_inputs.jsonl`: one line per image: its original size, the size the
  model received and the number of visual tokens, with `source` saying how that size is known
  (the processor's `image_grid_thw`; for vLLM, its visual token count matching the budget's; for
  an API server, the size satori resized the image to before sending it).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from satori_cli.errors import SatoriError
from satori_cli.evaluation.judge import EXACT, verdict
from satori_cli.evaluation.plan import Benchmark
from satori_cli.train.runlogs import json_objects

RUNTIME_FILE = "satori_runtime.jsonl"
GROUNDING_SCORER = "satori rewards"  # who scores a grounding benchmark (no option matching)
_SKIP_REASONS = {
    "invalid_dataset": "VLMEvalKit could not load it",
    "mmbench_evaluation_requires_official_server": "no public answers (official server only)",
    "evaluate_returned_none": "the evaluation returned nothing",
}


@dataclass
class Outcome:
    """One model on one benchmark: its metrics, or why there are none."""

    model: str
    benchmark: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    predictions: str | None = None
    failed_items: int = 0
    items: int = 0
    judge: str | None = None  # who actually mapped answers to options (None: nothing scored)
    unreadable_items: int = 0  # items the LLM judge could not map (scored as wrong)
    inputs: dict[str, Any] | None = None  # image sizes the model received (input_sizes)
    primary: str = "Overall"  # the metric that must be there (`box_iou` for a grounding benchmark)
    per_row: str | None = None  # grounding: the JSONL of each row's output and scores

    @property
    def ok(self) -> bool:
        return self.error is None and self.primary in self.metrics


# -- what the processes recorded ------------------------------------------------------------
def inputs_file(record_dir: Path, dataset: str) -> Path:
    return record_dir / f"{record_dir.name}_{dataset}_inputs.jsonl"


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


def read_acc_csv(path: Path) -> dict[str, float]:
    """`split,Overall,cat1,...` -> metrics of the first split (`none` for custom TSVs)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    row = next((r for r in rows if r.get("split") in ("none", "dev")), rows[0])
    metrics: dict[str, float] = {}
    for key, value in row.items():
        if key == "split" or key is None:
            continue
        try:
            metrics[key] = float(value)
        except (TypeError, ValueError):
            continue
    return metrics


def _count_failures(pred_file: Path) -> tuple[int, int]:
    """(failed, total) predictions: items where the model never answered (API errors).

    A predictions file that cannot be read raises a one-line SatoriError naming it: the counts
    decide whether a benchmark failed, so they are never guessed.
    """
    try:
        import pandas as pd

        data = pd.read_excel(pred_file) if pred_file.suffix == ".xlsx" else pd.read_csv(pred_file, sep="\t")
    except Exception as exc:  # pandas and its engines raise many types for a broken file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise SatoriError(f"cannot read the predictions {pred_file}: {reason}", exit_code=1) from exc
    if "prediction" not in data:
        raise SatoriError(f"the predictions {pred_file} have no 'prediction' column", exit_code=1)
    failed = sum("Failed to obtain answer" in str(p) for p in data["prediction"])
    return failed, len(data)


def unknown_message(bench: Benchmark) -> str:
    """One line for a name VLMEvalKit does not know and no TSV provides."""
    return (
        f"'{bench.name}' is not a VLMEvalKit benchmark and there is no {bench.tsv}; "
        f"place a VLMEvalKit-format TSV there or pass its path to --data"
    )


def missing_message(bench: Benchmark) -> str:
    """One line saying which file to place, for a benchmark whose TSV could not be had."""
    return (
        f"{bench.name}: {bench.tsv} is missing and could not be downloaded; "
        f"place the official VLMEvalKit TSV '{bench.name}.tsv' in {bench.tsv.parent}"
    )


def collect(work_dir: Path, model: str, bench: Benchmark, judge: str = EXACT) -> Outcome:
    out = Outcome(model=model, benchmark=bench.name, primary=bench.primary)
    out.inputs = input_sizes(inputs_file(work_dir / model, bench.name))
    status_file = work_dir / model / "status.json"
    try:
        status = json.loads(status_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        out.error = f"no status from VLMEvalKit ({status_file} missing): the run crashed before it started"
        return out
    entry = (status.get("datasets") or {}).get(bench.name)
    if not entry:
        out.error = "VLMEvalKit never reached this benchmark"
        return out
    pred = work_dir / model / f"{model}_{bench.name}.xlsx"
    if pred.is_file():
        out.predictions = str(pred)
        try:
            out.failed_items, out.items = _count_failures(pred)
        except SatoriError as exc:
            out.error = exc.message
            return out
    if entry.get("error_message"):
        message = str(entry["error_message"]).strip().splitlines()[0][:300]
        out.error = missing_message(bench) if not bench.present else f"failed: {message}"
        return out
    if entry.get("skip_reason"):
        reason = entry["skip_reason"]
        if reason == "invalid_dataset" and not bench.present:
            out.error = unknown_message(bench)
        else:
            out.error = f"skipped: {_SKIP_REASONS.get(reason, reason)}"
        return out
    acc = work_dir / model / f"{model}_{bench.name}_acc.csv"
    if acc.is_file():
        out.metrics = read_acc_csv(acc)
    elif entry.get("metrics"):
        out.metrics = {
            k.split("|")[-1]: float(v) for k, v in entry["metrics"].items() if isinstance(v, (int, float))
        }
    if entry.get("status") != "done":
        out.error = f"unfinished (status: {entry.get('status')})"
    elif out.primary not in out.metrics:
        out.error = f"no {out.primary} score in VLMEvalKit's results"
    elif out.items and out.failed_items == out.items:
        out.error = f"every one of the {out.items} items failed to get an answer"
    if bench.grounding:
        rows = work_dir / model / f"{model}_{bench.name}_grounding.jsonl"
        out.per_row = str(rows) if rows.is_file() else None
        out.judge = GROUNDING_SCORER if out.metrics else None
        return out
    if out.metrics:
        scored = verdict(work_dir / model, model, bench.name, judge)
        out.judge, out.unreadable_items = scored.used, scored.guessed
        out.error = out.error or scored.error
    return out


def write_summary(work_dir: Path, outcomes: list[Outcome], settings: dict[str, Any]) -> tuple[Path, Path]:
    """`summary.json` (everything) and `summary.csv` (benchmark, metric, one column per model, delta)."""
    models = list(dict.fromkeys(o.model for o in outcomes))
    summary = {
        "settings": settings,
        "ok": all(o.ok for o in outcomes),
        "results": [
            {
                "model": o.model,
                "benchmark": o.benchmark,
                "ok": o.ok,
                "error": o.error,
                "metrics": o.metrics,
                "predictions": o.predictions,
                "failed_items": o.failed_items,
                "items": o.items,
                "judge": o.judge,
                "unreadable_items": o.unreadable_items,
                "inputs": o.inputs,
                "per_row": o.per_row,
            }
            for o in outcomes
        ],
    }
    json_path = work_dir / "summary.json"
    json_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    csv_path = work_dir / "summary.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        header = ["benchmark", "metric", *models]
        if len(models) == 2:
            header.append("delta")
        writer.writerow(header)
        for bench, metric, values in table_rows(outcomes, models):
            row: list[Any] = [bench, metric, *["" if v is None else f"{v:.4f}" for v in values]]
            if len(models) == 2:
                row.append("" if None in values else f"{values[0] - values[1]:+.4f}")
            writer.writerow(row)
    return json_path, csv_path


def table_rows(outcomes: list[Outcome], models: list[str]) -> list[tuple[str, str, list[float | None]]]:
    """(benchmark, metric, [value per model]) with Overall first, then categories in order."""
    rows = []
    for bench in dict.fromkeys(o.benchmark for o in outcomes):
        by_model = {o.model: o for o in outcomes if o.benchmark == bench}
        metrics: list[str] = []
        for m in models:
            if m in by_model:
                metrics.extend(k for k in by_model[m].metrics if k not in metrics)
        metrics.sort(key=lambda k: k != "Overall")  # grounding metrics keep their written order
        for metric in metrics:
            values = [by_model[m].metrics.get(metric) if m in by_model else None for m in models]
            rows.append((bench, metric, values))
    return rows
