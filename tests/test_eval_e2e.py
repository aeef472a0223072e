"""`satori eval` end to end on CPU: the real VLMEvalKit pipeline, the tiny model, no mocks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from eval_fake_server import answer_for

from satori_cli.evaluation.sample_bench import write_tiny_bench
from tests.serve_helpers import FakeServer


def _summary(work: Path) -> dict:
    return json.loads((work / "summary.json").read_text())


@pytest.mark.slow
def test_torchrun_two_processes_with_baseline(satori, tiny_model, tmp_path):
    data, work = tmp_path / "lmu", tmp_path / "work"
    write_tiny_bench(data / "TinyBench.tsv")
    result = satori(
        "eval", "--data", "TinyBench", "--model", str(tiny_model),
        "--baseline", "--baseline-model", str(tiny_model),
        "--gpus", "2", "--judge", "exact_matching", "--max-new-tokens", "6",
        "--data-dir", str(data), "--out", str(work),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = _summary(work)
    assert summary["ok"] and summary["settings"]["procs"] == 2
    by_model = {r["model"]: r for r in summary["results"]}
    assert set(by_model) == {"satori", "baseline"}
    for r in by_model.values():
        assert 0.0 <= r["metrics"]["Overall"] <= 1.0
        assert {"colour", "hue", "shade", "perception", "reasoning"} <= set(r["metrics"])
        assert r["items"] == 8
    status = json.loads((work / "satori" / "status.json").read_text())
    assert status["world_size"] == 2
    resolved = summary["settings"]["resolved"]
    assert resolved["satori"]["devices"] == {"0": "cpu", "1": "cpu"}
    assert len(resolved["satori"]["pids"]) == 2  # two ranks, and the baseline in other processes:
    assert not set(resolved["satori"]["pids"]) & set(resolved["baseline"]["pids"])
    import pandas as pd

    preds = pd.read_excel(work / "satori" / "satori_TinyBench.xlsx")
    assert {"prediction", "extra_records"} <= set(preds.columns)  # answer scored, raw output kept
    assert (work / "summary.csv").read_text().splitlines()[0] == "benchmark,metric,satori,baseline,delta"
    assert "TinyBench (accuracy)" in result.stdout and "delta" in result.stdout


@pytest.mark.slow
def test_api_backend_scores_extracted_answers(satori, tmp_path):
    data, work = tmp_path / "lmu", tmp_path / "work"
    # "mmbench" in the name makes VLMEvalKit score the rotations circularly, like MMBench.
    write_tiny_bench(data / "MMBench_tiny_satori.tsv")
    with FakeServer(answer=answer_for) as server:
        result = satori(
            "eval", "--data", "MMBench_tiny_satori", "--backend", "api", "--base-url", server.base_url,
            "--gpus", "2", "--data-dir", str(data), "--out", str(work),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = _summary(work)["results"]
    assert row["model"] == "satori" and row["metrics"]["Overall"] == 1.0
    assert len(server.requests) == 8
    from satori_cli.grammar import load_prompt

    first = server.requests[0]
    assert first["model"] == "satori"  # the served model name, as /v1/models lists it
    assert first["messages"][0]["content"] == load_prompt("system")  # as text: swift deploy reads a string
    import pandas as pd

    preds = pd.read_excel(work / "satori" / "satori_MMBench_tiny_satori.xlsx")
    assert set(preds["prediction"]) <= set("ABCD")
    assert preds["extra_records"].str.contains("<answer>").all()


@pytest.mark.slow
def test_missing_tsv_fails_naming_the_file(satori, tiny_model, tmp_path):
    result = satori(
        "eval", "--data", "NoSuchBench", "--model", str(tiny_model),
        "--data-dir", str(tmp_path / "lmu"), "--out", str(tmp_path / "work"),
    )  # fmt: skip
    assert result.returncode == 1
    assert "NoSuchBench.tsv" in result.stderr and "Traceback" not in result.stderr
    assert not _summary(tmp_path / "work")["ok"]


@pytest.mark.slow
def test_a_model_that_raises_fails_the_run(satori, tiny_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model.iterdir():  # everything but the weights: loading raises in the worker
        if f.is_file() and f.suffix != ".safetensors":
            (broken / f.name).write_bytes(f.read_bytes())
    data = tmp_path / "lmu"
    write_tiny_bench(data / "TinyBench.tsv")
    result = satori(
        "eval", "--data", "TinyBench", "--model", str(broken),
        "--data-dir", str(data), "--out", str(tmp_path / "work"),
    )  # fmt: skip
    assert result.returncode == 1
    assert "1 of 1 evaluations failed" in result.stderr and "TinyBench" in result.stderr


def test_vllm_dry_run_shows_one_process_launch(satori, tiny_model, tmp_path):
    result = satori(
        "eval", "MMStar", "--data", "MMBench", "--model", str(tiny_model), "--backend", "vllm",
        "--gpus", "2", "--data-dir", str(tmp_path), "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "MMBench -> MMBench_DEV_EN" in out and "no public answers" in out
    assert "-m satori_cli.evaluation.worker" in out and "torchrun" not in out
    assert '"tensor_parallel": 2' in out and '"backend": "vllm"' in out
    assert "--data MMBench_DEV_EN MMStar" in out


def test_unreachable_hub_model_is_one_line(satori, tmp_path):
    result = satori("eval", "--data", "MMStar", "--model", "justairr/SATORI", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "not a local folder" in result.stderr and "Traceback" not in result.stderr


def test_existing_results_are_not_silently_reused(satori, tiny_model, tmp_path):
    """An earlier evaluation's folder needs --overwrite (VLMEvalKit would reuse its predictions);
    a folder of something else is refused even then."""
    earlier, other = tmp_path / "work", tmp_path / "other"
    (earlier / "satori").mkdir(parents=True)
    (earlier / "summary.json").write_text("{}")
    (other / "notes").mkdir(parents=True)
    args = ("eval", "--data", "MMStar", "--model", str(tiny_model), "--data-dir", str(tmp_path))
    result = satori(*args, "--out", str(earlier))
    assert result.returncode == 2 and "--overwrite" in result.stderr, result.stderr
    for flags in ((), ("--overwrite",)):
        result = satori(*args, "--out", str(other), *flags)
        assert result.returncode == 2 and "holds no satori evaluation" in result.stderr, result.stderr
    assert sorted(p.name for p in other.iterdir()) == ["notes"]


def test_api_backend_without_server_is_one_line(satori, tmp_path):
    result = satori(
        "eval", "--data", "MMStar", "--backend", "api", "--base-url", "http://127.0.0.1:9/v1",
        "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2 and "no OpenAI-compatible server" in result.stderr
