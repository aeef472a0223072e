"""The bundled prompts are the released SATORI-3B's, word for word (reference/satori-rewards.md §4)."""

from __future__ import annotations

import pytest

from satori_cli.errors import SatoriError
from satori_cli.grammar import load_prompt, prompt_path

SYSTEM = (
    "Given an image and a question, follow these steps: First, generate a brief image caption describing "
    "the overall scene. Provide the caption inside <caption> </caption>. Next, determine the relevant "
    "reasoning process for answering the question by identifying the most relevant image regions. Enclose "
    "these coordinates in <bbox>[[x1,y1,x2,y2], ...]</bbox>. Finally, provide the final answer to the "
    "question inside <answer> </answer> tags."
)
SUFFIX = (
    " \nFirst, provide an image caption describing the overall scene inside <caption> </caption>. Then, "
    "output the list of bounding boxes in the format of [[x1,y1,x2,y2], ...] inside <bbox> </bbox>. "
    "Finally, give the final answer in <answer> </answer>."
)


def test_system_prompt_is_verbatim():
    assert load_prompt("system") == SYSTEM


def test_eval_suffix_is_verbatim_including_leading_space_and_newline():
    assert load_prompt("eval_suffix") == SUFFIX


def test_prompt_path_is_a_real_file():
    assert prompt_path("system").read_text().strip() == SYSTEM


def test_errors_are_user_errors():
    with pytest.raises(SatoriError, match="unknown prompt"):
        load_prompt("nope")


def test_prompts_dir_override_replaces_only_the_files_it_has(tmp_path, monkeypatch):
    (tmp_path / "system.txt").write_text("Answer briefly.\n")
    monkeypatch.setenv("SATORI_PROMPTS_DIR", str(tmp_path))
    assert load_prompt("system") == "Answer briefly."
    assert prompt_path("system") == (tmp_path / "system.txt").resolve()
    assert load_prompt("eval_suffix") == SUFFIX  # not overridden: the bundled one


def test_prompts_dir_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("SATORI_PROMPTS_DIR", str(tmp_path / "nope"))
    with pytest.raises(SatoriError, match="SATORI_PROMPTS_DIR"):
        load_prompt("system")


def test_train_dry_run_uses_the_overriding_prompt(satori, tmp_path):
    (tmp_path / "system.txt").write_text("Answer briefly.\n")
    args = ["--preset", "smoke", "--model", "tiny", "--out", str(tmp_path / "run"), "--dry-run"]
    result = satori("train", *args, env={"SATORI_PROMPTS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert f"--system {(tmp_path / 'system.txt').resolve()}" in result.stdout
