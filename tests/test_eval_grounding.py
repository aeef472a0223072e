"""The grounding benchmark of `satori eval`: prepared SATORI rows scored with the training rewards.

End to end through the real VLMEvalKit pipeline: the tiny model on a prepared sample split, and
the `api` backend against the fake OpenAI-compatible server answering known boxes, whose expected
scores are worked out by hand below (in the resized frame of the paper's pixel budget).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from satori_cli.errors import SatoriError
from satori_cli.evaluation import grounding
from satori_cli.evaluation.orchestrate import shown
from satori_cli.evaluation.plan import Benchmark, resolve_all
from satori_cli.evaluation.sample_bench import write_tiny_bench
from satori_cli.pixels import PixelBudget
from tests.serve_helpers import FakeServer

REPO = Path(__file__).resolve().parents[1]
METRICS = ("format", "box_iou", "box_acc@0.5", "answer", "answer_normalized", "caption")


def _summary(work: Path) -> dict:
    return json.loads((work / "summary.json").read_text())


def _row(image: Path, question: str, boxes, answers, caption="a picture", source=None, **extra) -> dict:
    with Image.open(image) as im:
        width, height = im.size
    row = {
        "id": question[:12],
        "messages": [{"role": "user", "content": f"<image>{question}"}],
        "images": [str(image)],
        "bboxs": boxes,
        "width": width,
        "height": height,
        "possible_answers": answers,
        "image_caption": caption,
    }
    if source:
        row["source"] = source
    row.update(extra)
    return row


def _image(folder: Path, name: str, size: tuple[int, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    Image.new("RGB", size, (255, 255, 255)).save(path)
    return path


def _write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# -- end to end: the tiny model ---------------------------------------------------------------
@pytest.mark.slow
def test_tiny_model_on_a_prepared_val_split_beside_an_mcq_benchmark(satori, tiny_model, tmp_path):
    raw, prepared, lmu, work = tmp_path / "raw", tmp_path / "prepared", tmp_path / "lmu", tmp_path / "work"
    assert satori("data", "sample", "--out", str(raw), "-n", "10").returncode == 0
    made = satori("data", "prepare", str(raw), "--out", str(prepared), "--val-ratio", "0.4")
    assert made.returncode == 0, made.stderr
    val_rows = sum(1 for line in (prepared / "val.jsonl").read_text().splitlines() if line.strip())
    write_tiny_bench(lmu / "TinyBench.tsv")
    result = satori(
        "eval", "--data", str(prepared), "TinyBench", "--model", str(tiny_model), "--gpus", "2",
        "--max-new-tokens", "8", "--data-dir", str(lmu), "--out", str(work),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"val.jsonl of {prepared}" in result.stdout  # says which file of the folder it took
    summary = _summary(work)
    assert summary["ok"]
    by_bench = {r["benchmark"]: r for r in summary["results"]}
    assert set(by_bench) == {"grounding_val", "TinyBench"}
    assert "Overall" in by_bench["TinyBench"]["metrics"]  # the MCQ benchmark is scored as before
    res = by_bench["grounding_val"]
    assert res["ok"] and res["items"] == val_rows and res["judge"] == "satori rewards"
    metrics = res["metrics"]
    for name in METRICS:
        assert 0.0 <= metrics[name] <= 1.0
        assert 0.0 <= metrics[f"source/synthetic-shapes/{name}"] <= 1.0  # the sample set's source
    assert res["inputs"]["images"] == val_rows  # the model saw every image, sizes recorded
    per_row = [json.loads(line) for line in Path(res["per_row"]).read_text().splitlines()]
    assert Path(res["per_row"]).parent == work / "satori"
    assert sorted(r["line"] for r in per_row) == list(range(1, val_rows + 1))
    assert all(set(METRICS) <= set(r) and isinstance(r["output"], str) for r in per_row)
    assert "grounding_val (grounding" in result.stdout and "box_iou" in result.stdout
    assert "summary.csv" in result.stdout
    csv_metrics = {line.split(",")[1] for line in (work / "summary.csv").read_text().splitlines()[1:]}
    assert set(METRICS) <= csv_metrics


# -- end to end: the api backend, scores worked out by hand -------------------------------------
# Under the paper's budget (200704-401408 px, factor 28) Qwen's smart_resize gives:
#   640x480: round(480/28)*28 = 476, round(640/28)*28 = 644; 476*644 = 306544 is inside the budget.
#   200x100: 112x196 = 21952 px is too small, so scale by sqrt(200704/20000) = 3.168 and round up:
#            ceil(100*3.168/28)*28 = 336, ceil(200*3.168/28)*28 = 644.
#   448x448: 448*448 = 200704 = min_pixels exactly: unchanged.
# The model answers in those resized pixels; the reward maps x by W/w and y by H/h.
CASES = {
    # question: (image size, source, GT boxes (original px), answers, completion of SATORI, per-row truth)
    "Which colour is the top-left quarter?": (
        (640, 480), "alpha", [[0, 0, 320, 240]], ["red"],
        # [0,0,322,238] * (640/644, 480/476) = [0,0,320,240]: the GT box exactly -> IoU 1
        "<caption>a red quarter of a white picture</caption> <bbox>[[0,0,322,238]]</bbox> "
        "<answer>red</answer>",
        {"format": 1, "box_iou": 1, "box_acc@0.5": 1, "answer": 1, "answer_normalized": 1},
    ),
    "Is the square on the left?": (
        (200, 100), "alpha", [[0, 0, 100, 100]], ["No"],
        # [161,0,483,336] * (200/644, 100/336) = [50,0,150,100]; with GT [0,0,100,100]:
        # intersection 50*100 = 5000, union 10000 + 10000 - 5000 = 15000 -> IoU 1/3.
        # "No." is not "No" exactly, but is after normalisation.
        "<caption>a grey square</caption> <bbox>[[161,0,483,336]]</bbox> <answer>No.</answer>",
        {"format": 1, "box_iou": 1 / 3, "box_acc@0.5": 0, "answer": 0, "answer_normalized": 1},
    ),
    "What colour is the circle?": (
        (448, 448), "beta", [[10, 10, 60, 60]], ["blue"],
        "I think it is blue",  # no tags at all: every reward is 0
        {"format": 0, "box_iou": 0, "box_acc@0.5": 0, "answer": 0, "answer_normalized": 0},
    ),
    "How many squares are there?": (
        (448, 448), "beta", [[0, 0, 100, 100]], ["2", "two"],
        # identity resize; [0,0,100,60] inside [0,0,100,100]: 6000 / 10000 -> IoU 0.6.
        # Text after </answer>: not well formed (format 0), but its box and answer still count.
        "<caption>two squares</caption> <bbox>[[0,0,100,60]]</bbox> <answer>two</answer> since I counted",
        {"format": 0, "box_iou": 0.6, "box_acc@0.5": 1, "answer": 1, "answer_normalized": 1},
    ),
}  # fmt: skip
# Means over the four rows, by hand from the table above.
EXPECTED = {
    "format": 2 / 4,
    "box_iou": (1 + 1 / 3 + 0 + 0.6) / 4,
    "box_acc@0.5": 2 / 4,
    "answer": 2 / 4,
    "answer_normalized": 3 / 4,
    "source/alpha/box_iou": (1 + 1 / 3) / 2,
    "source/alpha/format": 1.0,
    "source/alpha/answer": 0.5,
    "source/beta/box_iou": 0.3,
    "source/beta/box_acc@0.5": 0.5,
    "source/beta/format": 0.0,
}


def _known_answers(body: dict) -> str:
    """SATORI (system prompt present) answers from CASES; the stock-prompted baseline says a word."""
    user = body["messages"][-1]["content"]
    text = " ".join(p["text"] for p in user if p["type"] == "text")
    if body["messages"][0]["role"] != "system":
        return "red"
    return next(case[4] for question, case in CASES.items() if text.startswith(question))


def _known_rows(folder: Path) -> Path:
    rows = []
    for i, (question, (size, source, boxes, answers, _, _)) in enumerate(CASES.items()):
        image = _image(folder / "images", f"img{i}", size)
        caption = "a red quarter of a white picture" if i == 0 else "a picture of shapes"
        rows.append(_row(image, question, boxes, answers, caption=caption, source=source))
    return _write(folder / "val.jsonl", rows)


def test_resized_sizes_used_by_hand_are_the_budget_s():
    budget = PixelBudget()
    assert budget.resized_wh(640, 480) == (644, 476)
    assert budget.resized_wh(200, 100) == (644, 336)
    assert budget.resized_wh(448, 448) == (448, 448)


@pytest.mark.slow
def test_api_backend_scores_known_boxes_as_computed_by_hand(satori, tmp_path):
    data = _known_rows(tmp_path / "known")
    work = tmp_path / "work"
    with FakeServer(answer=_known_answers) as server:
        result = satori(
            "eval", "--data", str(data), "--backend", "api", "--base-url", server.base_url,
            "--baseline", "--baseline-model", "satori", "--gpus", "2",
            "--data-dir", str(tmp_path / "lmu"), "--out", str(work),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = _summary(work)
    by_model = {r["model"]: r for r in summary["results"]}
    satori_metrics = by_model["satori"]["metrics"]
    for name, value in EXPECTED.items():
        assert satori_metrics[name] == pytest.approx(value, abs=1e-6), name
    assert 0.0 < satori_metrics["caption"] < 1.0
    # The baseline (stock prompt) answered "red" without tags: 0 on every reward.
    assert all(by_model["baseline"]["metrics"][m] == 0.0 for m in METRICS)
    # Per row: the file has each row's output and its scores, by line number.
    per_row = {
        r["line"]: r for r in map(json.loads, Path(by_model["satori"]["per_row"]).read_text().splitlines())
    }
    for line, (question, case) in enumerate(CASES.items(), start=1):
        assert per_row[line]["question"] == question and per_row[line]["output"] == case[4]
        for name, value in case[5].items():
            assert per_row[line][name] == pytest.approx(value, abs=1e-6), (question, name)
    assert per_row[1]["caption"] == pytest.approx(1.0) and per_row[3]["caption"] == 0.0
    assert per_row[2]["boxes_original"] == [pytest.approx([50, 0, 150, 100])]  # mapped to original pixels
    # The requests: SATORI's prompt, the question without <image>, the image, the budget.
    from satori_cli.grammar import load_prompt

    first = next(b for b in server.requests if b["messages"][0]["role"] == "system")
    assert first["messages"][0]["content"] == load_prompt("system")  # as text: swift deploy reads a string
    texts = [p["text"] for p in first["messages"][1]["content"] if p["type"] == "text"]
    assert texts[0].endswith(load_prompt("eval_suffix")) and "<image>" not in texts[0]
    assert first["mm_processor_kwargs"] == {"min_pixels": 200704, "max_pixels": 401408}
    assert len(server.requests) == 8  # 4 rows x 2 models
    # The table: metrics as rows, both models and the delta.
    assert "grounding_val (grounding, 4 rows" in result.stdout and "delta" in result.stdout
    header = (work / "summary.csv").read_text().splitlines()[0]
    assert header == "benchmark,metric,satori,baseline,delta"


def _server_error(body: dict) -> str:
    raise RuntimeError("the model crashed")  # the fake server answers HTTP 500


@pytest.mark.slow
def test_nothing_scorable_fails_the_run(satori, tmp_path):
    image = _image(tmp_path / "images", "ok", (64, 48))
    data = _write(tmp_path / "val.jsonl", [_row(image, "What is it?", [[0, 0, 10, 10]], ["a dot"])])
    work = tmp_path / "work"
    with FakeServer(answer=_server_error) as server:
        result = satori(
            "eval", "--data", str(data), "--backend", "api", "--base-url", server.base_url,
            "--data-dir", str(tmp_path / "lmu"), "--out", str(work),
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "every one of the 1 items failed" in " ".join(result.stderr.split())
    (row,) = _summary(work)["results"]
    assert not row["ok"] and row["failed_items"] == 1


@pytest.mark.slow
def test_vllm_backend_answers_the_rows_in_one_batch(satori, tiny_model, tmp_path):
    """The look-ahead reads this dataset's rows too: every row in one generate call, each answer kept."""
    fake_vllm = Path(__file__).parent / "fake_vllm"
    rows = [  # the fake engine answers <bbox>[[0,0,28,28]]</bbox> <answer>?</answer> for every image
        _row(_image(tmp_path / "images", f"im{i}", (448, 448)), f"Question {i}?", [[0, 0, 28, 28]], ["x"])
        for i in range(3)
    ]
    data, work, log = _write(tmp_path / "val.jsonl", rows), tmp_path / "work", tmp_path / "vllm.jsonl"
    env = {"PYTHONPATH": os.pathsep.join([str(fake_vllm), str(REPO)]), "FAKE_VLLM_LOG": str(log)}
    result = satori(
        "eval", "--data", str(data), "--model", str(tiny_model), "--backend", "vllm",
        "--data-dir", str(tmp_path / "lmu"), "--out", str(work), env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines() if '"generate"' in line]
    assert [c["prompts"] for c in calls] == [3]
    (res,) = _summary(work)["results"]
    # 448x448 is its own resized size: the box [0,0,28,28] is the GT box exactly; "?" is no answer.
    assert res["metrics"]["box_iou"] == pytest.approx(1.0) and res["metrics"]["format"] == 1.0
    assert res["metrics"]["answer"] == 0.0 and res["items"] == 3


# -- malformed rows -----------------------------------------------------------------------------
def test_malformed_rows_fail_naming_each_line_before_anything_runs(satori, tmp_path):
    image = _image(tmp_path / "images", "ok", (64, 48))
    good = _row(image, "What is it?", [[0, 0, 10, 10]], ["a dot"])
    rows = [
        good,
        "{not json",
        {k: v for k, v in good.items() if k != "bboxs"},
        {**good, "images": [str(tmp_path / "images" / "gone.png")]},
        {**good, "width": 65},
        {**good, "possible_answers": "fine", "bboxs": [[0, 0, 10]]},
        [1, 2],
    ]
    data = _write(tmp_path / "bad.jsonl", rows)
    work = tmp_path / "work"
    result = satori(
        "eval", "--data", str(data), "--model", "no/such-model",
        "--data-dir", str(tmp_path / "lmu"), "--out", str(work),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    err = " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and "6 malformed row(s)" in err
    for line, why in [
        (2, "not JSON"),
        (3, "'bboxs' is missing"),
        (4, "image not found"),
        (5, "width x height 65x48 differ from the image's 64x48"),
        (6, "box 0 of 'bboxs'"),
    ]:
        assert f"line {line}: {why}" in err, (line, err)
    assert "and 1 more" in err and not work.exists()  # refused before any model was looked for


def test_read_rows_names_the_line_and_accepts_prepared_variants(tmp_path):
    image = _image(tmp_path, "im", (40, 30))
    rel = _row(image, "Q?", [1, 2, 3, 4], "yes", images=["im.png"])  # relative path, flat box, str answer
    blocks = _row(image, "unused", [[1, 2, 3, 4]], ["y"])
    blocks["messages"] = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q2?"}]}]
    rows = grounding.read_rows(_write(tmp_path / "a.jsonl", [rel, "", blocks]))
    assert [(r.line, r.question, r.bboxs, r.possible_answers) for r in rows] == [
        (1, "Q?", [[1.0, 2.0, 3.0, 4.0]], ["yes"]),
        (3, "Q2?", [[1.0, 2.0, 3.0, 4.0]], ["y"]),
    ]
    assert rows[0].image == str(image.resolve())
    with pytest.raises(SatoriError, match="line 2: no user message"):
        grounding.read_rows(_write(tmp_path / "b.jsonl", [rel, {**rel, "messages": []}]))
    with pytest.raises(SatoriError, match="holds no rows"):
        grounding.read_rows(_write(tmp_path / "c.jsonl", [""]))


# -- resolution, names, table ------------------------------------------------------------------
def test_folder_means_its_val_split_and_names_stay_unique(tmp_path):
    image = _image(tmp_path, "im", (40, 30))
    row = _row(image, "Q?", [[1, 2, 3, 4]], ["a"])
    _write(tmp_path / "run1" / "val.jsonl", [row, row])
    _write(tmp_path / "run2" / "val.jsonl", [row])
    benches = resolve_all(
        [str(tmp_path / "run1"), str(tmp_path / "run1" / "val.jsonl"), str(tmp_path / "run2"), "MMStar"],
        tmp_path / "lmu",
    )
    assert [b.name for b in benches] == ["grounding_val", "grounding_run2_val", "MMStar"]
    assert benches[0].grounding and benches[0].rows == 2 and benches[0].primary == "box_iou"
    assert "val.jsonl of" in benches[0].note and benches[2].primary == "Overall"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SatoriError, match=r"holds no val\.jsonl"):
        resolve_all([str(tmp_path / "empty")], tmp_path / "lmu")


def test_metrics_per_source_and_the_rows_the_table_shows(tmp_path):
    scored = [
        {"source": "a", **dict.fromkeys(METRICS, 1.0)},
        {"source": "b", **dict.fromkeys(METRICS, 0.0)},
        {"source": None, **dict.fromkeys(METRICS, 0.5)},
    ]
    m = grounding.metrics(scored)
    assert list(m)[:6] == list(METRICS) and m["box_iou"] == 0.5
    assert m["source/a/box_iou"] == 1.0 and m["source/b/caption"] == 0.0 and "source/None/format" not in m
    bench = Benchmark("x.jsonl", "grounding_x", None, tmp_path / "x.jsonl", kind="grounding")
    assert [k for k in m if shown(bench, k)] == [*METRICS, "source/a/box_iou", "source/a/answer",
                                                 "source/b/box_iou", "source/b/answer"]  # fmt: skip


def test_format_is_judged_in_the_launched_model_s_grammar():
    """An r1 model's `<think>…<answer>` is well formed for it, not for SATORI's grammar; the worker
    picks the grammar of the model its launch evaluates (one launch per model)."""
    from satori_cli.evaluation.grounding_dataset import SatoriGroundingDataset
    from satori_cli.evaluation.worker import launched_models, register_grounding

    row = grounding.GroundingRow(1, "r", "Q?", "/x.png", [[0, 0, 10, 10]], 448, 448, ["yes"], "c", None)
    r1 = "<think>it is there</think> <answer>yes</answer>"
    assert grounding.score([row], [r1], PixelBudget(), "r1")[0]["format"] == 1.0
    assert grounding.score([row], [r1], PixelBudget())[0]["format"] == 0.0  # default: satori
    assert grounding.score([row], [r1], PixelBudget(), "r1")[0]["answer"] == 1.0

    args = ["--data", "grounding_v", "--model", "baseline", "--work-dir", "w"]
    assert launched_models(args) == ["baseline"]
    spec = {
        "models": {"satori": {"grammar": "r1"}, "baseline": {"grammar": "satori"}},
        "grounding": {"grounding_v": {"path": "/v.jsonl", "min_pixels": 1, "max_pixels": 2}},
    }
    try:
        register_grounding(spec, launched_models(args))
        assert SatoriGroundingDataset.GRAMMAR == "satori"
        register_grounding(spec, ["satori"])
        assert SatoriGroundingDataset.GRAMMAR == "r1"
    finally:
        SatoriGroundingDataset.GRAMMAR = None
        SatoriGroundingDataset.SOURCES.pop("grounding_v", None)
