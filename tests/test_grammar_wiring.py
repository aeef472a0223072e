"""`--grammar` through the commands (issue #17): each grammar's prompt reaches the eval model,
swift and the demo, and a run folder's recorded grammar is followed."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from satori_cli.evaluation.prompting import PromptStyle, chat_messages
from satori_cli.grammar import GRAMMARS, format_completion, get_grammar
from satori_cli.prompts import load_prompt
from satori_cli.train.runinfo import model_grammar, recorded_grammar

sys.path.insert(0, str(Path(__file__).parent))

MESSAGE = [{"type": "image", "value": "/x.png"}, {"type": "text", "value": "Question: what?"}]


def _run_folder(path: Path, grammar: str) -> Path:
    """A `satori train` run folder as far as its record goes, with one checkpoint."""
    (path / "checkpoint-2").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"grammar": grammar, "recipe": {"grammar": grammar}}))
    return path


# -- the record of a run -----------------------------------------------------------------------
def test_a_run_folder_and_its_checkpoints_carry_the_grammar(tmp_path):
    run = _run_folder(tmp_path / "run", "nocap")
    assert recorded_grammar(run) == recorded_grammar(run / "checkpoint-2") == "nocap"
    assert recorded_grammar(tmp_path) is None and recorded_grammar("Qwen/Qwen2.5-VL-3B-Instruct") is None
    assert model_grammar(None, run / "checkpoint-2").name == "nocap"
    assert model_grammar("r1", run).name == "r1"  # the flag wins
    assert model_grammar(None, tmp_path).name == "satori"


# -- eval: the grammar's prompt and suffix reach the model ----------------------------------------
@pytest.mark.parametrize("name", list(GRAMMARS))
def test_eval_prompt_style_follows_the_grammar(name):
    msgs = chat_messages(MESSAGE, PromptStyle.named("satori", name))
    assert msgs[0]["content"][0]["text"] == load_prompt("system", grammar=name)
    assert msgs[1]["content"][1]["text"] == "Question: what?" + load_prompt("eval_suffix", grammar=name)
    assert PromptStyle.named("stock", name) == PromptStyle.stock()


def test_eval_model_classes_take_the_grammar():
    from satori_cli.evaluation.model import SatoriAPI

    model = SatoriAPI("http://127.0.0.1:9/v1", "satori", grammar="satori-v2")
    assert model.style == PromptStyle.satori("satori-v2")
    assert model.style.suffix.startswith(" \nOutput the caption of overall scene first")


def test_eval_dry_run_follows_the_run_folder_and_the_flag(satori, tmp_path):
    run = _run_folder(tmp_path / "run", "r1")
    base = _run_folder(tmp_path / "base-run", "nocap")
    common = ["eval", "--data", "MMStar", "--data-dir", str(tmp_path / "lmu"), "--dry-run"]
    result = satori(
        *common, "--model", str(run / "checkpoint-2"), "--baseline", "--baseline-model", str(base)
    )
    assert result.returncode == 0, result.stderr
    assert '"grammar": "r1"' in result.stdout and '"grammar": "nocap"' in result.stdout
    assert "grammar: satori r1, baseline nocap (stock prompt)" in result.stdout
    flagged = satori(*common, "--model", str(run), "--grammar", "satori-v2")
    assert flagged.returncode == 0 and '"grammar": "satori-v2"' in flagged.stdout
    plain = satori(*common, "--model", str(tmp_path))
    assert plain.returncode == 0 and '"grammar": "satori"' in plain.stdout
    bad = satori(*common, "--model", str(run), "--grammar", "r2")
    assert bad.returncode == 2 and "unknown grammar 'r2'" in bad.stderr and "Traceback" not in bad.stderr


def _r1_answer(body: dict) -> str:
    """A good R1-style model that only answers when asked in R1's words."""
    from eval_fake_server import _colour

    system = body["messages"][0]
    user = body["messages"][-1]["content"]
    text = " ".join(p["text"] for p in user if p["type"] == "text")
    url = next(p["image_url"]["url"] for p in user if p["type"] == "image_url")
    asked_right = system["role"] == "system" and system["content"][0]["text"] == load_prompt(
        "system", grammar="r1"
    )
    asked_right &= text.endswith(load_prompt("eval_suffix", grammar="r1"))
    colour = _colour(url)
    letter = re.search(rf"^([A-Z])\. {colour}$", text, re.M)
    answer = letter.group(1) if letter and asked_right else "?"
    return format_completion("", [], answer, "r1", thinking=f"the square is {colour}\nso {answer}")


@pytest.mark.slow
def test_eval_api_backend_in_the_r1_grammar(satori, tmp_path):
    from satori_cli.evaluation.sample_bench import write_tiny_bench
    from satori_cli.serve.fake_server import FakeServer

    data, work = tmp_path / "lmu", tmp_path / "work"
    write_tiny_bench(data / "MMBench_tiny_satori.tsv")
    with FakeServer(answer=_r1_answer) as server:
        result = satori(
            "eval", "--data", "MMBench_tiny_satori", "--backend", "api", "--base-url", server.base_url,
            "--grammar", "r1", "--data-dir", str(data), "--work-dir", str(work),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((work / "summary.json").read_text())
    (row,) = summary["results"]
    assert row["metrics"]["Overall"] == 1.0  # every item asked in R1's words, every answer read
    assert summary["settings"]["models"][0]["grammar"] == "r1"
    assert len(server.requests) == 8
    import pandas as pd

    preds = pd.read_excel(work / "satori" / "satori_MMBench_tiny_satori.xlsx")
    assert set(preds["prediction"]) <= set("ABCD")
    assert preds["extra_records"].str.startswith("<think>").all()


def test_grammar_help_names_every_grammar(satori):
    for command in (["eval"], ["rewards", "score"]):
        result = satori(*command, "--help")
        assert result.returncode == 0
        for name in GRAMMARS:
            assert name in result.stdout, (command, name)
    assert get_grammar("satori-v2").thinking_tag == "thinking"
