"""The examples in the docstrings of the pure core (grammar, pixels, rewards) run and hold.

Listed by name, not collected with `--doctest-modules` over the package, so that modules
which import heavy libraries (or, like the swift plugin, need ms-swift) are never imported.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "satori_cli.grammar",
    "satori_cli.pixels",
    "satori_cli.rewards",
    "satori_cli.rewards.reward_functions",
    "satori_cli.app",
    "satori_cli.evaluation.progress",
    "satori_cli.train.report",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (output above)"
