"""Where satori keeps things: one root (`SATORI_HOME`) with models, data and runs below it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("~/.cache/satori")

DEFAULT_MODEL = "justairr/SATORI"
BASE_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
DEFAULT_DATASET = "justairr/VQA-Verify"


@dataclass(frozen=True)
class Paths:
    """The directory layout under SATORI_HOME. Each can be overridden by its own variable."""

    home: Path

    @property
    def models(self) -> Path:
        return _env_path("SATORI_MODELS_DIR") or self.home / "models"

    @property
    def data(self) -> Path:
        return _env_path("SATORI_DATA_DIR") or self.home / "data"

    @property
    def runs(self) -> Path:
        return _env_path("SATORI_RUNS_DIR") or self.home / "runs"

    @property
    def tiny_model(self) -> Path:
        return self.models / "tiny-qwen2_5_vl"


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None


def satori_home() -> Path:
    return _env_path("SATORI_HOME") or DEFAULT_HOME.expanduser()


def paths(home: str | Path | None = None) -> Paths:
    """The layout rooted at `home`, else SATORI_HOME, else ~/.cache/satori."""
    return Paths(Path(home).expanduser() if home else satori_home())
