"""SATORI's four verifiable rewards: pure batch functions, `score_all`, and the ms-swift plugin.

>>> from satori_cli.rewards import score_all
>>> score_all(
...     ["<caption>a red square</caption> <bbox>[[10,10,50,50]]</bbox> <answer>red</answer>"],
...     bboxs=[[[10, 10, 50, 50]]], width=[448], height=[448],
...     possible_answers=[["red"]], image_caption=["a red square"],
... )["extern_vqa_acc"]
[1.0]

Importing this package is cheap (no torch, no swift, no nltk until a caption is scored).
"""

from __future__ import annotations

from pathlib import Path

from satori_cli.rewards.reward_functions import (
    COLUMNS,
    FUNCTIONS,
    MAX_ABS_COORD,
    MAX_GT_BOXES,
    MAX_IMAGE_SIDE,
    NORMALIZED_VQA,
    REWARD_FUNCS,
    ColumnError,
    bbox_reward,
    caption_reward,
    format_reward,
    normalize_answer,
    parse_completion,
    score_all,
    vqa_normalized_reward,
    vqa_reward,
)

__all__ = [
    "COLUMNS",
    "FUNCTIONS",
    "MAX_ABS_COORD",
    "MAX_GT_BOXES",
    "MAX_IMAGE_SIDE",
    "NORMALIZED_VQA",
    "REWARD_FUNCS",
    "ColumnError",
    "bbox_reward",
    "caption_reward",
    "format_reward",
    "normalize_answer",
    "parse_completion",
    "plugin_path",
    "score_all",
    "vqa_normalized_reward",
    "vqa_reward",
]


def plugin_path() -> Path:
    """The file to pass to `swift rlhf --external_plugins` (registers the reward names)."""
    return Path(__file__).resolve().parent / "swift_plugin.py"
