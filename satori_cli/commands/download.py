"""`satori download model | data`: the SATORI checkpoint, the base model or VQA-Verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from satori_cli.commands.options import OUT

download_app = typer.Typer(
    name="download",
    help="Download a model or the dataset from the Hugging Face hub (or ModelScope). "
    "HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE are honoured. "
    "A local folder is accepted in place of a repo id.",
    short_help="Download SATORI-3B, the base model or VQA-Verify (HF hub or ModelScope).",
    no_args_is_help=True,
)

Revision = Annotated[
    str | None, typer.Option("--revision", help="Branch, tag or commit to fetch (default: main).")
]
Folder = Annotated[
    Path | None,
    typer.Option(*OUT, metavar="DIR", help="Put the files in this folder instead of the hub cache."),
]
Source = Annotated[
    str, typer.Option("--source", help="Where to download from: hf (Hugging Face) or modelscope.")
]


def _run(kind: str, repo: str | None, revision: str | None, local_dir: Path | None, source: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from satori_cli.console import console
    from satori_cli.hub import fetch, rich_tqdm

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console(),
        transient=True,
        disable=not console().is_terminal,  # piped: no bars (and no stray empty line)
    ) as progress:
        got = fetch(
            kind, repo, revision=revision, local_dir=local_dir, source=source, tqdm_class=rich_tqdm(progress)
        )
    how = {"local": "local folder", "hf": "Hugging Face hub or cache", "modelscope": "ModelScope"}[got.origin]
    console().print(f"[green]{kind} {got.repo} ready[/] ({how}):")
    print(got.path)  # plain last line, for $(satori download ... | tail -1)


@download_app.command("model")
def model(
    repo: Annotated[
        str | None,
        typer.Argument(
            help="Repo id or local folder. Default: justairr/SATORI (the SATORI-3B checkpoint); "
            "`base` = Qwen/Qwen2.5-VL-3B-Instruct.",
        ),
    ] = None,
    revision: Revision = None,
    local_dir: Folder = None,
    source: Source = "hf",
) -> None:
    """Download a model (the SATORI checkpoint by default) and print its folder."""
    _run("model", repo, revision, local_dir, source)


@download_app.command("data")
def data(
    repo: Annotated[
        str | None, typer.Argument(help="Dataset repo id or local folder. Default: justairr/VQA-Verify.")
    ] = None,
    revision: Revision = None,
    local_dir: Folder = None,
    source: Source = "hf",
) -> None:
    """Download the training data (VQA-Verify by default) and print its folder.

    Then turn it into training rows with `satori data prepare FOLDER --out DIR`.
    """
    _run("data", repo, revision, local_dir, source)


def register(app: typer.Typer) -> None:
    app.add_typer(download_app, name="download")
