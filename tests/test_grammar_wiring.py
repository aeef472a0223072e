"""`--grammar` through the commands (issue #17): each grammar's prompt reaches the eval model,
swift and the demo, and a run folder's recorded grammar is followed."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from satori_cli.evaluation.prompting import PromptStyle, chat_messages
from satori_cli.grammar import GRAMMARS, format_completion, get_grammar, load_prompt
from satori_cli.train.runfolder import model_grammar, recorded_grammar
from tests.conftest import prepared as _prepared

sys.path.insert(0, str(Path(__file__).parent))
import test_train_plan

swift_parser = test_train_plan.swift_parser  # the fixture: ms-swift 4.x's own argument parser

MESSAGE = [{"type": "image", "value": "/x.png"}, {"type": "text", "value": "Question: what?"}]


def _checkpoint(path: Path) -> Path:
    """A whole Qwen2.5-VL checkpoint as far as satori looks (config, weights, trainer state last)."""
    from satori_cli.tiny_model import reference_file

    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(reference_file("config.json")))
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "trainer_state.json").write_text("{}")
    return path


def _run_folder(path: Path, grammar: str) -> Path:
    """A `satori train` run folder as far as its record goes, with one checkpoint."""
    _checkpoint(path / "checkpoint-2")
    recipe = {"grammar": grammar, "min_pixels": 3136, "max_pixels": 12544}  # satori records its budget too
    (path / "run.json").write_text(json.dumps({"grammar": grammar, "recipe": recipe}))
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
    assert PromptStyle.named("stock", name) == PromptStyle(system=None, suffix="")


def test_eval_model_classes_take_the_grammar():
    from satori_cli.evaluation.model import SatoriAPI

    model = SatoriAPI("http://127.0.0.1:9/v1", "satori", grammar="satori-v2")
    assert model.style == PromptStyle.named("satori", "satori-v2")
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
    plain = satori(*common, "--model", str(_checkpoint(tmp_path / "plain")))
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
    asked_right = system["role"] == "system" and system["content"] == load_prompt("system", grammar="r1")
    asked_right &= text.endswith(load_prompt("eval_suffix", grammar="r1"))
    colour = _colour(url)
    letter = re.search(rf"^([A-Z])\. {colour}$", text, re.M)
    answer = letter.group(1) if letter and asked_right else "?"
    return format_completion("", [], answer, "r1", thinking=f"the square is {colour}\nso {answer}")


@pytest.mark.slow
def test_eval_api_backend_in_the_r1_grammar(satori, tmp_path):
    from satori_cli.evaluation.sample_bench import write_tiny_bench
    from tests.serve_helpers import FakeServer

    data, work = tmp_path / "lmu", tmp_path / "work"
    write_tiny_bench(data / "MMBench_tiny_satori.tsv")
    with FakeServer(answer=_r1_answer) as server:
        result = satori(
            "eval", "--data", "MMBench_tiny_satori", "--backend", "api", "--base-url", server.base_url,
            "--grammar", "r1", "--data-dir", str(data), "--out", str(work),
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


# -- train: the grammar's prompt file and rewards reach swift ------------------------------------
def _swift_argv(stdout: str) -> list[str]:
    import shlex

    (line,) = [line for line in stdout.splitlines() if " rlhf " in line]
    argv = shlex.split(line)
    return argv[argv.index("rlhf") + 1 :]


def _flag(argv: list[str], name: str) -> list[str]:
    start = argv.index(name) + 1
    end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
    return argv[start:end]


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_train_dry_run_sends_the_grammars_prompt_and_rewards_to_swift(satori, swift_parser, tmp_path, name):
    from satori_cli.grammar import prompt_path
    from satori_cli.rewards import plugin_path, rewards_for

    data = _prepared(tmp_path)
    result = satori(
        "train", "--preset", "paper", "--grammar", name, "--data", str(data),
        "--out", str(tmp_path / "run"), "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv = _swift_argv(result.stdout)
    ns, unknown = swift_parser.parse_known_args(argv)  # ms-swift 4.x's own parser takes it whole
    assert unknown == [] and ns.reward_funcs == list(rewards_for(name))
    assert _flag(argv, "--system") == [str(prompt_path("system", name))] == [ns.system]
    assert tuple(_flag(argv, "--reward_funcs")) == rewards_for(name)
    assert _flag(argv, "--external_plugins") == [str(plugin_path())]
    g = get_grammar(name)
    assert f"# grammar {name}: {g.shape()}" in result.stdout and g.prompt_source in result.stdout
    assert not (tmp_path / "run").exists()


def test_train_grammar_from_a_config_file_and_refusals(satori, tmp_path):
    data = _prepared(tmp_path)
    config = tmp_path / "recipe.yaml"
    config.write_text("preset: paper\ngrammar: nocap\n")
    common = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--dry-run"]
    result = satori(*common, "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert _flag(_swift_argv(result.stdout), "--reward_funcs") == list(GRAMMARS["nocap"].reward_funcs)
    flag_wins = satori(*common, "--config", str(config), "--grammar", "satori-v2")
    assert "external_format_v2" in flag_wins.stdout and "external_format_nocap" not in flag_wins.stdout
    bad = satori(*common, "--grammar", "v3")
    assert bad.returncode == 2 and "unknown grammar 'v3'" in bad.stderr and "Traceback" not in bad.stderr
    config.write_text("grammar: think\n")
    assert "unknown grammar 'think'" in satori(*common, "--config", str(config)).stderr


def test_train_resume_keeps_the_runs_grammar(satori, tmp_path):
    run = _run_folder(tmp_path / "run", "r1")
    data = _prepared(tmp_path)
    common = [
        "train",
        "--preset",
        "paper",
        "--data",
        str(data),
        "--out",
        str(run),
        "--resume",
        "--dry-run",
    ]
    result = satori(*common)
    assert result.returncode == 0, result.stderr
    assert tuple(_flag(_swift_argv(result.stdout), "--reward_funcs")) == GRAMMARS["r1"].reward_funcs
    refused = satori(*common, "--grammar", "satori")
    assert refused.returncode == 2 and "trained in the r1 grammar" in refused.stderr


def test_report_gallery_judges_completions_in_the_runs_grammar(tmp_path):
    from satori_cli.train.report import write_gallery

    run = _run_folder(tmp_path / "run", "r1")
    logged = {"completion": ["<think>t</think> <answer>red</answer>"], "solution": ["0"], "step": [1]}
    (run / "completions.jsonl").write_text(json.dumps(logged) + "\n")
    (tmp_path / "report").mkdir()
    page = write_gallery(run, tmp_path / "report", 5).read_text()
    assert "<b>answer</b> red · well-formed" in page


@pytest.mark.slow
def test_smoke_train_in_the_r1_grammar_records_it(satori, tmp_path, tiny_model):
    """Real GRPO steps through ms-swift with the r1 prompt and the r1 format reward from the plugin."""
    from satori_cli.train import runlogs

    run = tmp_path / "run"
    result = satori(
        "train", "--preset", "smoke", "--grammar", "r1", "--model", str(tiny_model), "--out", str(run),
        "--", "--max_steps", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["grammar"] == "r1" and info["recipe"]["grammar"] == "r1"
    assert recorded_grammar(runlogs.latest_checkpoint(run)) == "r1"
    assert set(runlogs.reward_components(runlogs.read_metrics(run))) == {"SatoriFormatR1", "SatoriAnswer"}
    scored = satori("rewards", "score", str(run))
    assert scored.returncode == 0, scored.stderr
    assert "grammar r1" in scored.stdout and "external_format_r1" in scored.stdout


# -- serve, predict and the demo: asked in the grammar, read in the grammar ------------------------
def test_parsed_panel_shows_each_grammars_parts(tmp_path):
    from PIL import Image

    from satori_cli.serve.client import interpret, prepare_image
    from satori_cli.serve.demo import parsed_markdown

    prepared = prepare_image(Image.new("RGB", (640, 480), "white"))
    v2 = format_completion("a ball", [[10, 10, 50, 50]], "red", "satori-v2", thinking="round & <red>")
    panel = parsed_markdown(interpret(v2, prepared, grammar="satori-v2"))
    assert "**Caption:** a ball" in panel and "**Thinking:** round &amp; &lt;red&gt;" in panel
    assert "**Answer:** red" in panel and "box 1" in panel and "Not in" not in panel
    r1 = interpret("<think>t</think> <bbox>[[1,2,3,4]]</bbox> <answer>red</answer>", prepared, grammar="r1")
    assert r1.boxes == ()  # the grammar has no boxes: nothing is drawn
    panel = parsed_markdown(r1)
    assert "Caption" not in panel and "Boxes" not in panel and "**Thinking:** t" in panel
    assert "_Not in r1 format: tags out of order, or text outside the tags_" in panel
    nocap = parsed_markdown(
        interpret("<bbox>[[1,2,3,4]]</bbox><answer>a</answer>", prepared, grammar="nocap")
    )
    assert "Caption" not in nocap and "Thinking" not in nocap and "box 1" in nocap
    assert "Thinking" not in parsed_markdown(interpret(V1_TEXT, prepared))


V1_TEXT = format_completion("a ball", [[10, 10, 50, 50]], "red")


def test_the_demo_renders_a_v2_answer_with_its_thinking(tmp_path, monkeypatch):
    """The demo in satori-v2 against the fake backend, which answers in the grammar it is asked in."""
    from gradio_client import Client, handle_file

    from satori_cli.serve.demo import build_demo, launch_demo
    from tests.serve_helpers import CASES, FakeServer, free_port, red_box_image
    from tests.test_serve_demo import mask_bbox

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # not the shared /tmp/gradio

    size, box = (640, 480), CASES[(640, 480)]
    with FakeServer() as fake:
        port = free_port()
        demo = launch_demo(build_demo(fake.base_url, timeout=10, grammar="satori-v2"), port=port, block=False)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path))
            image = red_box_image(tmp_path / "in.png", size, box)
            annotated, parsed, raw = client.predict(
                handle_file(str(image)), "where?", 0.0, 512, api_name="/ask"
            )
        finally:
            demo.close()
        system = fake.requests[-1]["messages"][0]["content"]
    assert system == load_prompt("system", grammar="satori-v2")  # the demo asked in v2's words
    assert raw.startswith("<caption>") and "</bbox> <thinking>" in raw and raw.endswith("</answer>")
    assert (
        "**Thinking:** the region at" in parsed and "**Caption:**" in parsed and "**Answer:** red" in parsed
    )
    assert "Not in" not in parsed
    assert mask_bbox(annotated["annotations"][0]["image"]) == box  # boxes drawn on the exact pixels


@pytest.mark.parametrize("name", ["r1", "satori-v2", "nocap"])
def test_predict_asks_and_reads_in_the_grammar(satori, tmp_path, name):
    from tests.serve_helpers import CASES, FakeServer, red_box_image

    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    with FakeServer() as fake:
        result = satori(
            "predict", str(image), "where?", "--base-url", fake.base_url, "--grammar", name, "--json"
        )
        shown = satori("predict", str(image), "where?", "--base-url", fake.base_url, "--grammar", name)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    g = get_grammar(name)
    assert got["grammar"] == name and got["well_formed"] and got["answer"] == "red"
    assert (got["thinking"] is not None) == bool(g.thinking_tag)
    assert got["boxes"] == ([list(CASES[(640, 480)])] if g.has_boxes else [])
    assert shown.returncode == 0 and ("thinking:" in shown.stdout) == bool(g.thinking_tag)
    assert ("caption:" in shown.stdout) == g.has_caption and "not in " not in shown.stdout


def test_serve_follows_the_run_folders_grammar(satori, tmp_path):
    run = _run_folder(tmp_path / "run", "satori-v2")
    result = satori("serve", "--backend", "fake", "--model", str(run / "checkpoint-2"), "--ui", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "(grammar satori-v2)" in result.stdout
    flagged = satori("serve", "--backend", "fake", "--ui", "--dry-run", "--grammar", "nocap")
    assert "(grammar nocap)" in flagged.stdout
