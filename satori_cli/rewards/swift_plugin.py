"""ms-swift reward plugin for SATORI: `swift rlhf --external_plugins <this file>`.

Registers, under the original SATORI names (so the original command line keeps working):

    external_format       -> SatoriFormat
    external_bbox_acc     -> SatoriBoxIoU
    extern_vqa_acc        -> SatoriAnswer
    external_caption_acc  -> SatoriCaption
    external_vqa_norm_acc -> SatoriAnswerNormalized   (optional, lenient answer match)

ms-swift logs each reward as `rewards/<ClassName>/mean` and as a `completions.jsonl`
column named after the class. swift imports this file on every rank and in DataLoader
workers, so it only imports light modules, and it works with ms-swift 4.x
(`swift.rewards`) and 3.x (`swift.plugin`). A reward never stops training: should a
batch raise anyway, the plugin logs it once and scores each completion on its own, 0.0
for those that still fail.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

try:  # installed package, or the repository on PYTHONPATH
    import satori_cli  # noqa: F401
except ImportError:  # swift loads this file by path: make its repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

try:  # ms-swift 4.x
    from swift.rewards import ORM, orms
except ImportError:  # ms-swift 3.x
    from swift.plugin import ORM, orms

from satori_cli.rewards.reward_functions import (
    NORMALIZED_VQA,
    ColumnError,
    bbox_reward,
    caption_reward,
    format_reward,
    vqa_normalized_reward,
    vqa_reward,
)

logger = logging.getLogger("satori.rewards")


class _SatoriReward(ORM):
    """Calls a pure batch reward; never lets an exception reach the trainer."""

    function = staticmethod(format_reward)
    _warned = False

    def __init__(self, args=None, **kwargs):
        try:
            super().__init__(args, **kwargs)
        except TypeError:  # ms-swift 3.x: ORM has no __init__ of its own
            super().__init__()
        self.args = args

    def __call__(self, completions, **kwargs) -> list[float]:
        try:
            return self.function(completions, **kwargs)
        except ColumnError:
            raise  # a missing or misshapen data set column: a set-up error, say so at once
        except Exception:
            if not type(self)._warned:
                type(self)._warned = True
                logger.exception("%s failed on a batch; scoring completions one by one", type(self).__name__)
            return [self._one(c, i, kwargs) for i, c in enumerate(completions)]

    def _one(self, completion, index: int, kwargs: dict) -> float:
        row = {k: [v[index]] for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) > index}
        try:
            return self.function([completion], **row)[0]
        except Exception:
            return 0.0


class SatoriFormat(_SatoriReward):
    """1 iff the completion is exactly <caption>, <bbox>[[...]], <answer>, in order."""

    function = staticmethod(format_reward)


class SatoriBoxIoU(_SatoriReward):
    """IoU of the union of predicted boxes with the union of ground-truth boxes."""

    function = staticmethod(bbox_reward)


class SatoriAnswer(_SatoriReward):
    """1 iff the first <answer> equals one of possible_answers exactly."""

    function = staticmethod(vqa_reward)


class SatoriAnswerNormalized(_SatoriReward):
    """1 iff the first <answer> matches after lowercasing, punctuation and article removal."""

    function = staticmethod(vqa_normalized_reward)


class SatoriCaption(_SatoriReward):
    """½ smoothed BLEU-4 + ½ ROUGE-L F1 of the first <caption> against image_caption."""

    function = staticmethod(caption_reward)


orms["external_format"] = SatoriFormat
orms["external_bbox_acc"] = SatoriBoxIoU
orms["extern_vqa_acc"] = SatoriAnswer
orms["external_caption_acc"] = SatoriCaption
orms[NORMALIZED_VQA] = SatoriAnswerNormalized
