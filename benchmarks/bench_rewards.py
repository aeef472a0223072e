"""Reward cost: each SATORI reward's time per batch, its share of a GRPO step, and linear time
on pathological inputs.

1. One batch of 512 realistic completions (32 prompts x 16 rollouts: one step of the paper's
   recipe, per the project's sizing) scored by `satori_cli.rewards` and, for comparison, by
   the straightforward reference (`tests/rewards_reference.py`: the original plugin's regexes
   and `ast.literal_eval`, then the same libraries). CPU time, median of 5 cold-cache runs.

   The step share assumes STEP_SECONDS for one paper step on 4 GPUs (HF generate of up to
   512 tokens for every completion with a 3B model, then the policy and reference forward and
   backward passes: "tens of seconds"; 20 s is the low end, so the share is an upper bound).
   ms-swift scores each rank's own completions on that rank (`_compute_rewards_per_func`,
   then a gather), so per step the ranks spend in parallel the time of 512 / 4 completions;
   the share if one process scored all 512 is printed too.

2. Pathological completions and reference captions (2 MB of tags, a 10 MB reference
   caption), which took 15 s to forever before the parser was made linear and the texts
   capped: seconds per `score_all` call (capped input, as users get it), and the parser on
   the whole uncapped input at 1 MB and 2 MB (ratio about 2 when linear).

Targets (exit 1 when one is missed): the four rewards under 1% of a step per rank; every
pathological case under 1 s, and the uncapped parser linear (2 MB / 1 MB under 3).
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

from satori_cli.grammar import format_completion, parse  # noqa: E402
from satori_cli.pixels import PixelBudget  # noqa: E402
from satori_cli.rewards import (  # noqa: E402
    bbox_reward,
    caption_reward,
    format_reward,
    score_all,
    vqa_reward,
)
from satori_cli.rewards.reward_functions import _cached_caption_score  # noqa: E402

BATCH, PROMPTS, RANKS = 512, 32, 4
STEP_SECONDS = 20.0  # assumed: one paper step on 4 GPUs (see the module docstring)
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


def timed(fn, repeats: int = 5) -> float:
    """Median CPU seconds per call over cold-cache runs (CPU time: other jobs on a shared
    machine do not skew it; the caption cache starts empty, as for a fresh batch)."""
    times = []
    for _ in range(repeats):
        _cached_caption_score.cache_clear()
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def step_share() -> bool:
    completions, cols = make_batch()
    budget = PixelBudget()
    n = len(completions)
    ours = {
        "format": lambda: format_reward(completions),
        "bbox": lambda: bbox_reward(completions, cols["bboxs"], cols["width"], cols["height"], budget=budget),
        "vqa": lambda: vqa_reward(completions, cols["possible_answers"]),
        "caption": lambda: caption_reward(completions, cols["image_caption"]),
        "all four": lambda: score_all(completions, budget=budget, **cols),
    }
    rows = list(zip(completions, cols["bboxs"], cols["width"], cols["height"], strict=True))
    reference = {
        "format": lambda: [ref_format(c) for c in completions],
        "bbox": lambda: [ref_bbox(c, b, w, h, budget) for c, b, w, h in rows],
        "vqa": lambda: [ref_vqa(c, a) for c, a in zip(completions, cols["possible_answers"], strict=True)],
        "caption": lambda: [
            ref_caption(c, r) for c, r in zip(completions, cols["image_caption"], strict=True)
        ],
    }
    reference["all four"] = lambda: [reference[k]() for k in ("format", "bbox", "vqa", "caption")]
    ours["all four"]()  # warm-up: the libraries' imports, once per process as in training
    reference["all four"]()
    print(f"1. batch of {n} completions ({PROMPTS} prompts x {BATCH // PROMPTS} rollouts), median of 5")
    print(f"   step of {STEP_SECONDS:.0f} s assumed; {n // RANKS} completions per rank on {RANKS} ranks")
    header = ("reward", "us/compl", "ms/batch", "ref ms", "share/rank", "share/1 proc")
    print("   {:<10}{:>10}{:>10}{:>9}{:>12}{:>14}".format(*header))
    results = {}
    for name in ours:
        t, tr = timed(ours[name]), timed(reference[name], repeats=3)
        results[name] = t
        per_rank = t / RANKS / STEP_SECONDS
        print(
            f"   {name:<10}{t / n * 1e6:>10.1f}{t * 1e3:>10.1f}{tr * 1e3:>9.1f}"
            f"{per_rank:>11.2%}{t / STEP_SECONDS:>13.2%}"
        )
    share = results["all four"] / RANKS / STEP_SECONDS
    ok = share < 0.01
    print(f"   target: the four rewards < 1% of a step per rank: {share:.2%} {'ok' if ok else 'MISSED'}")
    return ok


def _repeat(piece: str, size: int) -> str:
    return (piece * (size // len(piece) + 1))[:size]


REF = "The image features a bird perched on a branch with green leaves and red berries."
GOOD = format_completion("a bird on a branch", [[10, 20, 110, 220]], "No")
PATHOLOGICAL = {  # name -> size in characters -> (completion, reference caption)
    "<caption> repeated": lambda size: (_repeat("<caption>", size), REF),
    "<caption>x</caption><bbox> repeated": lambda size: (_repeat("<caption>x</caption><bbox>", size), REF),
    "closing tags": lambda size: (
        "<caption>" + _repeat("</caption> <bbox>", size) + "</bbox><answer>a</answer>",
        REF,
    ),
    "whole completions repeated": lambda size: (_repeat(GOOD + " ", size), REF),
    "one huge caption": lambda size: (
        f"<caption>{_repeat('a bird ', size)}</caption><bbox>[[1,2,3,4]]</bbox>",
        REF,
    ),
    "10 MB reference caption": lambda size: (GOOD, _repeat("a bird on a branch ", 5 * size)),
}


def pathological() -> bool:
    budget = PixelBudget()
    cols = dict(bboxs=[[[10, 20, 110, 220]]], width=[640], height=[480], possible_answers=[["No"]])
    print("\n2. pathological inputs, CPU seconds: score_all on one 2 MB completion (capped as in use),")
    print("   and the parser alone on all of a 1 MB and a 2 MB input (max_chars=None)")
    print(f"   {'input':<36}{'score_all':>10}{'parse 1MB':>10}{'parse 2MB':>10}{'ratio':>7}")
    ok = True
    for name, make in PATHOLOGICAL.items():
        completion, reference = make(2_000_000)
        scored = timed(lambda c=completion, r=reference: score_all([c], budget, image_caption=[r], **cols), 3)
        inputs = [make(size)[0] for size in (1_000_000, 2_000_000)]
        parsed = [timed(lambda c=text: parse(c, max_chars=None), 3) for text in inputs]
        ratio = parsed[1] / max(parsed[0], 1e-4)
        good = scored < 1.0 and parsed[1] < 1.0 and (ratio < 3 or parsed[1] < 0.01)
        ok &= good
        print(
            f"   {name:<36}{scored:>10.4f}{parsed[0]:>10.4f}{parsed[1]:>10.4f}{ratio:>7.1f}"
            + ("" if good else "  MISSED")
        )
    print(f"   target: each under 1 s, the parser linear (2 MB / 1 MB < 3): {'ok' if ok else 'MISSED'}")
    return ok


def main() -> int:
    ok = step_share()
    ok &= pathological()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
