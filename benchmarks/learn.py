"""`make learn`: satori trains a model that gets better, on a 2-core CPU, in under 15 minutes.

The recipe, end to end, through the CLI a user runs:
  1. `satori tiny-model --hidden-size H --layers L`: a miniature Qwen2.5-VL (the real files,
     Qwen2's BPE, random weights) large enough to learn;
  2. `satori data sample` + `prepare`: the synthetic VQA-Verify-shaped set (seed 0) and
     held-out rows from another seed;
  3. `satori train --preset learn --stage sft`: cold-start SFT on gold SATORI completions;
  4. `satori train --preset learn --model SFT_RUN`: GRPO with the four rewards from the SFT
     run folder (its last checkpoint, its pixel budget);
  5. greedy completions on the held-out rows after each stage (`swift infer`, the training
     template, system prompt and budget), scored by `satori rewards score`; `satori report`.

Targets (issue #14), on the held-out rows: format >= 0.9, box IoU >= 0.3, answer >= 0.5, GRPO's
total reward not below SFT's, and the whole recipe under 15 minutes on 2 cores. The figures,
minutes and the machine's load are printed and written to OUT/learn.json; exit 0 when every
target is met, 1 otherwise.

    python benchmarks/learn.py [--out outputs/learn]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from satori_cli.cmdline import Command, find_program, flag_args, run  # noqa: E402
from satori_cli.pixels import PixelBudget  # noqa: E402
from satori_cli.prompts import prompt_path  # noqa: E402
from satori_cli import models  # noqa: E402

HIDDEN, LAYERS = 96, 4  # the miniature: ~15M parameters, most of them the 151,680-token embedding
TRAIN_ROWS, HELDOUT_ROWS = 1024, 64
TRAIN_SEED, HELDOUT_SEED = 0, 1
MAX_NEW_TOKENS = 128  # a gold completion is about 60 tokens
REWARDS = {
    "external_format": "format",
    "external_bbox_acc": "box_iou",
    "extern_vqa_acc": "answer",
    "external_caption_acc": "caption",
}
COLUMNS = ("bboxs", "width", "height", "possible_answers", "image_caption")
TARGETS = {"format": 0.9, "box_iou": 0.3, "answer": 0.5}
MINUTES = 15


def satori(*args: str) -> None:
    """Run the CLI as a user does; stop on failure."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run([sys.executable, "-m", "satori_cli", *args], env=env, check=False)
    if done.returncode:
        raise SystemExit(f"satori {' '.join(args)} failed with exit code {done.returncode}")


def load() -> str:
    """The machine's load averages (1, 5, 15 minutes) and cores, for the record."""
    return f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"


def greedy_completions(model: Path, budget: PixelBudget, rows_path: Path, out: Path) -> list[str]:
    """Greedy completions of `model` for the prepared rows, in order, through `swift infer` with the
    training template, the system prompt and `budget` (the frame the model answers in)."""
    out.unlink(missing_ok=True)
    args = {
        "model": str(model),
        "model_type": "qwen2_5_vl",
        "template": "qwen2_5_vl",
        "val_dataset": [str(rows_path)],
        "system": str(prompt_path("system")),
        "temperature": 0,
        "max_new_tokens": MAX_NEW_TOKENS,
        "max_batch_size": 16,
        "result_path": str(out),
    }
    swift = find_program("swift", "install the training extra")
    command = Command([swift, "infer", *flag_args(args)], {**budget.env(), "CUDA_VISIBLE_DEVICES": ""})
    if run(command, log_path=out.with_suffix(".log")) != 0:
        raise SystemExit(f"swift infer failed; see {out.with_suffix('.log')}")
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    results = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    if len(results) != len(rows):
        raise SystemExit(f"swift infer answered {len(results)} of {len(rows)} rows")
    for row, result in zip(rows, results, strict=True):  # same order: same question, same image
        asked = [m["content"] for m in result["messages"] if m["role"] == "user"]
        if asked != [m["content"] for m in row["messages"] if m["role"] == "user"]:
            raise SystemExit(f"swift infer's results are not in the order of {rows_path}")
    return [r["response"] for r in results]


def measure(model: Path, budget: PixelBudget, rows_path: Path, folder: Path) -> dict[str, float]:
    """Mean of each reward over the held-out rows, greedy, scored by `satori rewards score`."""
    folder.mkdir(parents=True, exist_ok=True)
    completions = greedy_completions(model, budget, rows_path, folder / "infer.jsonl")
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    joined = folder / "completions.jsonl"
    with open(joined, "w", encoding="utf-8") as fh:
        for row, completion in zip(rows, completions, strict=True):
            fh.write(json.dumps({"id": row["id"], "completion": completion, **{c: row[c] for c in COLUMNS}}))
            fh.write("\n")
    scores = folder / "scores.jsonl"
    satori(
        "rewards", "score", str(joined), "--out", str(scores), "--overwrite",
        "--min-pixels", str(budget.min_pixels), "--max-pixels", str(budget.max_pixels),
    )  # fmt: skip
    lines = [json.loads(line) for line in scores.read_text().splitlines() if line.strip()]
    means = {short: sum(s[name] or 0.0 for s in lines) / len(lines) for name, short in REWARDS.items()}
    means["total"] = sum(means[short] for short in REWARDS.values())
    return means


def run_measurement(run_dir: Path, rows_path: Path, folder: Path) -> dict[str, float]:
    """A run folder is a model: its last checkpoint, in its own pixel budget."""
    model = models.resolve(str(run_dir))
    return measure(Path(model.path), model.budget, rows_path, folder)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "learn")
    parser.add_argument("--hidden-size", type=int, default=HIDDEN)
    parser.add_argument("--layers", type=int, default=LAYERS)
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"machine": {"cores": os.cpu_count(), "load_before": load()}, "minutes": {}}
    clock = time.monotonic()

    def phase(name: str, start: float) -> None:
        record["minutes"][name] = round((time.monotonic() - start) / 60, 2)
        print(f"--- {name}: {record['minutes'][name]:.2f} min (load {load()})", flush=True)

    start = time.monotonic()
    model = out / "model"
    satori(
        "tiny-model",
        "--hidden-size",
        str(args.hidden_size),
        "--layers",
        str(args.layers),
        "--out",
        str(model),
    )
    satori("data", "sample", "--out", str(out / "raw"), "--n", str(TRAIN_ROWS), "--seed", str(TRAIN_SEED))
    satori("data", "prepare", str(out / "raw" / "data.jsonl"), "--out", str(out / "data"))
    held = ("--n", str(HELDOUT_ROWS), "--seed", str(HELDOUT_SEED))
    satori("data", "sample", "--out", str(out / "heldout-raw"), *held)
    satori("data", "prepare", str(out / "heldout-raw" / "data.jsonl"), "--out", str(out / "heldout"))
    phase("model and data", start)

    train, heldout = out / "data" / "train.jsonl", out / "heldout" / "train.jsonl"
    start = time.monotonic()
    satori(
        "train",
        "--preset",
        "learn",
        "--stage",
        "sft",
        "--model",
        str(model),
        "--data",
        str(train),
        "-o",
        str(out / "sft"),
    )
    phase("sft", start)
    start = time.monotonic()
    record["sft"] = run_measurement(out / "sft", heldout, out / "eval-sft")
    phase("held-out after sft", start)
    start = time.monotonic()
    satori(
        "train",
        "--preset",
        "learn",
        "--model",
        str(out / "sft"),
        "--data",
        str(train),
        "-o",
        str(out / "grpo"),
    )
    phase("grpo", start)
    start = time.monotonic()
    record["grpo"] = run_measurement(out / "grpo", heldout, out / "eval-grpo")
    phase("held-out after grpo", start)
    record["minutes"]["total"] = round((time.monotonic() - clock) / 60, 2)
    record["machine"]["load_after"] = load()
    satori("report", str(out / "sft"))
    satori("report", str(out / "grpo"))

    missed = [f"{k} {record['grpo'][k]:.3f} < {v}" for k, v in TARGETS.items() if record["grpo"][k] < v]
    if record["grpo"]["total"] < record["sft"]["total"]:
        missed.append(f"GRPO total {record['grpo']['total']:.3f} < SFT total {record['sft']['total']:.3f}")
    if record["minutes"]["total"] > MINUTES:
        missed.append(f"{record['minutes']['total']:.1f} min > {MINUTES} min")
    record["missed"] = missed
    (out / "learn.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n| held-out (greedy) | format | box IoU | answer | caption | total |\n|---|---|---|---|---|---|")
    for stage in ("sft", "grpo"):
        m = record[stage]
        print(f"| after {stage.upper()} | {m['format']:.2f} | {m['box_iou']:.2f} | {m['answer']:.2f} "
              f"| {m['caption']:.2f} | {m['total']:.2f} |")  # fmt: skip
    print(f"\nminutes: {record['minutes']}; load {record['machine']}")
    print(f"plots: {out / 'grpo' / 'report'}; record: {out / 'learn.json'}")
    print("targets met" if not missed else "targets missed: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
