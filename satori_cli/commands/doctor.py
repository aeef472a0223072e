"""`satori doctor`: what this machine has for train, eval and serve, and what is missing.

Found without importing any heavy library: versions come from package metadata and GPUs from
`nvidia-smi`, so it answers in well under a second even where importing torch would take ten.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from satori_cli.errors import SatoriError, install_hint, one_line

if TYPE_CHECKING:
    from satori_cli.gpus import Gpu


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def _check(name: str, ok: bool, detail: str, hint: str) -> Check:
    """A check whose hint shows only when it fails."""
    return Check(name, ok, detail, "" if ok else hint)


@dataclass(frozen=True)
class Report:
    checks: list[Check]
    gpus: list[Gpu]
    jobs: dict[str, list[str]]  # job -> what is missing

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)


# distribution -> the extra that brings it, or the install command itself
PACKAGES = {
    "torch": "train",
    "transformers": "train",
    "ms-swift": "train",
    "msgspec": "train",
    "qwen-vl-utils": "train",
    "nltk": "rewards",
    "rouge-score": "rewards",
    "shapely": "rewards",
    "deepspeed": "gpu",
    "flash-attn": "optional, CUDA only: pip install flash-attn --no-build-isolation",
    "ms-vlmeval": "eval",
    "vllm": "gpu",
    "gradio": "serve",
    "openai": "eval",
}

# The transformers backend is `swift deploy`, which loads Qwen2.5-VL with qwen-vl-utils.
SERVE_BACKEND_NEEDS = {
    "vllm": ["gpu", "vllm executable"],
    "transformers": ["swift executable", "torch", "transformers", "qwen-vl-utils"],
}
UI_NEEDS = ["gradio"]

NEEDS = {
    "train": [name for name, extra in PACKAGES.items() if extra in ("train", "rewards")],
    "train on GPU (paper preset)": ["gpu", "deepspeed"],
    "train with vLLM rollouts (fast preset)": ["gpu", "vllm"],
    "eval": ["torch", "transformers", "ms-vlmeval"],
    "serve --backend vllm": SERVE_BACKEND_NEEDS["vllm"],
    "serve --backend transformers": SERVE_BACKEND_NEEDS["transformers"],
    "serve --ui --base-url URL (demo only)": UI_NEEDS,
}


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the Hugging Face hub (or HF_ENDPOINT) answers, honouring HF_HUB_OFFLINE."""
    from satori_cli.models import hub_offline

    if hub_offline():
        return False, "HF_HUB_OFFLINE is set"
    import httpx

    from satori_cli.http_client import client

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        with client(endpoint, timeout=timeout) as http:
            http.get(f"{endpoint}/api/models?limit=1")  # any status: it answered
        return True, endpoint
    except SatoriError as exc:  # HF_ENDPOINT is not an http(s) address
        return False, f"{endpoint} unreachable ({exc.message})"
    except httpx.HTTPError as exc:
        return False, f"{endpoint} unreachable ({one_line(exc, 200)})"


def diagnose(home: Path, check_hub: bool = True) -> Report:
    import platform
    from importlib import metadata

    from satori_cli.gpus import detect_gpus
    from satori_cli.process import find_program
    from satori_cli.serve.server import pick_backend

    checks = [Check("python", sys.version_info >= (3, 10), f"{platform.python_version()} ({sys.executable})")]
    for name, extra in PACKAGES.items():
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = None
        hint = extra if " " in extra else install_hint(extra)
        checks.append(_check(name, version is not None, version or "not installed", hint))
    for exe, hint in (
        ("vllm", f"{install_hint('gpu')}, or serve with --vllm-bin PATH to a vLLM elsewhere"),
        ("swift", f"{install_hint('train')} (the transformers backend is `swift deploy`)"),
    ):
        try:  # where `satori serve` would find it: beside this Python first, then PATH
            where = find_program(exe, "")
        except SatoriError:
            where = None
        checks.append(_check(f"{exe} executable", where is not None, where or "not found", hint))
    gpus = detect_gpus()
    found = f"{len(gpus)}: " + "; ".join(f"{g.name} ({g.memory_gib:.0f} GiB)" for g in gpus)
    cpu_only = "CPU-only: use the smoke preset and the tiny model"
    checks.append(_check("GPUs", bool(gpus), found if gpus else "none found (nvidia-smi)", cpu_only))
    probe = home if home.exists() else next((p for p in home.parents if p.exists()), Path("/"))
    free_gib = shutil.disk_usage(probe).free / 2**30
    space = "the 3B model and VQA-Verify need about 20 GiB"
    checks.append(_check("disk", free_gib >= 20, f"{free_gib:.0f} GiB free at {probe}", space))
    if check_hub:
        ok, detail = hub_reachable()
        checks.append(_check("hub", ok, detail, "download elsewhere and pass local folders"))
    present = {c.name for c in checks if c.ok} | ({"gpu"} if gpus else set())
    # `satori serve` and `serve --ui` start the backend `auto` picks: they need what it needs.
    auto = pick_backend("auto", "vllm")
    backend = SERVE_BACKEND_NEEDS[auto]
    needs = NEEDS | {f"serve (auto: {auto})": backend, f"serve --ui (auto: {auto})": [*UI_NEEDS, *backend]}
    jobs = {job: [need for need in wanted if need not in present] for job, wanted in needs.items()}
    return Report(checks=checks, gpus=gpus, jobs=jobs)


def doctor(
    hub: Annotated[
        bool, typer.Option("--hub/--no-hub", help="Probe the Hugging Face hub (3 s timeout).")
    ] = True,
) -> None:
    """Show what this machine has for train, eval and serve, and what is missing.

    Checks python, torch, GPUs, ms-swift, VLMEvalKit, vLLM, gradio, deepspeed, flash-attn,
    disk space and hub reachability, each with the install hint, without importing any of them.
    """
    from rich.markup import escape
    from rich.table import Table

    from satori_cli.config import satori_home
    from satori_cli.console import console

    report = diagnose(satori_home(), check_hub=hub)
    table = Table(title="satori doctor", title_justify="left")
    table.add_column("", width=2)
    table.add_column("component")
    table.add_column("found")
    table.add_column("hint", style="dim")
    for c in report.checks:
        table.add_row("[green]✓[/]" if c.ok else "[yellow]✗[/]", c.name, escape(c.detail), escape(c.hint))
    console().print(table)
    jobs = Table(title="ready for", title_justify="left")
    jobs.add_column("", width=2)
    jobs.add_column("job")
    jobs.add_column("missing")
    for job, missing in report.jobs.items():
        jobs.add_row("[green]✓[/]" if not missing else "[yellow]✗[/]", job, ", ".join(missing) or "-")
    console().print(jobs)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
