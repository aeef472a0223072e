"""The model resolver (`satori_cli.models`): every kind of `--model` and every way it can be wrong.

Run folders here are written by hand (run.json + checkpoint folders with the tiny model's files);
`test_run_folder_e2e.py` checks the same against a real `satori train --preset smoke` run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from satori_cli import models
from satori_cli.config import BASE_MODEL, DEFAULT_MODEL
from satori_cli.errors import SatoriError
from satori_cli.pixels import PAPER_BUDGET, PixelBudget
from satori_cli.tiny_model import reference_file

QWEN = reference_file("config.json")  # the real Qwen2.5-VL-3B-Instruct config
SMOKE = PixelBudget(3136, 12544)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def error(**kwargs) -> str:
    """The one line a user sees when `models.resolve(**kwargs)` refuses."""
    with pytest.raises(SatoriError) as exc:
        models.resolve(**kwargs)
    text = str(exc.value)
    assert "\n" not in text and exc.value.exit_code == 2
    return text


def checkpoint(folder: Path, config: dict | None = None, complete: bool = True) -> Path:
    """A checkpoint folder as the trainer leaves it (weights, config, trainer_state last)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or QWEN))
    (folder / "model.safetensors").write_bytes(b"weights")
    if complete:
        (folder / "trainer_state.json").write_text("{}")
    return folder


def run_folder(root: Path, budget: PixelBudget = SMOKE, **extra) -> Path:
    """A `satori train` run folder: run.json with the resolved recipe's budget."""
    root.mkdir(parents=True)
    recipe = {"preset": "smoke", "min_pixels": budget.min_pixels, "max_pixels": budget.max_pixels}
    (root / "run.json").write_text(json.dumps({"status": "ok", "recipe": recipe, **extra}))
    return root


# -- names, aliases, the hub ----------------------------------------------------------------------
def test_the_default_and_aliases_are_hub_ids_touched_only_when_asked():
    assert models.resolve(None) == models.Model(DEFAULT_MODEL, DEFAULT_MODEL, "hub", False)
    assert models.resolve("satori").path == DEFAULT_MODEL
    assert models.resolve("base").path == BASE_MODEL
    assert models.resolve(None, default=BASE_MODEL).path == BASE_MODEL
    kept = models.resolve("Org/Anything")  # keep: nothing is looked up (a dry run)
    assert (kept.path, kept.kind, kept.local, kept.budget) == ("Org/Anything", "hub", False, None)


@pytest.mark.parametrize("hub", ["check", "download"])
def test_an_uncached_hub_id_offline_is_one_line_naming_the_flag(hub):
    text = error(source="Org/Not-Cached", flag="--baseline-model", hub=hub)  # the tests run offline
    assert text.startswith("--baseline-model Org/Not-Cached is not a local folder")
    assert "HF_HUB_OFFLINE is set" in text and "pass --baseline-model DIR" in text


def test_a_cached_hub_id_resolves_to_its_snapshot_and_is_judged_by_its_config(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for repo, config in (("Org/Qwen", QWEN), ("Org/Llama", {"model_type": "llama"})):
        folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text(COMMIT)
        snapshot = folder / "snapshots" / COMMIT
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text(json.dumps(config))
    got = models.resolve("Org/Qwen", hub="download")
    assert got.path == str(tmp_path / "hub" / "models--Org--Qwen" / "snapshots" / COMMIT) and got.local
    checked = models.resolve("Org/Qwen", hub="check")  # swift / vLLM will load it by name
    assert (checked.path, checked.local, checked.model_type) == ("Org/Qwen", False, "qwen2_5_vl")
    assert "is a 'llama' model" in error(source="Org/Llama", hub="check")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("just-a-name", "neither an existing folder nor a hub repo id"),
        ("./no/such/folder", "no such folder"),
        ("/no/such/folder", "no such folder"),
        ("a/b/c", "neither an existing folder nor a hub repo id"),
    ],
)
def test_names_that_are_neither_a_folder_nor_a_hub_id(source, message):
    assert message in error(source=source)


def test_tiny_is_built_only_when_asked(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setenv("SATORI_MODELS_DIR", str(tmp_path / "empty"))
    planned = models.resolve("tiny")  # a dry run: only where it will be
    assert planned.path == str(tmp_path / "empty" / "tiny-qwen2_5_vl") and not Path(planned.path).exists()
    monkeypatch.setenv("SATORI_MODELS_DIR", str(tiny_model.parent))  # already built: found, not rebuilt
    built = models.resolve("tiny", build=True)
    assert (built.path, built.kind, built.model_type) == (str(tiny_model), "tiny", "qwen2_5_vl")


# -- local folders ---------------------------------------------------------------------------------
def test_a_folder_is_judged_by_its_config_never_its_name(tmp_path):
    fine = checkpoint(tmp_path / "llama-7b-final", complete=False)
    got = models.resolve(str(fine))
    assert (got.path, got.kind, got.model_type, got.run) == (str(fine), "folder", "qwen2_5_vl", None)
    by_arch = {"architectures": ["Qwen2_5_VLForConditionalGeneration"]}
    assert models.resolve(str(checkpoint(tmp_path / "x", by_arch))).model_type == "qwen2_5_vl"
    qwen2 = checkpoint(tmp_path / "y", {"model_type": "qwen2_vl"})
    assert models.resolve(str(qwen2)).model_type == "qwen2_vl"
    llama = checkpoint(tmp_path / "Qwen2.5-VL-3B-Instruct", {"model_type": "llama"})
    assert "is a 'llama' model" in error(source=str(llama), flag="--baseline-model")


def test_folders_that_are_not_checkpoints(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no config.json: not a model checkpoint" in error(source=str(empty))
    (tmp_path / "file").write_text("x")
    assert "is a file" in error(source=str(tmp_path / "file"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert f"{broken / 'config.json'} is not valid JSON" in error(source=str(broken))
    unknown = checkpoint(tmp_path / "unknown", {"hidden_size": 8})
    assert "unknown type" in error(source=str(unknown))


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": ["qwen2_5_vl"]},
        {"model_type": {"name": "qwen2_5_vl"}},
        {"model_type": 7, "architectures": 7},
        {"architectures": "Qwen2_5_VLForConditionalGeneration"},
        {"architectures": [["Qwen2_5_VLForConditionalGeneration"]]},
    ],
)
def test_a_config_with_fields_of_the_wrong_type_is_refused_in_one_line(tmp_path, config):
    assert "satori runs Qwen2.5-VL" in error(source=str(checkpoint(tmp_path / "odd", config)))


def test_a_swift_output_folder_without_run_json_points_at_its_checkpoint(tmp_path):
    checkpoint(tmp_path / "out" / "checkpoint-5")
    text = error(source=str(tmp_path / "out"))
    assert "has no config.json" in text and "checkpoint-5" in text


def test_a_lora_checkpoint_says_how_to_merge_it(tmp_path):
    adapter = tmp_path / "run" / "checkpoint-3"
    run_folder(tmp_path / "run")
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"w")
    (adapter / "trainer_state.json").write_text("{}")
    text = error(source=str(tmp_path / "run"))
    assert "is a LoRA adapter" in text and "swift export --adapters" in text and "--merge_lora true" in text


# -- run folders -----------------------------------------------------------------------------------
def test_a_run_folder_is_its_last_complete_checkpoint_with_the_runs_budget(tmp_path):
    run = run_folder(tmp_path / "run", grammar="satori-r1")
    checkpoint(run / "checkpoint-9")
    checkpoint(run / "checkpoint-10")  # numeric order: 10 comes after 9
    checkpoint(run / "checkpoint-12", complete=False)  # still being saved: no trainer_state.json
    got = models.resolve(str(run), flag="--model")
    assert got.path == str(run / "checkpoint-10") and got.kind == "run" and got.local
    assert got.budget == SMOKE and got.run.folder == run and got.run.grammar == "satori-r1"
    assert got.run.status == "ok"
    assert "budget 3136-12544 px" in got.describe()


def test_a_checkpoint_without_weights_is_not_complete(tmp_path):
    run = run_folder(tmp_path / "run")
    checkpoint(run / "checkpoint-1")
    bare = checkpoint(run / "checkpoint-2")
    (bare / "model.safetensors").unlink()
    (bare / "training_args.bin").write_bytes(b"args")  # every swift checkpoint has it: not weights
    assert models.resolve(str(run)).path == str(run / "checkpoint-1")
    (bare / "pytorch_model.bin").write_bytes(b"w")
    assert models.resolve(str(run)).path == str(bare)


def test_a_checkpoint_with_a_missing_shard_is_not_complete(tmp_path):
    run = run_folder(tmp_path / "run")
    checkpoint(run / "checkpoint-1")
    sharded = checkpoint(run / "checkpoint-2")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    (sharded / "model-00001-of-00002.safetensors").write_bytes(b"w")
    assert models.resolve(str(run)).path == str(run / "checkpoint-1")
    (sharded / "model-00002-of-00002.safetensors").write_bytes(b"w")
    assert models.resolve(str(run)).path == str(sharded)


def test_swifts_versioned_layout_is_found(tmp_path):
    run = run_folder(tmp_path / "run")
    checkpoint(run / "v0-20250101-120000" / "checkpoint-4")
    checkpoint(run / "v1-20250102-120000" / "checkpoint-8")
    assert models.resolve(str(run)).path == str(run / "v1-20250102-120000" / "checkpoint-8")


def test_a_run_without_a_complete_checkpoint_is_one_line(tmp_path):
    run = run_folder(tmp_path / "run")
    text = error(source=str(run), flag="--model")
    assert "the run has no complete checkpoint (none saved; run status: ok)" in text
    checkpoint(run / "checkpoint-2", complete=False)
    assert "(1 incomplete;" in error(source=str(run))


def test_a_checkpoint_inside_a_run_carries_the_runs_budget(tmp_path):
    run = run_folder(tmp_path / "run")
    ckpt = checkpoint(run / "checkpoint-2")
    got = models.resolve(str(ckpt))
    assert got.kind == "folder" and got.path == str(ckpt) and got.budget == SMOKE
    assert models.resolve(str(run / "checkpoint-2" / ".." / "checkpoint-2")).budget == SMOKE
    loose = checkpoint(tmp_path / "elsewhere" / "checkpoint-2")
    assert models.resolve(str(loose)).budget is None  # not in a run folder: no opinion


def test_a_run_json_without_a_budget_or_broken_is_one_line(tmp_path):
    run = tmp_path / "run"
    checkpoint(run / "checkpoint-1")
    (run / "run.json").write_text(json.dumps({"recipe": {"preset": "x"}}))
    assert "records no pixel budget" in error(source=str(run))
    (run / "run.json").write_text(json.dumps({"recipe": {"min_pixels": 9000, "max_pixels": 100}}))
    assert "must not exceed max_pixels" in error(source=str(run))
    (run / "run.json").write_text("{")
    assert f"{run / 'run.json'} is not valid JSON" in error(source=str(run))


# -- the budget ------------------------------------------------------------------------------------
def test_a_run_sets_the_budget_and_a_contradicting_one_is_refused(tmp_path):
    run = run_folder(tmp_path / "run")
    checkpoint(run / "checkpoint-1")
    trained = models.resolve(str(run))
    plain = models.resolve("Org/Base")
    assert models.settle_budget([trained, plain]) == SMOKE  # the base model is scored in the run's frame
    assert models.settle_budget([trained], 3136, 12544) == SMOKE  # agreeing bounds are fine
    with pytest.raises(SatoriError) as exc:
        models.settle_budget([trained], None, 401408, "--min-pixels/--max-pixels")
    text = str(exc.value)
    assert "sets max_pixels 401408, but" in text and "trained with max_pixels 12544" in text
    assert str(run / "run.json") in text and "drop --min-pixels/--max-pixels" in text


def test_two_runs_in_different_budgets_cannot_be_compared(tmp_path):
    a = run_folder(tmp_path / "a")
    checkpoint(a / "checkpoint-1")
    b = run_folder(tmp_path / "b", budget=PAPER_BUDGET)
    checkpoint(b / "checkpoint-1")
    with pytest.raises(SatoriError, match="were trained in different pixel budgets"):
        models.settle_budget([models.resolve(str(a)), models.resolve(str(b))])


def test_without_a_run_the_budget_is_given_or_the_papers():
    assert models.settle_budget([]) == PAPER_BUDGET
    assert models.settle_budget([], 3136, None) == PixelBudget(3136, PAPER_BUDGET.max_pixels)
    with pytest.raises(SatoriError, match="must not exceed"):
        models.settle_budget([], 500000, 1000)


def test_the_tiny_models_folder_copied_into_a_run_is_a_model(tiny_model, tmp_path):
    """A real checkpoint's files (the tiny model's), not only a hand-written config."""
    run = run_folder(tmp_path / "run")
    shutil.copytree(tiny_model, run / "checkpoint-2")
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")
    got = models.resolve(str(run))
    assert got.path == str(run / "checkpoint-2") and got.model_type == "qwen2_5_vl"
