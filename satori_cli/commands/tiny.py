"""`satori tiny-model`: build the tiny random Qwen2.5-VL used by the demo and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from satori_cli.commands.options import OUT, Overwrite, Seed


def tiny_model(
    out: Annotated[
        Path | None,
        typer.Option(
            *OUT, metavar="DIR", help="Folder to write (default: $SATORI_HOME/models/tiny-qwen2_5_vl)."
        ),
    ] = None,
    hidden_size: Annotated[
        int,
        typer.Option(
            "--hidden-size",
            help="Hidden size of the text and vision towers (a multiple of 4; 96 with 4 layers can learn).",
        ),
    ] = 32,
    layers: Annotated[int, typer.Option("--layers", help="Number of text decoder layers.")] = 2,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Build a tiny, random Qwen2.5-VL (a few million parameters) for CPU runs and tests.

    Its files are Qwen2.5-VL-3B-Instruct's (config, generation and processor configs, chat
    template, Qwen2's BPE tokenizer); only the weights are small and random. It loads wherever
    the real model does (ms-swift, transformers, VLMEvalKit), in seconds and with no network.
    Its outputs are noise: use it to try the plumbing.
    """
    from satori_cli.config import paths
    from satori_cli.console import console
    from satori_cli.tiny_model import build_tiny_model

    target = out or paths().tiny_model
    with console().status(f"building the tiny model in {target} ..."):
        folder = build_tiny_model(
            target, hidden_size=hidden_size, layers=layers, seed=seed, overwrite=overwrite
        )
    console().print(f"[green]tiny model ready:[/] {folder}")


def register(app: typer.Typer) -> None:
    app.command("tiny-model")(tiny_model)
