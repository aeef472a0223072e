"""Fast tests of `satori eval`'s pieces: names, prompts, answer extraction, launch, result files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from satori_cli.decoding import Decoding
from satori_cli.errors import SatoriError
from satori_cli.evaluation.plan import EvalPlan, ModelSpec, default_data_dir, resolve, resolve_all
from satori_cli.evaluation.prompting import (
    PromptStyle,
    api_payload,
    chat_messages,
    prediction_record,
    vllm_engine_kwargs,
)
from satori_cli.evaluation.results import Outcome, collect, read_acc_csv, write_summary
from satori_cli.grammar import load_prompt
from satori_cli.pixels import PAPER_BUDGET, PixelBudget

sys.path.insert(0, str(Path(__file__).parent))
from satori_cli.evaluation.sample_bench import write_tiny_bench


# -- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("MMBench", "MMBench_DEV_EN"),
        ("mmbench", "MMBench_DEV_EN"),
        ("MMStar", "MMStar"),
        ("mmstar", "MMStar"),
    ],
)
def test_user_names_map_to_scorable_splits(tmp_path, typed, name):
    bench = resolve(typed, tmp_path)
    assert bench.name == name
    assert bench.tsv == tmp_path / f"{name}.tsv"
    assert not bench.given_path


def test_mmbench_mapping_says_why(tmp_path):
    assert "no public answers" in resolve("MMBench", tmp_path).note


def test_vlmeval_names_pass_through_and_duplicates_collapse(tmp_path):
    benches = resolve_all(["MMBench", "MMBench_DEV_EN", "MathVista_MINI"], tmp_path)
    assert [b.name for b in benches] == ["MMBench_DEV_EN", "MathVista_MINI"]


def test_test_split_is_refused_with_the_dev_hint(tmp_path):
    with pytest.raises(SatoriError, match="no public answers") as info:
        resolve("MMBench_TEST_EN", tmp_path)
    assert "MMBench_DEV_EN" in info.value.hint


def test_local_tsv_path_is_read_where_it_is_and_nothing_is_written(tmp_path):
    src = write_tiny_bench(tmp_path / "mine" / "MyBench.tsv")
    data_dir = tmp_path / "lmu"
    bench = resolve(str(src), data_dir)
    assert bench.name == "MyBench" and bench.present and bench.given_path
    assert bench.tsv == src.resolve()
    assert not data_dir.exists()  # resolving (and a dry run) writes nothing


def test_a_run_with_a_local_tsv_reads_from_its_own_data_folder(tmp_path):
    """The user's TSV and the official TSVs data_dir holds are linked into WORK_DIR/data, which
    is the launches' LMUData; data_dir gets nothing, a missing official TSV is not linked."""
    from satori_cli.evaluation.orchestrate import prepare_work_dir
    from satori_cli.evaluation.plan import SATORI_NAME, EvalPlan, ModelSpec

    src = write_tiny_bench(tmp_path / "mine" / "MyBench.tsv")
    data_dir, work = tmp_path / "lmu", tmp_path / "work"
    write_tiny_bench(data_dir / "MMStar.tsv")
    before = sorted(p.name for p in data_dir.iterdir())
    benches = resolve_all([str(src), "MMStar", "MMBench"], data_dir)
    plan = EvalPlan(benches, [ModelSpec(SATORI_NAME, "m", "m", "satori")], work, data_dir)
    assert plan.lmu_dir == work / "data"
    prepare_work_dir(plan, overwrite=False)
    assert (work / "data" / "MyBench.tsv").resolve() == src.resolve()
    assert (work / "data" / "MMStar.tsv").resolve() == (data_dir / "MMStar.tsv").resolve()
    assert not (work / "data" / "MMBench_DEV_EN.tsv").exists()
    assert sorted(p.name for p in data_dir.iterdir()) == before
    command = plan.command(plan.models[0])  # one model: one launch
    assert command.env["LMUData"] == str(work / "data")
    with pytest.raises(SatoriError, match="already holds results"):
        prepare_work_dir(plan, overwrite=False)  # its data folder counts as results
    prepare_work_dir(plan, overwrite=True)
    assert (work / "data" / "MyBench.tsv").is_file()


def test_official_benchmarks_alone_read_the_data_dir(tmp_path):
    from satori_cli.evaluation.plan import SATORI_NAME, EvalPlan, ModelSpec

    plan = EvalPlan(
        resolve_all(["MMStar"], tmp_path / "lmu"), [ModelSpec(SATORI_NAME, "m", "m", "satori")],
        tmp_path / "work", tmp_path / "lmu",
    )  # fmt: skip
    assert plan.lmu_dir == tmp_path / "lmu"


def test_two_local_tsvs_of_one_name_are_refused(tmp_path):
    a = write_tiny_bench(tmp_path / "a" / "Bench.tsv")
    b = write_tiny_bench(tmp_path / "b" / "Bench.tsv")
    with pytest.raises(SatoriError, match="two benchmarks would be named 'Bench'"):
        resolve_all([str(a), str(b)], tmp_path / "lmu")
    assert len(resolve_all([str(a), str(a)], tmp_path / "lmu")) == 1


def test_default_data_dir_is_satoris_own_unless_lmudata_is_set(monkeypatch, satori_home):
    monkeypatch.delenv("LMUData", raising=False)
    assert default_data_dir() == satori_home / "data" / "vlmeval"
    monkeypatch.setenv("LMUData", "/somewhere/lmu")
    assert default_data_dir() == Path("/somewhere/lmu")


def test_missing_local_tsv_path_is_a_user_error(tmp_path):
    with pytest.raises(SatoriError, match="not found"):
        resolve(str(tmp_path / "nope.tsv"), tmp_path)


# -- prompts and answers ----------------------------------------------------------------------
MESSAGE = [{"type": "image", "value": "/x.png"}, {"type": "text", "value": "Question: what?"}]


def test_satori_prompt_uses_the_shared_prompt_files():
    msgs = chat_messages(MESSAGE, PromptStyle.named("satori"))
    assert msgs[0] == {"role": "system", "content": [{"type": "text", "text": load_prompt("system")}]}
    assert msgs[1]["content"][0] == {"type": "image"}
    assert msgs[1]["content"][1]["text"] == "Question: what?" + load_prompt("eval_suffix")


def test_stock_prompt_is_the_question_alone():
    msgs = chat_messages(MESSAGE, PromptStyle.named("stock"))
    assert [m["role"] for m in msgs] == ["user"]
    assert msgs[0]["content"][1]["text"] == "Question: what?"


@pytest.mark.parametrize(
    ("raw", "answer"),
    [
        ("<caption>a cat</caption> <bbox>[[1,2,3,4]]</bbox> <answer>B</answer>", "B"),
        ("<caption>x</caption>\n<answer>\nC\n</answer>", "C"),  # multi-line: the original's regex missed it
        ("<answer> A </answer> trailing <answer>D</answer>", "A"),  # the first tag wins
        ("The answer is B", "The answer is B"),  # no tags: judged on what it said
        ("", ""),
    ],
)
def test_prediction_keeps_raw_output_and_scores_the_answer(raw, answer):
    record = prediction_record(raw)
    assert record == {"prediction": answer, "extra_records": raw}


def test_api_payload_sends_the_image_resized_to_the_budget_the_prompt_and_greedy(tmp_path):
    import base64
    import io

    from PIL import Image

    img = tmp_path / "i.png"
    Image.new("RGB", (640, 480), (1, 2, 3)).save(img)
    message = [{"type": "image", "value": str(img)}, {"type": "text", "value": "Q"}]
    budget = PixelBudget(3136, 50176)
    body, sent = api_payload(message, PromptStyle.named("satori"), "m", budget, Decoding(max_new_tokens=64))
    assert body["model"] == "m" and body["max_tokens"] == 64 and body["temperature"] == 0.0
    assert body["repetition_penalty"] == 1.0 and body["top_p"] == 1.0 and body["top_k"] == 0
    assert body["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 50176}
    system, user = body["messages"]
    assert system == {"role": "system", "content": load_prompt("system")}  # text: swift deploy reads a string
    url = user["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as received:
        # The server's own resize is then the identity.
        assert received.size == budget.resized_wh(640, 480) == sent[0].resized.size
    assert user["content"][1] == {"type": "text", "text": "Q" + load_prompt("eval_suffix")}


def test_vllm_engine_gets_the_pixel_budget_and_a_context_for_the_longest_request():
    kwargs = vllm_engine_kwargs("/ckpt", PAPER_BUDGET, Decoding(max_new_tokens=2048), tensor_parallel=2)
    assert kwargs["mm_processor_kwargs"] == PAPER_BUDGET.processor_kwargs()
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["model"] == "/ckpt"
    assert kwargs["generation_config"] == "vllm"  # no defaults from the checkpoint's generation_config.json
    images = kwargs["limit_mm_per_prompt"]["image"]
    assert kwargs["max_model_len"] == 1024 + images * 512 + 2048  # text + visual tokens + completion


# -- launch -----------------------------------------------------------------------------------
def _plan(tmp_path, backend="transformers", procs=2, **kw) -> EvalPlan:
    bench = resolve("MMStar", tmp_path / "data")
    models = [
        ModelSpec("satori", "/ckpt", "/ckpt", "satori"),
        ModelSpec("baseline", "base", "/base", "stock"),
    ]
    return EvalPlan([bench], models, tmp_path / "work", tmp_path / "data", backend=backend, procs=procs, **kw)


def test_transformers_launch_is_torchrun_with_the_worker_module(tmp_path):
    plan = _plan(tmp_path)
    cmd = plan.command(plan.models[0])
    assert Path(cmd.argv[0]).name == "torchrun"
    assert "--nproc-per-node=2" in cmd.argv and "--standalone" in cmd.argv
    assert cmd.argv[cmd.argv.index("-m") + 1] == "satori_cli.evaluation.worker"
    assert cmd.argv[cmd.argv.index("--model") + 1 :][:2] == ["satori", "--work-dir"]
    assert cmd.argv[cmd.argv.index("--judge") + 1] == "exact_matching"
    assert cmd.env["LMUData"] == str(tmp_path / "data")
    assert cmd.env["MIN_PIXELS"] == str(PAPER_BUDGET.min_pixels)


def test_both_models_get_identical_settings_but_their_own_prompt(tmp_path):
    spec = _plan(tmp_path, decoding=Decoding(max_new_tokens=99, repetition_penalty=1.1)).spec()["models"]
    satori, base = spec["satori"], spec["baseline"]
    assert satori.pop("prompt") == "satori" and base.pop("prompt") == "stock"
    assert satori.pop("model_path") == "/ckpt" and base.pop("model_path") == "/base"
    assert satori.pop("record_dir") == str(tmp_path / "work" / "satori")
    assert base.pop("record_dir") == str(tmp_path / "work" / "baseline")
    assert satori == base and satori["max_new_tokens"] == 99 and satori["repetition_penalty"] == 1.1


@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_each_model_gets_its_own_launch(tmp_path, backend):
    """Two models never share one process (its GPU memory): one launch each, one after the other."""
    plan = _plan(tmp_path, backend=backend)
    assert [model.name for model in plan.models] == ["satori", "baseline"]
    for model in plan.models:
        cmd = plan.command(model)
        after = cmd.argv[cmd.argv.index("--model") + 1 :]
        assert after[0] == model.name and after[1].startswith("--")


def test_vllm_and_api_run_as_one_process(tmp_path):
    plan = _plan(tmp_path, backend="vllm")
    vllm = plan.command(plan.models[0])
    assert vllm.argv[0] == sys.executable and vllm.env["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert _plan(tmp_path, backend="vllm").spec()["models"]["satori"]["tensor_parallel"] == 2
    plan = _plan(tmp_path, backend="api", base_url="http://h/v1")
    api = plan.command(plan.models[0])
    assert api.argv[0] == sys.executable
    assert api.argv[api.argv.index("--api-nproc") + 1] == "2"


def test_limit_and_llm_judge_pass_through(tmp_path):
    plan = _plan(tmp_path, limit=5, judge="gpt-4o-mini", judge_url="http://j/v1")
    argv = plan.command(plan.models[0]).argv
    assert argv[argv.index("--limit") + 1] == "5"
    assert argv[argv.index("--judge-base-url") + 1] == "http://j/v1"


# -- results ----------------------------------------------------------------------------------
def _status(root: Path, model: str, entry: dict) -> None:
    (root / model).mkdir(parents=True, exist_ok=True)
    (root / model / "status.json").write_text(json.dumps({"datasets": {"MMStar": entry}}))


def test_scores_come_from_the_acc_csv(tmp_path):
    bench = resolve("MMStar", tmp_path)
    _status(tmp_path, "satori", {"status": "done", "metrics": {"split=none|Overall": 0.5}})
    (tmp_path / "satori" / "satori_MMStar_acc.csv").write_text(
        '"split","Overall","coarse perception"\n"none","0.5","0.75"\n'
    )
    out = collect(tmp_path, "satori", bench)
    assert out.ok and out.metrics == {"Overall": 0.5, "coarse perception": 0.75}


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"status": "done", "error_message": "Failed to download MMStar.tsv"}, "place the official"),
        ({"status": "done", "skip_reason": "mmbench_evaluation_requires_official_server"}, "official server"),
        ({"status": "infer"}, "unfinished"),
    ],
)
def test_vlmeval_failures_that_exit_0_are_failures(tmp_path, entry, fragment):
    bench = resolve("MMStar", tmp_path)
    _status(tmp_path, "satori", entry)
    out = collect(tmp_path, "satori", bench)
    assert not out.ok and fragment in out.error


def test_no_status_file_is_a_failure(tmp_path):
    out = collect(tmp_path, "satori", resolve("MMStar", tmp_path))
    assert not out.ok and "crashed" in out.error


def _scored(root: Path) -> None:
    _status(root, "satori", {"status": "done"})
    (root / "satori" / "satori_MMStar_acc.csv").write_text('"split","Overall"\n"none","0.5"\n')


def test_unreadable_predictions_fail_the_benchmark_naming_the_file(tmp_path):
    """Failed-item counts decide whether a benchmark failed: an unreadable file is never counted as 0 of 0."""
    import pandas as pd

    bench = resolve("MMStar", tmp_path)
    _scored(tmp_path)
    pred = tmp_path / "satori" / "satori_MMStar.xlsx"
    pred.write_bytes(b"not a spreadsheet")
    out = collect(tmp_path, "satori", bench)
    assert not out.ok and out.error.startswith(f"cannot read the predictions {pred}")
    assert "\n" not in out.error
    pd.DataFrame({"answer": ["A"]}).to_excel(pred, index=False)
    out = collect(tmp_path, "satori", bench)
    assert not out.ok and out.error == f"the predictions {pred} have no 'prediction' column"
    pd.DataFrame({"prediction": ["A", "Failed to obtain answer via API."]}).to_excel(pred, index=False)
    out = collect(tmp_path, "satori", bench)
    assert out.ok and (out.failed_items, out.items) == (1, 2)


def test_an_unreadable_judge_log_is_no_judge_success(tmp_path):
    """`verdict` once reported the LLM judge as the scorer when its match log could not be read."""
    import pandas as pd

    from satori_cli.evaluation.judge import verdict

    bench = resolve("MMStar", tmp_path)
    _scored(tmp_path)
    log = tmp_path / "satori" / "satori_MMStar_my-judge_result.xlsx"
    log.write_bytes(b"PK\x03\x04 truncated")
    got = verdict(tmp_path / "satori", "satori", "MMStar", "my-judge")
    assert got.used == "my-judge" and got.error.startswith(f"cannot read the judge's match log {log}")
    out = collect(tmp_path, "satori", bench, "my-judge")
    assert not out.ok and str(log) in out.error
    pd.DataFrame({"log": ["matched by the judge"]}).to_excel(log, index=False)
    assert collect(tmp_path, "satori", bench, "my-judge").ok


def test_summary_has_both_models_and_the_delta(tmp_path):
    outcomes = [
        Outcome("satori", "MMStar", {"Overall": 0.6, "math": 0.5}),
        Outcome("baseline", "MMStar", {"Overall": 0.5, "math": 0.5}),
    ]
    json_path, csv_path = write_summary(tmp_path, outcomes, {"backend": "transformers"})
    summary = json.loads(json_path.read_text())
    assert summary["ok"] and len(summary["results"]) == 2
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "benchmark,metric,satori,baseline,delta"
    assert lines[1] == "MMStar,Overall,0.6000,0.5000,+0.1000"


def test_read_acc_csv_prefers_the_none_split(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('"split","Overall"\n"dev","0.25"\n')
    assert read_acc_csv(p) == {"Overall": 0.25}


def test_sample_bench_command_writes_a_scoreable_tsv(satori, tmp_path):
    import csv

    out = tmp_path / "lmu" / "TinyBench.tsv"
    result = satori("data", "sample-bench", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8"), delimiter="\t"))
    assert len(rows) == 8
    for row in rows:  # the answer letter names the option that is the image's colour
        assert row[row["answer"]] in {"red", "green", "blue"}
    assert {int(r["index"]) % 1_000_000 for r in rows} == {0, 1, 2, 3}


def test_api_items_that_fail_together_each_record_their_own_error(tmp_path, monkeypatch):
    """VLMEvalKit asks an API model from several threads (--api-nproc): an item that fails every try
    is recorded with its own last error, never another thread's (a stand-in server refuses each item
    by name, at once)."""
    import re
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    from PIL import Image

    from satori_cli.evaluation import model as eval_model

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            item = re.search(r"item-\d+", body).group(0)
            reply = json.dumps({"error": {"message": f"no answer for {item}"}}).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Back-off waits of 50 ms instead of seconds: long enough that the other threads fail meanwhile
    # (an error kept on the model would be theirs by the time the item is recorded), short for a test.
    real_sleep = eval_model.time.sleep
    monkeypatch.setattr(eval_model, "time", SimpleNamespace(sleep=lambda s: real_sleep(0.05)))
    image = tmp_path / "i.png"
    Image.new("RGB", (56, 56), "red").save(image)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    model = eval_model.SatoriAPI(url, "satori", min_pixels=3136, max_pixels=12544)

    def ask(i: int) -> dict:
        message = [{"type": "image", "value": str(image)}, {"type": "text", "value": f"item-{i}?"}]
        return model.generate_inner(message)

    try:
        with ThreadPoolExecutor(8) as pool:
            records = list(pool.map(ask, range(24)))
    finally:
        server.shutdown()
    for i, record in enumerate(records):
        assert record["prediction"] == eval_model.FAIL_MSG
        assert record["extra_records"].endswith(f"no answer for item-{i})"), record
