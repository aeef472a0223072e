"""The ms-swift plugin: registration under the original names, and a real GRPO step with it."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
from conftest import run_satori

from satori_cli.grammar import format_completion
from satori_cli.process import Command, find_program, run
from satori_cli.rewards import REWARD_FUNCS, REWARDS, plugin_path

# The public contract, written out once here: the names users pass to `--reward_funcs`
# and the class names ms-swift logs (`rewards/<class>/mean`). The table must keep them.
CLASS_OF = {
    "external_format": "SatoriFormat",
    "external_bbox_acc": "SatoriBoxIoU",
    "extern_vqa_acc": "SatoriAnswer",
    "external_caption_acc": "SatoriCaption",
}
# The format rewards of the other output grammars (satori_cli.grammar.GRAMMARS), issue #17.
GRAMMAR_CLASS_OF = {
    "external_format_v2": "SatoriFormatV2",
    "external_format_r1": "SatoriFormatR1",
    "external_format_nocap": "SatoriFormatNocap",
}
OPTIONAL_CLASS_OF = {"external_vqa_norm_acc": "SatoriAnswerNormalized"}


def _load_plugin_with(monkeypatch, module_name: str):
    """Import the plugin file the way swift does (by path) against a registry module."""

    class ORM:  # the 4.x base-class contract: __init__(args=None, **kwargs), __call__ overridden
        def __init__(self, args=None, **kwargs):
            self.args = args

    orms: dict = {}
    registry = types.ModuleType(module_name)
    registry.ORM, registry.orms = ORM, orms
    monkeypatch.setitem(sys.modules, "swift", types.ModuleType("swift"))
    monkeypatch.setitem(sys.modules, module_name, registry)
    if module_name == "swift.plugin":
        monkeypatch.setitem(sys.modules, "swift.rewards", None)  # 3.x: no swift.rewards
    spec = importlib.util.spec_from_file_location("_satori_plugin_under_test", plugin_path())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return orms


def test_the_table_keeps_the_public_names() -> None:
    assert tuple(CLASS_OF) == REWARD_FUNCS
    assert {r.name: r.class_name for r in REWARDS} == {**CLASS_OF, **GRAMMAR_CLASS_OF, **OPTIONAL_CLASS_OF}


@pytest.mark.parametrize("registry", ["swift.rewards", "swift.plugin"])
def test_plugin_registers_the_original_names(monkeypatch, registry) -> None:
    orms = _load_plugin_with(monkeypatch, registry)
    assert {name: cls.__name__ for name, cls in orms.items()} == {
        **CLASS_OF,
        **GRAMMAR_CLASS_OF,
        **OPTIONAL_CLASS_OF,
    }
    text = format_completion("a cat", [[1, 2, 3, 4]], "No.")
    kwargs = {"possible_answers": [["No"], ["no"]], "trainer_state": None}
    assert orms["extern_vqa_acc"](args=object())([text, text], **kwargs) == [0.0, 0.0]
    assert orms["external_vqa_norm_acc"](args=object())([text, "junk"], **kwargs) == [1.0, 0.0]


@pytest.mark.parametrize("grammar", ["satori-v2", "r1", "nocap"])
def test_plugin_format_rewards_follow_their_grammar(monkeypatch, grammar) -> None:
    from satori_cli.grammar import get_grammar

    orms = _load_plugin_with(monkeypatch, "swift.rewards")
    g = get_grammar(grammar)
    own = format_completion("c", [[1, 2, 3, 4]], "No", grammar, thinking="t")
    v1 = format_completion("c", [[1, 2, 3, 4]], "No")
    # swift passes every data set column as a keyword, one named `grammar` included: it changes nothing
    kwargs = {"possible_answers": [["No"]] * 3, "grammar": ["satori"] * 3, "trainer_state": None}
    assert orms[g.format_reward](args=object())([own, v1, own + " more"], **kwargs) == [1.0, 0.0, 0.0]
    assert orms["external_format"](args=object())([own, v1, v1], **kwargs) == [0.0, 1.0, 1.0]
    # the answer reward reads the first <answer> in every grammar
    assert orms["extern_vqa_acc"](args=object())([own, v1, own], **kwargs) == [1.0, 1.0, 1.0]


def test_plugin_never_crashes_training_on_a_bad_batch(monkeypatch) -> None:
    orms = _load_plugin_with(monkeypatch, "swift.rewards")
    reward = orms["external_bbox_acc"]()

    def flaky(completions, **kwargs):
        if len(completions) > 1 or completions[0] == "explode":
            raise RuntimeError("unexpected")
        return [0.5]

    reward.reward = dataclasses.replace(reward.reward, function=flaky)
    assert reward(["ok", "explode"], bboxs=[[], []]) == [0.5, 0.0]


def test_plugin_refuses_to_load_without_the_reward_libraries(monkeypatch) -> None:
    # A caption reward that scored 0 for want of rouge-score would train silently on nothing.
    monkeypatch.setitem(sys.modules, "rouge_score", None)  # what find_spec reports for a missing one
    with pytest.raises(ImportError, match="rouge-score"):
        _load_plugin_with(monkeypatch, "swift.rewards")


def test_plugin_path_is_printed_by_the_cli(satori) -> None:
    result = satori("rewards", "path")
    assert result.returncode == 0
    assert Path(result.stdout.strip()) == plugin_path() and plugin_path().is_file()


@pytest.mark.slow
def test_grpo_step_through_ms_swift_logs_the_four_rewards(tiny_model, tmp_path) -> None:
    from PIL import Image

    image = tmp_path / "square.png"
    Image.new("RGB", (64, 48), "white").save(image)
    rows = [
        {
            "id": str(i),
            "messages": [{"role": "user", "content": "<image>What colour is the square?"}],
            "images": [str(image)],
            "bboxs": [[10, 8, 40, 30]],
            "width": 64,
            "height": 48,
            "possible_answers": ["red"],
            "image_caption": "a red square on a white background",
        }
        for i in range(2)
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    swift = find_program("swift", "install the train extra: pip install 'satori-r1[train]'")
    repo = Path(__file__).resolve().parents[1]
    argv = [
        swift,
        "rlhf",
        "--rlhf_type",
        "grpo",
        "--model",
        str(tiny_model),
        "--model_type",
        "qwen2_5_vl",
        "--template",
        "qwen2_5_vl",
        "--dataset",
        str(data),
        "--external_plugins",
        str(plugin_path()),
        "--reward_funcs",
        *REWARD_FUNCS,
        "--tuner_type",
        "full",
        "--torch_dtype",
        "float32",
        "--num_generations",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        "--max_steps",
        "1",
        "--max_completion_length",
        "16",
        "--max_length",
        "512",
        "--output_dir",
        str(out),
        "--logging_steps",
        "1",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--dataloader_num_workers",
        "0",
        "--dataset_num_proc",
        "1",
        "--log_completions",
        "true",
        "--temperature",
        "1.0",
        "--check_model",
        "false",
    ]
    env = {"MIN_PIXELS": "3136", "MAX_PIXELS": "12544", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)}
    lines: list[str] = []
    code = run(Command([str(a) for a in argv], env=env, cwd=tmp_path), on_line=lines.append)
    assert code == 0, "\n".join(lines[-40:])
    logged = list(out.rglob("completions.jsonl"))
    assert logged, "swift wrote no completions.jsonl"
    records = [json.loads(line) for line in logged[0].read_text().splitlines() if line.strip()]
    assert records
    # ms-swift 4.x logs column-wise: a list per key, one entry per completion
    for cls in CLASS_OF.values():
        values = [v for r in records for v in (r[cls] if isinstance(r[cls], list) else [r[cls]])]
        assert values and all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values), (cls, values)
    assert all(f"rewards/{cls}/mean" in "\n".join(lines) for cls in CLASS_OF.values())

    # the same file scores with `satori rewards score`, one output row per completion
    scores = tmp_path / "scores.jsonl"
    result = run_satori("rewards", "score", str(logged[0]), "--out", str(scores), env=env)
    assert result.returncode == 0, result.stderr
    scored = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(scored) == sum(len(r["completion"]) for r in records)
    logged_format = [v for r in records for v in r["SatoriFormat"]]
    assert [row["external_format"] for row in scored] == logged_format
