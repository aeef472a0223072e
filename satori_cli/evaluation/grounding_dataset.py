"""The grounding benchmark as a VLMEvalKit dataset class (imported only inside evaluation workers).

Registered at run time (`worker.register_grounding`): VLMEvalKit's `build_dataset` walks
`vlmeval.dataset.DATASET_CLASSES` and asks each class for its `supported_datasets()`, so
putting this class first makes the names of the spec's prepared JSONLs real benchmarks. Then
inference runs exactly as for MMBench (torchrun ranks, the vLLM look-ahead, API threads,
prediction files, status.json), and `evaluate` scores the kept raw outputs with the training
rewards (`grounding.score`) instead of an option matcher.

`evaluate` (rank 0) writes next to VLMEvalKit's prediction file:
- `<model>_<bench>_grounding.jsonl`: one line per row: its line number, id, source, the raw
  output, the extracted answer, the predicted boxes in original pixels and each score;
- `<model>_<bench>_acc.csv`: the metrics, in the one-row form `results.read_acc_csv` reads.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from vlmeval.dataset.image_base import ImageBaseDataset

from satori_cli.evaluation import grounding
from satori_cli.pixels import PixelBudget


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


class SatoriGroundingDataset(ImageBaseDataset):
    """Rows of a prepared SATORI JSONL: image + question in, rewards as metrics out."""

    TYPE = "VQA"  # free-form answers; no option letters, no judge
    MODALITY = "IMAGE"
    # benchmark name -> {"path": JSONL, "min_pixels": ..., "max_pixels": ...} (set by the worker)
    SOURCES: ClassVar[dict[str, dict[str, Any]]] = {}
    # the output grammar of the model this launch evaluates (one launch per model; set by the worker)
    GRAMMAR: ClassVar[str | None] = None

    @classmethod
    def supported_datasets(cls) -> list[str]:
        return list(cls.SOURCES)

    def __init__(self, dataset: str, **kwargs: Any) -> None:
        entry = self.SOURCES[dataset]
        self.rows = {r.line: r for r in grounding.read_rows(Path(entry["path"]))}
        self.budget = PixelBudget(entry["min_pixels"], entry["max_pixels"])
        super().__init__(dataset=dataset, skip_noimg=False)

    def load_data(self, dataset: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "index": [r.line for r in self.rows.values()],
                "image_path": [r.image for r in self.rows.values()],
                "question": [r.question for r in self.rows.values()],
                "answer": [json.dumps(r.possible_answers, ensure_ascii=False) for r in self.rows.values()],
                "source": [r.source or "" for r in self.rows.values()],
                "id": [r.id for r in self.rows.values()],
            }
        )

    def build_prompt(self, line: Any) -> list[dict[str, str]]:
        """The image, then the row's question (the model class adds SATORI's prompt and suffix)."""
        if isinstance(line, int):
            line = self.data.iloc[line]
        row = self.rows[int(line["index"])]
        return [{"type": "image", "value": row.image}, {"type": "text", "value": row.question}]

    @classmethod
    def get_judge_file(cls, eval_file: Any, judge_model: Any = None) -> None:
        return None  # scored by the rewards; no judge ever ran

    @classmethod
    def report_primary_metric(cls, metrics: dict[str, Any] | None) -> dict[str, float]:
        """status.json's headline: box_iou (VLMEvalKit's own pick would be the first name with "acc")."""
        value = (metrics or {}).get(grounding.PRIMARY)
        return {grounding.PRIMARY: float(value)} if isinstance(value, (int, float)) else {}

    def evaluate(self, eval_file: str, **judge_kwargs: Any) -> dict[str, float]:
        from vlmeval.smp import load

        data = load(eval_file)
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        rows, outputs = [], []
        for _, pred in frame.iterrows():
            rows.append(self.rows[int(pred["index"])])
            raw = _text(pred.get("extra_records"))  # the raw output; `prediction` is the answer only
            outputs.append(raw if raw is not None else (_text(pred.get("prediction")) or ""))
        scored = grounding.score(rows, outputs, self.budget, self.GRAMMAR)
        stem = Path(eval_file).with_suffix("")  # <model>_<bench>, as VLMEvalKit names its files
        with open(f"{stem}_grounding.jsonl", "w", encoding="utf-8") as fh:
            for item in scored:
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
        metrics = grounding.metrics(scored)
        with open(f"{stem}_acc.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["split", *metrics])
            writer.writerow(["none", *metrics.values()])
        return metrics
