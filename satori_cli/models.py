"""Which model a `--model` names: one resolver for train, eval, serve, predict and download.

A model is named by a hub id (`Org/Name`), a checkpoint folder, `tiny` (the tiny random model,
built on first use), `base` (Qwen2.5-VL-3B-Instruct), `satori` or nothing (the SATORI checkpoint),
or a `satori train` run folder. A folder is judged by its `config.json` (`model_type`,
`architectures`), never by its name. A run folder is a model with its own settings: it resolves
to its last complete checkpoint and carries the run's pixel budget (and grammar, when recorded)
from `run.json`, so a model is served and scored in the frame it was trained in; a checkpoint
inside a run folder carries them too.

Callers differ only in what they may do to the network and the disk (`hub=`, `build=`): a dry run
touches neither. Nothing heavy is imported here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from satori_cli.config import BASE_MODEL, DEFAULT_MODEL, paths
from satori_cli.errors import SatoriError
from satori_cli.pixels import PixelBudget, given_budget

ALIASES = {"satori": DEFAULT_MODEL, "base": BASE_MODEL}
TINY = "tiny"
# The architectures satori runs, by config.json `model_type`, with their transformers class.
QWEN_VL_CLASSES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
}
RUN_JSON = "run.json"  # written by satori_cli/train/runfolder.py
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHECKPOINT = re.compile(r"^checkpoint-\d+$")
USE = "give a checkpoint folder, a `satori train` run folder, a hub id (Org/Name), `tiny` or `base`"

Kind = Literal["hub", "folder", "tiny", "run"]
# keep: a hub id is returned as named (dry runs; `check_reachable` can follow); check: also refused
# when HF_HUB_OFFLINE is set and it is not cached (swift and vLLM download it themselves); download:
# its local snapshot, cache first.
HubMode = Literal["keep", "check", "download"]


@dataclass(frozen=True)
class Run:
    """What a `satori train` run folder says about the models it wrote."""

    folder: Path
    budget: PixelBudget  # the pixel budget it was trained in
    grammar: str | None = None  # the output grammar, where the run recorded one
    status: str | None = None  # running, ok, failed, interrupted


@dataclass(frozen=True)
class Model:
    """A resolved model: where it is, how it was named, and the run it comes from (if any)."""

    source: str  # what the user named (or the default)
    path: str  # a local folder (absolute), or the hub id when not local
    kind: Kind
    local: bool
    model_type: str | None = None  # from config.json, when known
    run: Run | None = None

    @property
    def budget(self) -> PixelBudget | None:
        """The pixel budget it was trained in, when it comes from a run; None: no opinion."""
        return self.run.budget if self.run else None

    def describe(self) -> str:
        if self.run is None:
            return self.path
        return f"{self.path} (run {self.run.folder}, budget {self.run.budget})"


# -- files ---------------------------------------------------------------------------------------
def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or a one-line SatoriError naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SatoriError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise SatoriError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SatoriError(f"{path} does not hold a JSON object")
    return data


def checked_type(folder: Path, flag: str) -> str:
    """The architecture a checkpoint's `config.json` names (the one reader of it): `qwen2_5_vl` or
    `qwen2_vl`, from `model_type`, else from `architectures`; anything else is refused in one line."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise SatoriError(f"{folder} has no config.json: not a model checkpoint")
    found = read_json(config)
    kind = found.get("model_type")
    if not isinstance(kind, str) or kind not in QWEN_VL_CLASSES:
        archs = found.get("architectures")
        archs = archs if isinstance(archs, list) else []  # a hand-edited config may hold anything
        kind = next((name for name, cls in QWEN_VL_CLASSES.items() if cls in archs), kind)
    if not isinstance(kind, str) or kind not in QWEN_VL_CLASSES:
        what = f"a '{kind}' model" if kind else "a model of unknown type (no model_type in config.json)"
        raise SatoriError(
            f"{_named(flag, folder)} is {what}; satori runs Qwen2.5-VL (or Qwen2-VL) checkpoints"
        )
    return kind


def _named(flag: str, what: object) -> str:
    """`--model X` in a message, or just `X` where the model is not named by a flag."""
    return f"{flag} {what}" if flag else str(what)


# -- names ---------------------------------------------------------------------------------------
def local_path(source: str, flag: str = "", kind: str = "model") -> Path | None:
    """The existing folder `source` names, None when it is a hub id, else one line.

    A name like `runs/x` that does not exist is taken as a hub id, as the hub would.
    """
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SatoriError(f"{path} is a file; give the folder that holds the {kind}")
        return path.resolve()
    named = _named(flag, f"'{source}'")
    if source.startswith(("/", ".", "~")):
        raise SatoriError(f"{named}: no such folder")
    if not _HUB_ID.match(source):
        raise SatoriError(
            f"{named} is neither an existing folder nor a hub repo id (Org/Name)",
            hint=USE if kind == "model" else "give a folder that exists, or a repo id like Org/Name",
        )
    return None


# -- run folders ---------------------------------------------------------------------------------
def is_run_folder(folder: Path) -> bool:
    return (Path(folder) / RUN_JSON).is_file()


def read_run(folder: Path) -> Run:
    """A run folder's settings from its `run.json` (the budget lives in the resolved recipe)."""
    path = Path(folder) / RUN_JSON
    info = read_json(path)
    recipe = info.get("recipe") if isinstance(info.get("recipe"), dict) else {}
    low, high = recipe.get("min_pixels"), recipe.get("max_pixels")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
        raise SatoriError(f"{path} records no pixel budget (recipe.min_pixels / recipe.max_pixels)")
    try:
        budget = PixelBudget(low, high)
    except ValueError as exc:
        raise SatoriError(f"{path}: {exc}") from exc
    grammar = info.get("grammar") or recipe.get("grammar")
    return Run(
        folder=Path(folder).resolve(),
        budget=budget,
        grammar=grammar if isinstance(grammar, str) else None,
        status=info.get("status"),
    )


def _weights(folder: Path) -> list[Path]:
    """The weights files (not `training_args.bin`, which every checkpoint has)."""
    return [p for p in folder.iterdir() if _is_weights(p.name) and p.is_file()]


def _is_weights(name: str) -> bool:
    return name.endswith(".safetensors") or (
        name.endswith(".bin") and name.startswith(("pytorch_model", "adapter_model"))
    )


def _layout_problem(folder: Path) -> str | None:
    """A config, every indexed shard and some weights are there (nothing is read but the indexes)."""
    if not any((folder / name).is_file() for name in ("config.json", "adapter_config.json")):
        return "no config.json"
    for index in folder.glob("*.index.json"):
        try:
            shards = set(read_json(index).get("weight_map", {}).values())
        except SatoriError:
            return f"{index.name} cannot be read"
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing or not shards:
            return f"{index.name} names missing shard(s): {', '.join(missing[:3]) or 'none listed'}"
    if not _weights(folder):
        return "no weights (*.safetensors, pytorch_model*.bin, adapter_model*)"
    return None


def checkpoint_problem(folder: Path, *, resume: bool = False) -> str | None:
    """Why a checkpoint cannot be loaded (or, with `resume`, trained on from), or None.

    Cheap enough for every preflight (a few kB read per file, whatever the model's size): the
    trainer state parses, each safetensors file's header parses and the file is as long as the
    header says, each torch file's zip directory (at its end) reads, every indexed shard exists.
    A truncated or corrupt file is found here instead of minutes later inside swift.
    """
    folder = Path(folder)
    if resume:
        state = folder / "trainer_state.json"
        try:
            steps = json.loads(state.read_text(encoding="utf-8")).get("global_step")
        except (OSError, ValueError, AttributeError) as exc:
            return f"{state.name} cannot be read ({type(exc).__name__})"
        if not isinstance(steps, int):
            return f"{state.name} records no global_step"
    problem = _layout_problem(folder)
    if problem:
        return problem
    torch_files = [p for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".bin") and p.is_file()]
    torch_files += list(folder.glob("global_step*/*.pt"))  # DeepSpeed's optimizer shards
    for path in sorted(set(_weights(folder)) | set(torch_files)):
        problem = _safetensors_problem(path) if path.suffix == ".safetensors" else _torch_file_problem(path)
        if problem:
            return f"{path.name} {problem}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """The header (8-byte length, JSON) parses and the data it describes fits in the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if size < 8 or length > min(size - 8, 100 << 20):
                return f"is truncated or not a safetensors file ({size} bytes)"
            header = json.loads(fh.read(length))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError:
        return "has a corrupt header (not a safetensors file)"
    if not isinstance(header, dict):
        return "has a corrupt header"
    offsets = [
        v.get("data_offsets") for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
    ]
    ends = [o[1] for o in offsets if isinstance(o, list) and len(o) == 2 and isinstance(o[1], int)]
    needed = 8 + length + max(ends, default=0)
    if size < needed:
        return f"is truncated ({size} of {needed} bytes)"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """A torch.save file (a zip archive since torch 1.6) whose directory reads; older pickles pass."""
    import zipfile

    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                return None
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except zipfile.BadZipFile:
        return "is truncated or corrupt (its zip directory does not read)"
    return None


def last_checkpoint(run_folder: Path) -> Path | None:
    """The complete checkpoint with the highest step (swift's `vN-...` subfolders included): saved
    to the end (the trainer writes `trainer_state.json`, which `checkpoints` requires, after the
    weights) with every shard there."""
    from satori_cli.train.runlogs import checkpoints

    complete = [c for c in checkpoints(run_folder) if _layout_problem(c) is None]
    return complete[-1] if complete else None


def run_of(checkpoint: Path) -> Path | None:
    """The run folder a `checkpoint-N` folder sits in, if it was written by `satori train`."""
    from satori_cli.train.runlogs import run_dir_of

    if not _CHECKPOINT.match(checkpoint.name):
        return None
    folder = run_dir_of(checkpoint)
    return folder if is_run_folder(folder) else None


def run_for(model: str | Path | None) -> Run | None:
    """The run a folder stands for: a run folder's own, or that of the run a checkpoint sits in;
    None for anything else (a plain folder, a hub id, a served model name)."""
    if not model:
        return None
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    folder = folder.resolve()
    owner = folder if is_run_folder(folder) else run_of(folder)
    return read_run(owner) if owner is not None else None


def _run_checkpoint(run: Run, flag: str) -> Path:
    found = last_checkpoint(run.folder)
    if found is not None:
        return found
    from satori_cli.train.runlogs import swift_dirs

    folder = run.folder
    written = [p for d in swift_dirs(folder) for p in d.iterdir() if _CHECKPOINT.match(p.name) and p.is_dir()]
    detail = f"{len(written)} incomplete" if written else "none saved"
    raise SatoriError(
        f"{_named(flag, folder)}: the run has no complete checkpoint ({detail}; run status: {run.status})",
        hint="a run saves one every save_steps steps and at its end; pass a checkpoint folder instead",
    )


def _local_model(source: str, folder: Path, flag: str) -> Model:
    run: Run | None = None
    kind: Kind = "folder"
    if not (folder / "config.json").is_file() and is_run_folder(folder):
        run, kind = read_run(folder), "run"
        folder = _run_checkpoint(run, flag)
    elif (owner := run_of(folder)) is not None:
        run = read_run(owner)  # a checkpoint of a run was trained in the run's frame too
    if not (folder / "config.json").is_file():
        if (folder / "adapter_config.json").is_file():
            raise SatoriError(
                f"{_named(flag, folder)} is a LoRA adapter, not a whole model",
                hint=f"merge it first: swift export --adapters {folder} --merge_lora true, "
                f"then pass {folder}-merged",
            )
        latest = last_checkpoint(folder)
        raise SatoriError(
            f"{_named(flag, folder)} has no config.json: not a model checkpoint",
            hint=f"its latest checkpoint is {latest}" if latest else USE,
        )
    return Model(source, str(folder), kind, True, checked_type(folder, flag), run)


# -- the hub -------------------------------------------------------------------------------------
def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def cached_config(repo: str) -> Path | None:
    """The cached `config.json` of a hub model, without any network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json")
    return Path(found) if isinstance(found, str) else None


def _hub_model(source: str, repo: str, flag: str, hub: HubMode) -> Model:
    if hub == "keep":
        return Model(source, repo, "hub", False)
    if hub == "check":
        return check_reachable(Model(source, repo, "hub", False), flag)
    snapshot = _snapshot(repo, flag)
    return Model(source, str(snapshot), "hub", True, checked_type(snapshot, flag))


def check_reachable(model: Model, flag: str = "--model") -> Model:
    """A hub model that a tool will download itself (swift, vLLM): refused now when HF_HUB_OFFLINE
    is set and it is not cached; when cached, its architecture is checked from its config.json."""
    if model.local:
        return model
    config = cached_config(model.path)
    if config is None:
        if hub_offline():
            raise _offline_error(model.path, flag)
        return model
    return replace(model, model_type=checked_type(config.parent, flag))


def _offline_error(repo: str, flag: str) -> SatoriError:
    return SatoriError(
        f"{_named(flag, repo)} is not a local folder, and not in the Hugging Face cache "
        "(HF_HUB_OFFLINE is set)",
        hint=f"on a machine with network run `hf download {repo} --local-dir DIR`, copy DIR here and "
        f"pass {_named(flag, 'DIR')}",
    )


def _snapshot(repo: str, flag: str) -> Path:
    """The hub model's local snapshot: the cache first (no network), then a download with a spinner."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if hub_offline():
        raise _offline_error(repo, flag)
    from satori_cli.console import err_console
    from satori_cli.hub import fetch_hf

    try:
        with err_console().status(f"downloading {repo} from the Hugging Face hub ..."):
            return fetch_hf("model", repo).path
    except SatoriError as exc:
        raise SatoriError(
            f"{_named(flag, repo)} is not a local folder, and {exc.message}", exc.exit_code, exc.hint
        ) from exc


# -- the resolver --------------------------------------------------------------------------------
def resolve(
    source: str | None,
    *,
    flag: str = "--model",
    hub: HubMode = "keep",
    build: bool = False,
    default: str = DEFAULT_MODEL,
) -> Model:
    """The model `source` names (None: `default`), checked; errors are one line naming `flag`.

    `build`: build the tiny model if it is not there yet (else only its path). `hub`: what may be
    done for a hub id (see `HubMode`). Local folders and run folders are always checked: reading
    them costs nothing and needs no network.
    """
    named = source or default
    if named == TINY:
        return _tiny(named, build)
    repo = ALIASES.get(named)
    if repo is not None:
        return _hub_model(named, repo, flag, hub)
    folder = local_path(named, flag)
    if folder is None:
        return _hub_model(named, named, flag, hub)
    return _local_model(named, folder, flag)


def _tiny(source: str, build: bool) -> Model:
    from satori_cli.tiny_model import build_tiny_model

    folder = build_tiny_model(paths().tiny_model) if build else paths().tiny_model  # built on first use
    return Model(source, str(folder), "tiny", True, "qwen2_5_vl")


# -- the budget ----------------------------------------------------------------------------------
def settle_budget(
    models: Sequence[Model],
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    given_by: str = "--min-pixels/--max-pixels",
) -> PixelBudget:
    """The budget to run `models` in: their run's, else the bounds given, else the paper's.

    A run's model is served and scored in the budget it was trained in: a bound the user gives
    that contradicts it is refused (one line), and so are two runs trained in different budgets.
    """
    runs = [(m.source, m.run) for m in models if m.run is not None]
    for source, run in runs[1:]:
        if run.budget != runs[0][1].budget:
            raise SatoriError(
                f"{runs[0][0]} and {source} were trained in different pixel budgets "
                f"({runs[0][1].budget} and {run.budget}); both would be run in one",
                hint="compare models trained in the same budget",
            )
    if runs:
        return run_budget(runs[0][1], runs[0][0], min_pixels, max_pixels, given_by)
    return given_budget(min_pixels, max_pixels, given_by)


def run_budget(
    run: Run, who: str, min_pixels: int | None, max_pixels: int | None, given_by: str
) -> PixelBudget:
    """The run's budget; a bound given that contradicts it is refused (one line)."""
    trained = run.budget
    for name, given, want in (
        ("min_pixels", min_pixels, trained.min_pixels),
        ("max_pixels", max_pixels, trained.max_pixels),
    ):
        if given is not None and given != want:
            raise SatoriError(
                f"{given_by} sets {name} {given}, but {who} was trained with {name} {want} "
                f"({run.folder / RUN_JSON}): a run is served and scored in its own budget",
                hint=f"drop {given_by}; the run's budget {trained} is used",
            )
    return trained
