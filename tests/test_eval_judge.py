"""`satori eval --judge NAME --judge-url URL`: the real VLMEvalKit pipeline with a fake LLM judge.

The model (a FakeServer) is right but answers with paraphrases ("it is crimson") that
VLMEvalKit's exact matching cannot map, so only a judge that was really asked scores them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from eval_fake_server import judge_for, paraphrase_for

from satori_cli.evaluation.sample_bench import write_tiny_bench
from tests.serve_helpers import FakeServer

BENCH = "MMBench_tiny_judge"  # "mmbench" in the name: scored circularly, like MMBench


def _eval(satori, tmp_path: Path, model_url: str, *judge: str):
    data = tmp_path / "lmu"
    write_tiny_bench(data / f"{BENCH}.tsv")
    return satori(
        "eval", "--data", BENCH, "--backend", "api", "--base-url", model_url,
        "--data-dir", str(data), "--out", str(tmp_path / "work"), *judge,
    )  # fmt: skip


def _summary(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "work" / "summary.json").read_text())


@pytest.mark.slow
def test_llm_judge_scores_what_exact_matching_cannot(satori, tmp_path):
    with FakeServer(answer=paraphrase_for) as model, FakeServer(answer=judge_for) as judge:
        result = _eval(satori, tmp_path, model.base_url, "--judge", "satori", "--judge-url", judge.base_url)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = _summary(tmp_path)
    (row,) = summary["results"]
    assert row["metrics"]["Overall"] == 1.0 and row["judge"] == "satori" and row["unreadable_items"] == 0
    assert summary["settings"]["judge"] == "satori" and summary["settings"]["judge_url"] == judge.base_url
    prompts = [r["messages"][-1]["content"] for r in judge.requests]
    assert prompts[0] == "hello"  # VLMEvalKit's working() probe
    matched = [p for p in prompts if "Your output:" in p]
    assert len(matched) == 8  # every item needed the judge: exact matching mapped none
    assert all(r["model"] == "satori" for r in judge.requests)
    import pandas as pd

    preds = pd.read_excel(tmp_path / "work" / "satori" / f"satori_{BENCH}.xlsx")
    assert preds["prediction"].str.startswith("it is ").all()


@pytest.mark.slow
def test_judge_that_fails_its_probe_fails_the_run(satori, tmp_path):
    # Up for satori's check (/v1/models), but every chat reply is empty: VLMEvalKit would
    # quietly score with exact matching; satori fails the benchmark and names the judge.
    with FakeServer(answer=paraphrase_for) as model, FakeServer(answer=lambda body: "") as judge:
        result = _eval(satori, tmp_path, model.base_url, "--judge", "satori", "--judge-url", judge.base_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the judge 'satori'" in result.stderr and "did not answer VLMEvalKit's probe" in result.stderr
    (row,) = _summary(tmp_path)["results"]
    assert not row["ok"] and row["judge"] is None and not row["metrics"]


@pytest.mark.slow
def test_unreadable_judge_replies_score_wrong_and_fail_the_run(satori, tmp_path):
    def vague(body: dict) -> str:
        return "Hello!" if body["messages"][-1]["content"] == "hello" else "hard to say"

    with FakeServer(answer=paraphrase_for) as model, FakeServer(answer=vague) as judge:
        result = _eval(satori, tmp_path, model.base_url, "--judge", "satori", "--judge-url", judge.base_url)
    assert result.returncode == 1, result.stdout + result.stderr
    (row,) = _summary(tmp_path)["results"]
    assert row["metrics"]["Overall"] == 0.0  # never a lucky random letter
    assert row["judge"] == "satori" and row["unreadable_items"] >= 1
    assert "gave no readable letter" in result.stderr


def test_judge_that_is_down_is_one_line_before_any_work(satori, tmp_path):
    with FakeServer(answer=paraphrase_for) as model:
        result = _eval(
            satori, tmp_path, model.base_url, "--judge", "satori", "--judge-url", "http://127.0.0.1:9/v1"
        )
        assert not model.requests  # refused before the model was asked anything
    assert result.returncode == 2
    assert "the judge 'satori' is unreachable" in result.stderr and "Traceback" not in result.stderr


def test_judge_name_the_server_does_not_serve_is_one_line(satori, tmp_path):
    with FakeServer(answer=paraphrase_for) as model, FakeServer(answer=judge_for) as judge:
        flags = ("--judge", "gpt-4o-mini", "--judge-url", judge.base_url)
        result = _eval(satori, tmp_path, model.base_url, *flags)
    assert result.returncode == 2
    assert "does not serve 'gpt-4o-mini'" in result.stderr and "--judge satori" in result.stderr


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        (("--judge", "qwen-72b", "--judge-url", "http://127.0.0.1:9/v1"), "SiliconFlow"),
        (("--judge", "Qwen/Qwen2.5-7B-Instruct", "--judge-url", "http://127.0.0.1:9/v1"), "contains '/'"),
        (("--judge", "my-judge"), "needs --judge-url"),
        (("--judge-url", "http://127.0.0.1:9/v1"), "--judge-url needs an LLM judge"),
        (("--judge", "my-judge", "--judge-url", "http://127.0.0.1:abc/v1"), "not an http(s) address"),
        (("--judge", "my-judge", "--judge-url", "ftp://x/v1"), "not an http(s) address"),
        (
            ("--judge", "my-judge", "--judge-url", "http://127.0.0.1:9/v1", "--judge-key", "a b"),
            "printable ASCII",
        ),
    ],
)
def test_judge_flags_that_cannot_work_are_refused(satori, tmp_path, judge, message):
    result = satori("eval", "--data", "MMStar", "--dry-run", "--data-dir", str(tmp_path), *judge)
    assert result.returncode == 2 and message in result.stderr, result.stderr
