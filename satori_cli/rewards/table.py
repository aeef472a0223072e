"""The one table of SATORI rewards: the ms-swift plugin, `satori rewards list`, `score_all`
and `satori rewards score` are all built from `REWARDS`, so a reward is declared once.

>>> [(r.name, r.class_name, r.columns) for r in REWARDS if r.paper][1]
('external_bbox_acc', 'SatoriBoxIoU', ('bboxs', 'width', 'height'))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from satori_cli.pixels import PixelBudget
from satori_cli.rewards.reward_functions import (
    ColumnError,
    bbox_reward,
    caption_reward,
    format_reward,
    vqa_reward,
)


@dataclass(frozen=True)
class Reward:
    name: str  # what `swift rlhf --reward_funcs` takes (the original plugin's names)
    class_name: str  # what ms-swift logs: `rewards/<class_name>/mean`, a completions.jsonl column
    function: Callable[..., list[float]]  # completions + columns (keywords) -> one float each
    columns: tuple[str, ...]  # the data set columns it reads
    doc: str  # one line: what it scores
    paper: bool = True  # one of the four rewards of the paper's recipe

    def __call__(
        self, completions: Sequence[object], budget: PixelBudget | None = None, **columns: Sequence[object]
    ) -> list[float]:
        """Score with this reward's own columns (a missing one raises ColumnError)."""
        return self.function(completions, budget=budget, **{c: columns.get(c) for c in self.columns})

    def score_each(self, completions: Sequence[object], **kwargs: object) -> list[float | Exception]:
        """`function` on the batch; should it raise anyway (a bug), on each completion alone,
        an exception standing in for each score that still fails. A ColumnError (a set-up
        error) or ImportError (a missing library) is raised at once."""
        try:
            return list(self.function(completions, **kwargs))
        except (ColumnError, ImportError):
            raise
        except Exception:
            pass
        results: list[float | Exception] = []
        n = len(completions)
        for i, completion in enumerate(completions):
            row = {
                k: [v[i]] if isinstance(v, (list, tuple)) and len(v) == n else v for k, v in kwargs.items()
            }
            try:
                results.append(self.function([completion], **row)[0])
            except (ColumnError, ImportError):
                raise
            except Exception as exc:
                results.append(exc)
        return results


REWARDS: tuple[Reward, ...] = (
    Reward(
        "external_format",
        "SatoriFormat",
        format_reward,
        (),
        "format: caption, [[boxes]], answer in order, nothing else",
    ),
    Reward(
        "external_bbox_acc",
        "SatoriBoxIoU",
        bbox_reward,
        ("bboxs", "width", "height"),
        "IoU of the union of predicted and of ground-truth boxes",
    ),
    Reward(
        "extern_vqa_acc",
        "SatoriAnswer",
        vqa_reward,
        ("possible_answers",),
        "first <answer> equals one of possible_answers exactly",
    ),
    Reward(
        "external_caption_acc",
        "SatoriCaption",
        caption_reward,
        ("image_caption",),
        "½ smoothed BLEU-4 + ½ ROUGE-L F1 against image_caption",
    ),
    Reward(
        "external_vqa_norm_acc",
        "SatoriAnswerNormalized",
        partial(vqa_reward, normalized=True),
        ("possible_answers",),
        "like extern_vqa_acc after case/punctuation/articles",
        paper=False,
    ),
)
BY_NAME = {r.name: r for r in REWARDS}
REWARD_FUNCS = tuple(r.name for r in REWARDS if r.paper)  # the paper's `--reward_funcs`


def score_all(
    completions: Sequence[object], budget: PixelBudget | None = None, **columns: Sequence[object]
) -> dict[str, list[float]]:
    """The paper's four rewards at once, keyed by their ms-swift names (`REWARD_FUNCS`).

    >>> scores = score_all(
    ...     ["<caption>a red square</caption> <bbox>[[10,10,50,50]]</bbox> <answer>red</answer>"],
    ...     bboxs=[[[10, 10, 50, 50]]], width=[448], height=[448],
    ...     possible_answers=[["red"]], image_caption=["a red square"],
    ... )
    >>> {name: round(s[0], 2) for name, s in scores.items()}
    {'external_format': 1.0, 'external_bbox_acc': 1.0, 'extern_vqa_acc': 1.0, 'external_caption_acc': 0.78}
    """
    completions = list(completions)
    budget = budget or PixelBudget.from_env()
    return {r.name: r(completions, budget=budget, **columns) for r in REWARDS if r.paper}
