"""`satori download model | data`: the SATORI checkpoint, the base model or VQA-Verify."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from satori_cli.commands.options import OUT
from satori_cli.errors import SatoriError

if TYPE_CHECKING:
    from satori_cli.hub import Fetched, Kind

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


def fetch(
    kind: Kind,
    repo: str | None = None,
    *,
    revision: str | None = None,
    local_dir: str | Path | None = None,
    source: str = "hf",
    tqdm_class: type | None = None,
) -> Fetched:
    """The local path of `repo` (an alias, a folder placed by hand or a repo id), downloading
    what is missing. A folder is used as is, once checked to hold a model or data."""
    from satori_cli import hub, models
    from satori_cli.config import DEFAULT_DATASET, DEFAULT_MODEL

    aliases = {**models.ALIASES, "vqa-verify": DEFAULT_DATASET}
    repo = aliases.get(repo or "", repo) or (DEFAULT_MODEL if kind == "model" else DEFAULT_DATASET)
    if source not in hub.SOURCES:
        raise SatoriError(f"unknown --source '{source}'", hint=f"choose one of: {', '.join(hub.SOURCES)}")
    path = models.local_path(repo, kind=kind)
    if path is not None:
        if kind == "model":
            return hub.Fetched(repo, Path(models.resolve(str(path), flag="").path), "local")
        from satori_cli.data.readers import ARCHIVE_SUFFIXES, DATA_SUFFIXES

        suffixes = DATA_SUFFIXES + ARCHIVE_SUFFIXES
        if not any(p.name.lower().endswith(suffixes) for p in path.rglob("*") if p.is_file()):
            raise SatoriError(
                f"{path} holds no .parquet, .jsonl, .json or archive file, so it is not a dataset"
            )
        return hub.Fetched(repo, path, "local")
    if source == "modelscope":
        return hub.fetch_modelscope(kind, repo, revision, local_dir)
    return hub.fetch_hf(kind, repo, revision, local_dir, tqdm_class)


def _run(kind: Kind, repo: str | None, revision: str | None, local_dir: Path | None, source: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from satori_cli.console import console
    from satori_cli.hub import rich_tqdm

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
