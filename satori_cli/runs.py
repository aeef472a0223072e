"""A run folder is a model: its last checkpoint, trained in the frame its `run.json` records.

`satori train` writes `run.json` into every run folder (the resolved recipe, with the pixel
budget, and the stage). Whatever takes a model (`train --model`, and later eval, serve and
predict) resolves a run folder here, so a model is always used with the budget it was
trained in: the same image size, the same box coordinates. Only the standard library and
satori's light modules are imported (no torch, no swift).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satori_cli.errors import SatoriError
from satori_cli.pixels import PixelBudget
from satori_cli.train.runlogs import checkpoints, run_dir_of

RUN_JSON = "run.json"
STAGES = ("sft", "grpo")


@dataclass(frozen=True)
class RunSettings:
    """What a run folder says about the model it made."""

    run_dir: Path
    budget: PixelBudget  # the pixel budget it was trained with
    stage: str  # "sft" or "grpo" (runs from before stages existed are GRPO)
    preset: str | None
    base_model: str | None  # the model it started from
    grammar: str | None  # the output grammar, where the run recorded one


def is_run_dir(path: str | Path) -> bool:
    """A folder `satori train` made (it holds `run.json`)."""
    return (Path(path).expanduser() / RUN_JSON).is_file()


def run_dir_for(model: str | Path) -> Path | None:
    """The run folder `model` names: the run folder itself, or a checkpoint inside one; else None.

    A hub id or a plain model folder is not a run (None).
    """
    path = Path(model).expanduser()
    if not path.is_dir():
        return None
    for candidate in (path, run_dir_of(path)):
        if is_run_dir(candidate):
            return candidate.resolve()
    return None


def _read(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SatoriError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise SatoriError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SatoriError(f"{path} is not a run record (a JSON object)")
    return data


def run_settings(run_dir: str | Path) -> RunSettings:
    """The budget, stage, preset, base model and grammar `run_dir/run.json` records."""
    run_dir = Path(run_dir).expanduser()
    info = _read(run_dir)
    recipe = info.get("recipe") if isinstance(info.get("recipe"), dict) else {}
    try:
        budget = PixelBudget(int(recipe["min_pixels"]), int(recipe["max_pixels"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SatoriError(
            f"{run_dir / RUN_JSON} records no valid pixel budget (recipe.min_pixels/max_pixels)",
            hint="was it written by `satori train`?",
        ) from exc
    stage = info.get("stage") or "grpo"
    grammar = info.get("grammar") or recipe.get("grammar")
    return RunSettings(
        run_dir=run_dir.resolve(),
        budget=budget,
        stage=str(stage),
        preset=recipe.get("preset"),
        base_model=info.get("base_model") or info.get("model"),
        grammar=grammar if isinstance(grammar, str) else None,
    )


def checkpoint_of(model: str | Path) -> Path:
    """The model weights a run folder stands for: its last checkpoint (by step).

    A checkpoint folder inside a run is itself. It must hold a whole model (`config.json`);
    a LoRA adapter has to be merged first.
    """
    path = Path(model).expanduser().resolve()
    if (path / "trainer_state.json").is_file():
        found = path
    else:
        saved = checkpoints(path) if path.is_dir() else []
        if not saved:
            raise SatoriError(
                f"run folder {path} has no checkpoint yet",
                hint="a run saves one every save_steps steps and at its end",
            )
        found = saved[-1]
    if not (found / "config.json").is_file():
        what = "a LoRA adapter" if (found / "adapter_config.json").is_file() else "no config.json"
        raise SatoriError(
            f"checkpoint {found} is not a whole model ({what})",
            hint=f"merge it first: swift export --adapters {found} --merge_lora true",
        )
    return found
