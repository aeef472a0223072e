"""SATORI's verifiable rewards: the one table of them (`REWARDS`), from which the ms-swift
plugin, `satori rewards list`, `score_all` and `satori rewards score` are all built, so a
reward is declared once. The pure batch functions are in `reward_functions`.

The content rewards (box, answer, caption) are shared by every output grammar; each grammar
(`satori_cli.grammar.GRAMMARS`) adds its own format reward here and names the content rewards
that apply to it, so `--reward_funcs` for a grammar is `rewards_for(grammar)`.

>>> REWARD_FUNCS
('external_format', 'external_bbox_acc', 'extern_vqa_acc', 'external_caption_acc')
>>> rewards_for("nocap")
('external_format_nocap', 'external_bbox_acc', 'extern_vqa_acc')
>>> rewards_for("r1")
('external_format_r1', 'extern_vqa_acc')
>>> [(r.name, r.class_name, r.columns) for r in REWARDS][1]
('external_bbox_acc', 'SatoriBoxIoU', ('bboxs', 'width', 'height'))
>>> vqa_reward(["<answer>red</answer>"], possible_answers=[["red"]])
[1.0]

Importing this package is cheap (no torch, no swift; shapely, NLTK and rouge-score load on
first use).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from satori_cli.grammar import GRAMMARS, SATORI, Grammar, get_grammar
from satori_cli.pixels import PixelBudget
from satori_cli.rewards.reward_functions import (
    MAX_CAPTION_CHARS,
    MAX_GT_BOXES,
    ColumnError,
    bbox_reward,
    caption_reward,
    format_reward,
    missing_libraries,
    normalize_answer,
    vqa_reward,
)

__all__ = [
    "BY_NAME",
    "MAX_CAPTION_CHARS",
    "MAX_GT_BOXES",
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


@dataclass(frozen=True)
class Reward:
    name: str  # what `swift rlhf --reward_funcs` takes (the original plugin's names)
    class_name: str  # what ms-swift logs: `rewards/<class_name>/mean`, a completions.jsonl column
    function: Callable[..., list[float]]  # completions + columns (keywords) -> one float each
    columns: tuple[str, ...]  # the data set columns it reads
    doc: str  # one line: what it scores

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


def _format_of(grammar: Grammar) -> Reward:
    def score(completions: Sequence[object], **columns: object) -> list[float]:
        return format_reward(completions, grammar=grammar)  # no column can change the grammar

    return Reward(
        grammar.format_reward,
        grammar.format_class,
        score,
        (),
        f"format ({grammar.name}): {grammar.shape()} in order, nothing else",
    )


_FORMATS = {name: _format_of(g) for name, g in GRAMMARS.items()}
REWARDS: tuple[Reward, ...] = (
    _FORMATS[SATORI.name],
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
    *(r for name, r in _FORMATS.items() if name != SATORI.name),
    Reward(
        "external_vqa_norm_acc",
        "SatoriAnswerNormalized",
        partial(vqa_reward, normalized=True),
        ("possible_answers",),
        "like extern_vqa_acc after case/punctuation/articles",
    ),
)
BY_NAME = {r.name: r for r in REWARDS}  # every name a grammar trains with (tests/test_grammars.py)


def rewards_for(grammar: str | Grammar | None = None) -> tuple[str, ...]:
    """The `--reward_funcs` that train a grammar (default `satori`: the paper's four)."""
    return get_grammar(grammar).reward_funcs


def grammars_using(name: str) -> list[str]:
    """The grammars whose training uses reward `name` (empty: an optional reward)."""
    return [g.name for g in GRAMMARS.values() if name in g.reward_funcs]


REWARD_FUNCS = rewards_for(SATORI)  # the paper's `--reward_funcs`


def score_all(
    completions: Sequence[object],
    budget: PixelBudget | None = None,
    grammar: str | Grammar | None = None,
    **columns: Sequence[object],
) -> dict[str, list[float]]:
    """A grammar's rewards at once (default `satori`: the paper's four, `REWARD_FUNCS`), keyed
    by their ms-swift names.

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
    return {name: BY_NAME[name](completions, budget=budget, **columns) for name in rewards_for(grammar)}


def plugin_path() -> Path:
    """The file to pass to `swift rlhf --external_plugins` (registers the reward names)."""
    return Path(__file__).resolve().parent / "swift_plugin.py"
