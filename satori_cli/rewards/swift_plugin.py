"""ms-swift reward plugin for SATORI: `swift rlhf --external_plugins <this file>`.

Registers one ORM class per entry of `satori_cli.rewards.REWARDS`, under the
original SATORI names (so the original command line keeps working) and, for the other output
grammars, `external_format_v2`, `external_format_r1`, `external_format_nocap`; `satori rewards
list` prints them. ms-swift logs each reward as `rewards/<ClassName>/mean` and as a
`completions.jsonl` column named after the class. swift imports this file on every rank
and in DataLoader workers, so it only imports light modules, and it works with ms-swift
4.x (`swift.rewards`) and 3.x (`swift.plugin`). It refuses to load without the reward
libraries (a reward that scored 0 for want of one would train silently on nothing). A
reward never stops training: should a batch raise anyway, the plugin logs it once and
scores each completion on its own, 0.0 for those that still fail.
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

from satori_cli.errors import install_hint
from satori_cli.rewards import REWARDS, missing_libraries

if missing_libraries():
    raise ImportError(f"the SATORI rewards need {', '.join(missing_libraries())}: {install_hint('rewards')}")

logger = logging.getLogger("satori.rewards")


class _SatoriReward(ORM):
    """Calls one pure batch reward of the table; never lets an exception reach the trainer."""

    reward = REWARDS[0]
    _warned = False

    def __init__(self, args=None, **kwargs):
        try:
            super().__init__(args, **kwargs)
        except TypeError:  # ms-swift 3.x: ORM has no __init__ of its own
            super().__init__()
        self.args = args

    def __call__(self, completions, **kwargs) -> list[float]:
        results = self.reward.score_each(completions, **kwargs)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed and not type(self)._warned:
            type(self)._warned = True
            logger.error(
                "%s failed on %d completion(s), scored 0.0: %r", type(self).__name__, len(failed), failed[0]
            )
        return [0.0 if isinstance(r, Exception) else r for r in results]


for _reward in REWARDS:
    _cls = type(_reward.class_name, (_SatoriReward,), {"reward": _reward, "__doc__": _reward.doc})
    globals()[_reward.class_name] = _cls  # a module attribute, like a class written out
    orms[_reward.name] = _cls
