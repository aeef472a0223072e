"""A run folder is a model: `--model RUN_DIR` in train, eval, serve and predict, through the CLI.

Each resolves to the run's last checkpoint and uses the run's own pixel budget (run.json), so a
model is served and scored in the frame it was trained in; a budget that contradicts it is
refused. The slow tests use a real `satori train --preset smoke` run (budget 3136-12544 px, far
from the paper's); the fast ones a run folder made from the tiny model's files.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from satori_cli import models
from satori_cli.evaluation.sample_bench import write_tiny_bench
from satori_cli.pixels import PixelBudget
from tests.conftest import run_satori
from tests.serve_helpers import CASES, FakeServer, red_box_image, serving

sys.path.insert(0, str(Path(__file__).parent))
from eval_fake_server import answer_for

SMOKE = PixelBudget(3136, 12544)  # presets/smoke.yaml


def option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def one_line_error(result, *texts: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def made_run(tiny_model, tmp_path_factory) -> Path:
    """A run folder as `satori train` leaves it: run.json (smoke budget) and a checkpoint of real files."""
    run = tmp_path_factory.mktemp("made") / "run"
    shutil.copytree(tiny_model, run / "checkpoint-2")
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")
    recipe = {"preset": "smoke", "min_pixels": SMOKE.min_pixels, "max_pixels": SMOKE.max_pixels}
    (run / "run.json").write_text(json.dumps({"status": "ok", "recipe": recipe}))
    return run


@pytest.fixture(scope="module")
def smoke_run(tiny_model, tmp_path_factory) -> Path:
    """A real `satori train --preset smoke` run (two GRPO steps on CPU, about a minute)."""
    run = tmp_path_factory.mktemp("smoke") / "run"
    home = tmp_path_factory.mktemp("home")
    done = run_satori(
        "train", "--preset", "smoke", "--model", str(tiny_model), "--out", str(run),
        env={"SATORI_HOME": str(home), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run


# -- serve and predict: the demo and the server agree on the run's budget ---------------------------
def test_serve_dry_run_shows_the_checkpoint_and_the_runs_budget(satori, made_run):
    result = satori("serve", "--backend", "transformers", "--model", str(made_run), "--dry-run")
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout.splitlines()[0])
    assert option(words, "--model") == str(made_run / "checkpoint-2")
    assert "MIN_PIXELS=3136" in words and "MAX_PIXELS=12544" in words
    assert f"# model: {made_run / 'checkpoint-2'} (run {made_run}, budget 3136-12544 px)" in result.stdout
    vllm = satori("serve", "--backend", "vllm", "--model", str(made_run), "--dry-run")
    assert vllm.returncode == 0, vllm.stderr
    words = shlex.split(vllm.stdout.splitlines()[0])
    assert json.loads(option(words, "--mm-processor-kwargs")) == SMOKE.processor_kwargs()
    assert option(words, "--max-model-len") == str(1024 + 12544 // 784 + 2048)  # vllm_settings.py


def test_a_budget_that_contradicts_the_run_is_refused_by_serve_and_predict(satori, made_run, tmp_path):
    env = {"MAX_PIXELS": "401408"}
    served = satori("serve", "--backend", "fake", "--model", str(made_run), "--dry-run", env=env)
    one_line_error(served, "MIN_PIXELS/MAX_PIXELS in the environment sets max_pixels 401408", "12544")
    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    asked = satori("predict", str(image), "q", "--model", str(made_run), env=env)
    one_line_error(asked, "trained with max_pixels 12544", "run.json")
    agreeing = satori(
        "serve", "--backend", "fake", "--model", str(made_run), "--dry-run", env={"MIN_PIXELS": "3136"}
    )
    assert agreeing.returncode == 0 and "MAX_PIXELS=12544" in agreeing.stdout


def test_a_served_run_and_predict_with_it_put_the_boxes_on_the_exact_pixels(satori, made_run, tmp_path):
    """The fake backend answers boxes in the run's frame; predict --model RUN maps them back exactly.
    Without --model, predict would resize with the paper's budget and miss the box."""
    size, box = (1920, 1080), CASES[(1920, 1080)]
    image = red_box_image(tmp_path / "in.png", size, box)
    with serving("--backend", "fake", "--model", str(made_run)) as (_, port):
        url = f"http://127.0.0.1:{port}/v1"
        right = satori("predict", str(image), "q", "--base-url", url, "--model", str(made_run), "--json")
        assert right.returncode == 0, right.stderr
        boxes = json.loads(right.stdout)["boxes"]
        assert len(boxes) == 1 and all(abs(a - b) <= 40 for a, b in zip(boxes[0], box, strict=True))
        wrong = satori("predict", str(image), "q", "--base-url", url, "--json")
    assert json.loads(wrong.stdout)["boxes"] != boxes  # another frame: the box lands elsewhere


def test_predict_sends_the_image_resized_to_the_runs_budget(satori, made_run, tmp_path):
    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    with FakeServer(budget=SMOKE) as fake:
        result = satori("predict", str(image), "q", "--base-url", fake.base_url, "--model", str(made_run))
        assert result.returncode == 0, result.stderr
        assert fake.last["received_size"] == list(SMOKE.resized_wh(640, 480))  # 126x98, not 728x546
        assert fake.last["mm_processor_kwargs"] == SMOKE.processor_kwargs()


def test_a_runs_grammar_goes_with_it_to_train_and_predict(satori, made_run, tmp_path):
    """Training on from a run, or asking the server that serves it, uses the grammar it recorded."""
    from satori_cli.grammar import GRAMMARS, load_prompt

    run = tmp_path / "r1-run"
    shutil.copytree(made_run, run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "grammar": "r1"}))
    trained = satori("train", "--preset", "lora", "--model", str(run), "--dry-run")
    assert trained.returncode == 0, trained.stderr
    words = shlex.split(trained.stdout.splitlines()[-1])
    funcs = words[
        words.index("--reward_funcs") + 1 : words.index("--reward_funcs")
        + 1
        + len(GRAMMARS["r1"].reward_funcs)
    ]
    assert tuple(funcs) == GRAMMARS["r1"].reward_funcs
    flagged = satori("train", "--preset", "lora", "--model", str(run), "--grammar", "satori", "--dry-run")
    assert "external_format_r1" not in flagged.stdout  # --grammar wins
    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    with FakeServer(budget=SMOKE) as fake:
        asked = satori("predict", str(image), "q", "--base-url", fake.base_url, "--model", str(run), "--json")
        assert asked.returncode == 0, asked.stderr
        assert fake.requests[-1]["messages"][0]["content"] == load_prompt("system", grammar="r1")
    assert json.loads(asked.stdout)["grammar"] == "r1"


# -- eval ------------------------------------------------------------------------------------------
def test_eval_refuses_a_budget_that_contradicts_the_run(satori, made_run, tmp_path):
    result = satori(
        "eval", "--data", "MMStar", "--model", str(made_run), "--min-pixels", "200704",
        "--data-dir", str(tmp_path), "--dry-run",
    )  # fmt: skip
    one_line_error(result, "--min-pixels/--max-pixels sets min_pixels 200704", "trained with min_pixels 3136")
    other = tmp_path / "paper-run"
    shutil.copytree(made_run, other)
    recipe = {"min_pixels": 200704, "max_pixels": 401408}
    (other / "run.json").write_text(json.dumps({"status": "ok", "recipe": recipe}))
    both = satori(
        "eval", "--data", "MMStar", "--model", str(made_run), "--baseline", "--baseline-model", str(other),
        "--data-dir", str(tmp_path), "--dry-run",
    )  # fmt: skip
    one_line_error(both, "were trained in different pixel budgets")


def test_eval_dry_run_shows_the_checkpoint_and_the_runs_budget(satori, made_run, tmp_path):
    result = satori(
        "eval", "--data", "MMStar", "--model", str(made_run), "--baseline", "--data-dir", str(tmp_path),
        "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "budget 3136-12544 px" in result.stdout
    assert f'"model_path": "{made_run / "checkpoint-2"}"' in result.stdout
    assert '"model_path": "Qwen/Qwen2.5-VL-3B-Instruct"' in result.stdout  # not downloaded in a dry run
    assert result.stdout.count('"min_pixels": 3136') == 2  # the baseline is scored in the run's frame too


@pytest.mark.slow
def test_eval_api_backend_sends_images_resized_to_the_served_runs_budget(satori, made_run, tmp_path):
    data, work = tmp_path / "lmu", tmp_path / "work"
    write_tiny_bench(data / "TinyBench.tsv")
    with FakeServer(answer=answer_for) as server:
        result = satori(
            "eval", "--data", "TinyBench", "--backend", "api", "--base-url", server.base_url,
            "--model", str(made_run), "--data-dir", str(data), "--out", str(work),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((work / "summary.json").read_text())
    settings = summary["settings"]
    assert (settings["min_pixels"], settings["max_pixels"]) == (3136, 12544)
    assert settings["models"][0]["run"] == str(made_run) and settings["models"][0]["path"] == "satori"
    assert {r["model"] for r in server.requests} == {"satori"}  # the server's model, asked by name
    for body in server.requests:
        assert body["mm_processor_kwargs"] == SMOKE.processor_kwargs()
    (row,) = summary["results"]
    assert row["inputs"]["input_wh"] == {"56x56": 8}  # 32x32 items enlarged to min_pixels, by satori


# -- against a real smoke run ----------------------------------------------------------------------
@pytest.mark.slow
def test_a_real_smoke_run_is_found_with_its_checkpoint_and_budget(smoke_run):
    got = models.resolve(str(smoke_run), build=False)
    assert got.path == str(smoke_run / "checkpoint-2") and got.kind == "run"
    assert got.budget == SMOKE and got.run.status == "ok" and got.model_type == "qwen2_5_vl"


@pytest.mark.slow
def test_eval_of_a_real_run_scores_it_in_the_runs_budget(satori, smoke_run, tmp_path):
    data, work = tmp_path / "lmu", tmp_path / "work"
    write_tiny_bench(data / "TinyBench.tsv")
    result = satori(
        "eval", "--data", "TinyBench", "--model", str(smoke_run), "--max-new-tokens", "6",
        "--data-dir", str(data), "--out", str(work),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    settings = json.loads((work / "summary.json").read_text())["settings"]
    assert (settings["min_pixels"], settings["max_pixels"]) == (3136, 12544)
    resolved = settings["resolved"]["satori"]  # what the loaded processor really used
    assert (resolved["min_pixels"], resolved["max_pixels"]) == (3136, 12544)
    (model,) = settings["models"]
    assert model["path"] == str(smoke_run / "checkpoint-2") and model["run"] == str(smoke_run)
    rows = [json.loads(line) for line in (work / "satori" / "satori_TinyBench_inputs.jsonl").open()]
    assert {tuple(r["input_wh"]) for r in rows} == {(56, 56)}  # the run's frame, not the paper's 448x448


@pytest.mark.slow
def test_training_on_from_a_real_run_keeps_its_budget(satori, smoke_run, tmp_path):
    """`--model RUN` starts from its checkpoint, in its budget (the lora preset's would be the paper's)."""
    result = satori("train", "--preset", "lora", "--model", str(smoke_run), "--dry-run")
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout.splitlines()[-1])
    assert option(words, "--model") == str(smoke_run / "checkpoint-2")
    assert "MIN_PIXELS=3136" in words and "MAX_PIXELS=12544" in words
    config = tmp_path / "recipe.yaml"
    config.write_text("max_pixels: 401408\n")
    refused = satori("train", "--config", str(config), "--model", str(smoke_run), "--dry-run")
    one_line_error(refused, f"--config {config} sets max_pixels 401408", "trained with max_pixels 12544")
    scored = satori("rewards", "score", str(smoke_run), "--max-pixels", "401408")
    one_line_error(scored, "--min-pixels/--max-pixels sets max_pixels 401408")
