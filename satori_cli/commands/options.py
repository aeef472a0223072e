"""The options more than one command takes, declared once: one name, one type, one help text.

Use them as `overwrite: Overwrite = False`; a command's own default goes in its signature. Where
what an option means depends on the command (what `--out` holds, what `--gpus` parallelises,
which `--model` is meant), the command declares it with the shared names below and its own help,
so the names stay one vocabulary (`satori_cli/app.py`; `tests/test_vocabulary.py` checks).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from satori_cli.grammar import GRAMMAR_HELP
from satori_cli.pixels import PAPER_MAX_PIXELS, PAPER_MIN_PIXELS

API_KEY_ENV = "SATORI_API_KEY"

# Names of the options each command describes in its own words.
OUT = ("--out", "-o")
GPUS = ("--gpus", "-g")
MODEL = ("--model", "-m")
DATA = ("--data", "-d")
ROWS = ("--rows", "-n")

Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace what --out already holds: an earlier run or results, or files satori did not "
        "write (never a link or a special file; a folder that is not satori's is never emptied).",
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print what would run (commands, environment, plan); run nothing.")
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Stream the whole log of the tool satori runs (swift, VLMEvalKit) too."
    ),
]
Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="A recipe YAML (keys as in the presets); flags override it."),
]
Preset = Annotated[
    str | None,
    typer.Option(
        "--preset",
        "-p",
        help="Recipe: paper, fast, server, lora, smoke or learn. Default: the config's, else smoke "
        "(train) or server (rollout).",
    ),
]
Grammar = Annotated[
    str | None,
    typer.Option(
        "--grammar",
        help=f"Output grammar (system prompt, rewards, how answers are read): {GRAMMAR_HELP} Default: "
        "the one the model's `satori train` run recorded (or the config's), else satori.",
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same result.")]
MinPixels = Annotated[
    int | None,
    typer.Option(
        "--min-pixels",
        help=f"Smallest image area the model sees (default: a run's own, else $MIN_PIXELS, else "
        f"{PAPER_MIN_PIXELS}).",
    ),
]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        help=f"Largest image area the model sees (default: a run's own, else $MAX_PIXELS, else "
        f"{PAPER_MAX_PIXELS}).",
    ),
]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", help="Most tokens to generate per answer.")]
Temperature = Annotated[
    float,
    typer.Option("--temperature", help="Sampling temperature: 0 = greedy (repeatable answers), > 0 samples."),
]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url", help="A running OpenAI-compatible API, e.g. `satori serve`'s http://127.0.0.1:8000/v1."
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar=API_KEY_ENV,
        help=f"Bearer key of the API: `serve` requires it, `predict` and `eval` send it "
        f"(also read from ${API_KEY_ENV}).",
    ),
]
Host = Annotated[
    str,
    typer.Option(
        "--host", help="Address to bind: loopback by default; 0.0.0.0 lets other machines reach it."
    ),
]
Port = Annotated[int, typer.Option("--port", help="Port to listen on (0: a free one, printed).")]
StartupTimeout = Annotated[
    float, typer.Option("--startup-timeout", help="Seconds to wait for the server's /health.")
]


def check_number(value: float, flag: str, positive: bool = False) -> None:
    """A finite number >= 0 (> 0 when `positive`), else one line and exit 2."""
    from satori_cli.errors import SatoriError

    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "a positive number" if positive else "a number >= 0"
        raise SatoriError(f"{flag} must be {need}, not {value}")
