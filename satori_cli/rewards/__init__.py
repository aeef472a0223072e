"""SATORI's verifiable rewards: pure batch functions, the one table of them, `score_all`,
and the ms-swift plugin built from that table (the four of the paper, and a format reward
for each other output grammar).

>>> from satori_cli.rewards import REWARD_FUNCS, rewards_for, vqa_reward
>>> REWARD_FUNCS
('external_format', 'external_bbox_acc', 'extern_vqa_acc', 'external_caption_acc')
>>> rewards_for("nocap")
('external_format_nocap', 'external_bbox_acc', 'extern_vqa_acc')
>>> vqa_reward(["<answer>red</answer>"], possible_answers=[["red"]])
[1.0]

Importing this package is cheap (no torch, no swift; shapely, NLTK and rouge-score load on
first use).
"""

from __future__ import annotations

from pathlib import Path

from satori_cli.rewards.reward_functions import (
    MAX_ABS_COORD,
    MAX_CAPTION_CHARS,
    MAX_GT_BOXES,
    MAX_IMAGE_SIDE,
    ColumnError,
    bbox_reward,
    caption_reward,
    format_reward,
    missing_libraries,
    normalize_answer,
    vqa_reward,
)
from satori_cli.rewards.table import (
    BY_NAME,
    REWARD_FUNCS,
    REWARDS,
    Reward,
    grammars_using,
    rewards_for,
    score_all,
)

__all__ = [
    "BY_NAME",
    "MAX_ABS_COORD",
    "MAX_CAPTION_CHARS",
    "MAX_GT_BOXES",
    "MAX_IMAGE_SIDE",
    "REWARDS",
    "REWARD_FUNCS",
    "ColumnError",
    "Reward",
    "bbox_reward",
    "caption_reward",
    "format_reward",
    "grammars_using",
    "missing_libraries",
    "normalize_answer",
    "plugin_path",
    "rewards_for",
    "score_all",
    "vqa_reward",
]


def plugin_path() -> Path:
    """The file to pass to `swift rlhf --external_plugins` (registers the reward names)."""
    return Path(__file__).resolve().parent / "swift_plugin.py"
