"""Training recipes: a preset file, overlaid by a user's `--config` YAML, overlaid by flags.

A recipe is plain data (`satori_cli/presets/*.yaml`): the launch shape (`gpus`), what it needs
installed (`needs`), the pixel budget, the `swift rlhf` (GRPO) arguments under `swift:` and,
for presets with a cold-start stage, the `swift sft` arguments under `sft:`. Keeping the
published numbers in one data file per preset means the README, `--dry-run` and the real run
all read the same source.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from satori_cli.errors import SatoriError
from satori_cli.grammar import DEFAULT_GRAMMAR, get_grammar
from satori_cli.pixels import PAPER_MAX_PIXELS, PAPER_MIN_PIXELS, PixelBudget

DEFAULT_PRESET = "smoke"
# Each stage's recipe key: `swift rlhf --rlhf_type grpo` reads `swift:`, `swift sft` reads `sft:`.
STAGE_KEYS = {"grpo": "swift", "sft": "sft"}
# The ms-swift arguments satori itself reads before launching (the preflight's batch, memory and
# resume checks, the rollout server's context), with swift's types: a value that is not one is
# refused in one line here. Every other argument is checked by swift's own parser, whose message
# `satori train` passes on as one line (importing that parser up front costs ~9 s and 1.2 GB).
SWIFT_NUMBERS: dict[str, type] = {
    **dict.fromkeys(
        (
            "num_generations", "num_generations_eval", "per_device_train_batch_size",
            "per_device_eval_batch_size", "gradient_accumulation_steps", "steps_per_generation",
            "generation_batch_size", "max_steps", "max_length", "max_completion_length",
            "vllm_max_model_len", "lora_rank", "sleep_level", "save_steps", "eval_steps", "logging_steps",
        ),
        int,
    ),
    **dict.fromkeys(("num_train_epochs", "beta", "vllm_gpu_memory_utilization", "learning_rate"), float),
}  # fmt: skip
# Recipe keys that name something (a model, a file, a grammar): text, not numbers or lists.
TEXT_KEYS = ("preset", "description", "model", "data", "val_data", "grammar")


@dataclass
class Recipe:
    """A resolved recipe: what to launch and with which ms-swift arguments."""

    preset: str
    description: str = ""
    model: str = "base"
    gpus: int = 1
    # GPUs of a `swift rollout` server beside the training (`vllm_mode: server`): on one node
    # satori starts it on the first GPUs of the pool; 0 = no rollout server of its own.
    rollout_gpus: int = 0
    needs: list[str] = field(default_factory=list)
    min_pixels: int = PAPER_MIN_PIXELS
    max_pixels: int = PAPER_MAX_PIXELS
    swift: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    val_data: str | None = None
    grammar: str = DEFAULT_GRAMMAR  # output grammar: prompt and rewards (satori_cli.grammar.GRAMMARS)

    @property
    def budget(self) -> PixelBudget:
        return PixelBudget(self.min_pixels, self.max_pixels)

    def stage_args(self, stage: str) -> dict[str, Any]:
        """The ms-swift arguments of a stage: `swift:` for GRPO, `sft:` for SFT."""
        return self.sft if stage == "sft" else self.swift


# Keys a preset or a --config file may carry; anything else is a typo worth an error.
RECIPE_KEYS = frozenset(f.name for f in fields(Recipe))


def list_presets() -> list[str]:
    """Names of the bundled presets (the `*.yaml` files in `satori_cli/presets`)."""
    folder = resources.files("satori_cli.presets")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SatoriError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise SatoriError(f"{what} {path} is not a text file (not UTF-8)") from None
    except yaml.YAMLError as exc:
        raise SatoriError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    except RecursionError:
        raise SatoriError(f"{what} {path} is nested too deeply") from None
    except ValueError:  # PyYAML converts a 5000-digit integer with int(), which Python refuses
        raise SatoriError(f"{what} {path} has a number too long to read (over 4300 digits)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SatoriError(f"{what} {path} must be a mapping of recipe keys, not {type(data).__name__}")
    unknown = sorted(set(data) - RECIPE_KEYS)
    if unknown:
        raise SatoriError(
            f"{what} {path} has unknown key(s): {', '.join(unknown)}",
            hint=f"allowed: {', '.join(sorted(RECIPE_KEYS))}; ms-swift arguments go under 'swift:'",
        )
    for key in STAGE_KEYS.values():
        if key in data and not isinstance(data[key] or {}, dict):
            raise SatoriError(
                f"{what} {path}: '{key}' must be a mapping of ms-swift argument names to values"
            )
    for key in TEXT_KEYS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise SatoriError(f"{what} {path}: '{key}' must be text, not {_shown(data[key])}")
    if data.get("needs") is not None and not (
        isinstance(data["needs"], list) and all(isinstance(n, str) for n in data["needs"])
    ):
        raise SatoriError(f"{what} {path}: 'needs' must be a list of package names")
    return data


def _shown(value: Any) -> str:
    from satori_cli.errors import one_line

    return f"{type(value).__name__} {one_line(repr(value), 60)}"


def check_swift_numbers(swift: dict[str, Any]) -> None:
    """The arguments satori reads (`SWIFT_NUMBERS`) hold numbers of swift's type, or one line."""
    for key, kind in SWIFT_NUMBERS.items():
        value = swift.get(key)
        if value is None or isinstance(value, bool):
            ok = value is None
        else:
            try:
                number = float(value) if kind is float else int(str(value).strip())
                ok = number == number and abs(number) != float("inf")  # not NaN, not infinite
            except (TypeError, ValueError, OverflowError):
                ok = False
        if not ok:
            what = "a whole number" if kind is int else "a number"
            raise SatoriError(
                f"ms-swift argument {key} must be {what}, not {_shown(value)}",
                hint=f"e.g. -- --{key} 8" if kind is int else f"e.g. -- --{key} 0.5",
            )


def read_recipe_file(path: Path) -> dict[str, Any]:
    """A user's `--config` file as written (before any preset is merged in)."""
    return _read_yaml(Path(path), "config file")


def load_preset(name: str) -> dict[str, Any]:
    if name not in list_presets():
        raise SatoriError(f"unknown preset '{name}'", hint=f"choose one of: {', '.join(list_presets())}")
    return _read_yaml(Path(str(resources.files("satori_cli.presets") / f"{name}.yaml")), "preset")


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` wins key by key; the `swift` and `sft` mappings are merged argument by argument."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if key in STAGE_KEYS.values():
            out[key] = {**(out.get(key) or {}), **(value or {})}
        elif value is not None:
            out[key] = copy.deepcopy(value)
    return out


def resolve_recipe(
    preset: str | None = None,
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Recipe:
    """Preset < `--config` file < flags (`overrides`, None values ignored).

    The preset comes from `preset`, else from the config file's `preset:` key, else `smoke`.
    """
    config_data = _read_yaml(Path(config), "config file") if config else {}
    name = preset or config_data.get("preset") or DEFAULT_PRESET
    merged = _overlay(load_preset(name), config_data)
    merged = _overlay(merged, {k: v for k, v in (overrides or {}).items() if v is not None})
    merged["preset"] = name
    try:
        recipe = Recipe(**merged)
        recipe.gpus = int(recipe.gpus)
        recipe.rollout_gpus = int(recipe.rollout_gpus)
        if recipe.rollout_gpus < 0:
            raise ValueError("rollout_gpus must be 0 or more")
        recipe.min_pixels, recipe.max_pixels = int(recipe.min_pixels), int(recipe.max_pixels)
        recipe.budget  # noqa: B018 - validates min <= max
        recipe.grammar = get_grammar(recipe.grammar).name  # an unknown name is a SatoriError
        check_swift_numbers(recipe.swift)
        check_swift_numbers(recipe.sft or {})
    except (TypeError, ValueError) as exc:
        raise SatoriError(f"invalid recipe ({name}): {exc}") from exc
    return recipe


def parse_passthrough(args: list[str]) -> dict[str, Any]:
    """`["--max_steps", "3", "--reward_weights", "1", "0.5"]`
    -> `{"max_steps": "3", "reward_weights": ["1", "0.5"]}`.

    Arguments after `--` are merged into the recipe's ms-swift arguments (they win), so the
    final command never carries the same flag twice. `--flag=value` is accepted too.
    """
    out: dict[str, Any] = {}
    key: str | None = None
    for token in args:
        if token.startswith("--") and len(token) > 2:
            name, eq, value = token[2:].partition("=")
            key = name.replace("-", "_")
            out[key] = [value] if eq else []
        elif key is None:
            raise SatoriError(
                f"unexpected pass-through argument '{token}'",
                hint="arguments after -- must be ms-swift flags, e.g. -- --max_steps 10",
            )
        else:
            out[key].append(token)
    for name, values in out.items():
        if not values:
            raise SatoriError(f"pass-through flag --{name} has no value", hint="ms-swift flags take a value")
        out[name] = values[0] if len(values) == 1 else values
    return out
