"""Reward speed: completions per second for each SATORI reward and all four, fast vs reference.

One batch of 512 realistic completions (one optimiser step of the paper's recipe: 2 prompts
per step would be 32 completions per device; 512 = 32 prompts x 16 rollouts is a generous
upper bound), scored by `satori_cli.rewards` and by the straightforward reference
implementation (shapely, NLTK `sentence_bleu`, rouge-score) in the same run.

Targets: all four together at least 20x faster than the reference, and format + bbox + vqa
under 20 microseconds per completion. Exit 1 when one is missed.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from rewards_reference import ref_bbox, ref_caption, ref_format, ref_vqa  # noqa: E402

from satori_cli.grammar import format_completion  # noqa: E402
from satori_cli.pixels import PixelBudget  # noqa: E402
from satori_cli.rewards import (  # noqa: E402
    bbox_reward,
    caption_reward,
    format_reward,
    score_all,
    vqa_reward,
)
from satori_cli.rewards.caption_metrics import caption_score  # noqa: E402
from satori_cli.rewards.reward_functions import _parsed, _scale  # noqa: E402

BATCH, PROMPTS = 512, 32
SUBJECTS = ["a bird", "a man", "two dogs", "a red car", "a street sign", "a white plate", "a woman", "a cat"]
VERBS = [
    "perched on",
    "standing next to",
    "sitting on",
    "parked near",
    "holding",
    "lying under",
    "in front of",
]
PLACES = [
    "a branch with green leaves",
    "a wooden table",
    "a busy street",
    "a tall building",
    "the sea",
    "a sofa",
]
EXTRAS = [
    "",
    " with red berries",
    ", surrounded by trees",
    " on a sunny day",
    " and a blue sky in the background",
]


def caption(rng: random.Random) -> str:
    text = (
        f"The image shows {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)}{rng.choice(EXTRAS)}"
    )
    return text + rng.choice([".", ".", ".", ""])


def make_batch(seed: int = 0) -> tuple[list[str], dict[str, list]]:
    """512 completions of 32 prompts: mostly well formed, some broken, as early GRPO produces."""
    rng = random.Random(seed)
    completions: list[str] = []
    cols: dict[str, list] = {k: [] for k in ("bboxs", "width", "height", "possible_answers", "image_caption")}
    for _ in range(PROMPTS):
        w, h = rng.choice([(640, 480), (500, 375), (1024, 768), (800, 1200), (375, 500)])
        gt = [[rng.uniform(0, w / 2), rng.uniform(0, h / 2), rng.uniform(w / 2, w), rng.uniform(h / 2, h)]]
        if rng.random() < 0.3:
            gt.append(
                [rng.uniform(0, w / 2), rng.uniform(0, h / 2), rng.uniform(w / 2, w), rng.uniform(h / 2, h)]
            )
        answers = rng.choice([["No"], ["Yes"], ["2"], ["red", "dark red"], ["The bird"]])
        gt_caption = caption(rng)
        for _ in range(BATCH // PROMPTS):
            boxes = [
                [round(rng.uniform(0, 600)) for _ in range(4)] for _ in range(rng.choice([1, 1, 1, 2, 3]))
            ]
            text = format_completion(caption(rng), boxes, rng.choice([*answers, "No", "yes"]))
            roll = rng.random()
            if roll < 0.05:
                text = text.replace("<bbox>", "<box>")
            elif roll < 0.10:
                text += "\nExtra words after the answer."
            elif roll < 0.13:
                text = text.replace("]]", "]")
            completions.append(text)
            cols["bboxs"].append(gt)
            cols["width"].append(w)
            cols["height"].append(h)
            cols["possible_answers"].append(answers)
            cols["image_caption"].append(gt_caption)
    return completions, cols


def _cold() -> None:
    # Each measured run starts with empty caches, like a fresh batch of new completions.
    _parsed.cache_clear()
    _scale.cache_clear()
    caption_score.cache_clear()


def timed(fn, repeats: int = 5) -> float:
    """Median CPU seconds per batch over cold-cache runs.

    CPU (process) time, not wall time, so that other jobs on a shared machine do not skew
    it. The ground-truth caption cache stays warm, as in training, where each prompt's
    caption is scored for all its rollouts.
    """
    times = []
    for _ in range(repeats):
        _cold()
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> int:
    completions, cols = make_batch()
    budget = PixelBudget()
    n = len(completions)
    fast = {
        "format": lambda: format_reward(completions),
        "bbox": lambda: bbox_reward(completions, cols["bboxs"], cols["width"], cols["height"], budget=budget),
        "vqa": lambda: vqa_reward(completions, cols["possible_answers"]),
        "caption": lambda: caption_reward(completions, cols["image_caption"]),
        "format+bbox+vqa": lambda: (
            format_reward(completions),
            bbox_reward(completions, cols["bboxs"], cols["width"], cols["height"], budget=budget),
            vqa_reward(completions, cols["possible_answers"]),
        ),
        "all four": lambda: score_all(completions, budget=budget, **cols),
    }
    rows = list(zip(completions, cols["bboxs"], cols["width"], cols["height"], strict=False))
    reference = {
        "format": lambda: [ref_format(c) for c in completions],
        "bbox": lambda: [ref_bbox(c, b, w, h, budget) for c, b, w, h in rows],
        "vqa": lambda: [ref_vqa(c, a) for c, a in zip(completions, cols["possible_answers"], strict=False)],
        "caption": lambda: [
            ref_caption(c, r) for c, r in zip(completions, cols["image_caption"], strict=False)
        ],
    }
    reference["format+bbox+vqa"] = lambda: (reference["format"](), reference["bbox"](), reference["vqa"]())
    reference["all four"] = lambda: (reference["format+bbox+vqa"](), reference["caption"]())

    fast["all four"]()  # warm-up: lazy imports (nltk stemmer) and the ground-truth caption cache
    reference["all four"]()
    print(f"batch of {n} completions ({PROMPTS} prompts x {BATCH // PROMPTS} rollouts), median of 5 runs")
    print(f"{'reward':<18}{'fast c/s':>12}{'us/compl':>10}{'ref c/s':>12}{'speed-up':>10}")
    results = {}
    for name in fast:
        tf = timed(fast[name])
        tr = timed(reference[name], repeats=3)
        results[name] = (tf, tr)
        print(f"{name:<18}{n / tf:>12,.0f}{tf / n * 1e6:>10.1f}{n / tr:>12,.0f}{tr / tf:>9.1f}x")
    speedup = results["all four"][1] / results["all four"][0]
    fbv_us = results["format+bbox+vqa"][0] / n * 1e6
    ok = speedup >= 20 and fbv_us < 20
    print(
        f"targets: all four >= 20x reference: {speedup:.1f}x {'ok' if speedup >= 20 else 'MISSED'}; "
        f"format+bbox+vqa < 20 us/completion: {fbv_us:.1f} us {'ok' if fbv_us < 20 else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
