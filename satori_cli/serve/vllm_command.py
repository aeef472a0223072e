"""The `vllm serve` command line for SATORI, from the engine settings `satori eval` uses too.

vLLM is never imported here: it pins `pillow>=13`, which gradio 6 refuses, so it usually
lives in its own environment and we only build its argv (`--vllm-bin` points at it).
"""

from __future__ import annotations

from dataclasses import dataclass

from satori_cli.pixels import PAPER_BUDGET, PixelBudget
from satori_cli.process import Command, flag_args
from satori_cli.vllm_settings import engine_settings

SERVED_MODEL_NAME = "satori"


@dataclass(frozen=True)
class VllmSettings:
    """What `satori serve --backend vllm` controls; everything else keeps vLLM's defaults."""

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    gpus: int = 1
    max_model_len: int | None = None  # None: derived (satori_cli/vllm_settings.py)
    max_num_seqs: int = 32
    budget: PixelBudget = PAPER_BUDGET
    served_model_name: str = SERVED_MODEL_NAME


def vllm_args(settings: VllmSettings) -> list[str]:
    """The arguments after `vllm serve MODEL` (dict flags as JSON, as vLLM's parser expects)."""
    # One image per prompt, no video: the profiling run then reserves one image only.
    engine = engine_settings(
        settings.model,
        settings.budget,
        images=1,
        tensor_parallel=settings.gpus,
        max_model_len=settings.max_model_len,
    )
    del engine["model"]  # positional
    return flag_args(
        {
            "served_model_name": settings.served_model_name,
            "host": settings.host,
            "port": settings.port,
            **engine,
            "max_num_seqs": settings.max_num_seqs,
        },
        style="kebab",
    )


def vllm_command(settings: VllmSettings, vllm_bin: str = "vllm", api_key: str | None = None) -> Command:
    """`vllm serve` as a Command. The API key travels in VLLM_API_KEY, not in argv (`ps` shows argv)."""
    env = {"VLLM_WORKER_MULTIPROC_METHOD": "spawn"}
    if api_key:
        env["VLLM_API_KEY"] = api_key
    return Command([vllm_bin, "serve", settings.model, *vllm_args(settings)], env=env)
