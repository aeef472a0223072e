"""`satori eval` as on the real checkpoint: pixel budget, decoding, vLLM batching, one model per launch.

The model is the tiny model, which carries the real Qwen2.5-VL-3B-Instruct processor and
generation files, so the traps of the real checkpoint are armed here too.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from eval_real_style import REAL_SAMPLING, write_wide_bench

from satori_cli.decoding import Decoding
from satori_cli.evaluation.sample_bench import write_tiny_bench
from satori_cli.pixels import PAPER_BUDGET, PixelBudget, smart_resize

REPO = Path(__file__).resolve().parents[1]
FAKE_VLLM = Path(__file__).parent / "fake_vllm"
PAPER = (PAPER_BUDGET.min_pixels, PAPER_BUDGET.max_pixels)


@pytest.fixture(scope="module")
def real_model(tiny_model) -> Path:
    return tiny_model


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- the pixel budget -------------------------------------------------------------------------
def test_real_style_files_arm_the_trap(real_model):
    """Guard of the fixture: `size=` loses to the checkpoint's range, as on the real model."""
    from transformers import AutoProcessor, GenerationConfig

    from satori_cli.evaluation.model import resolved_budget

    size = {"shortest_edge": PAPER[0], "longest_edge": PAPER[1]}
    assert resolved_budget(AutoProcessor.from_pretrained(real_model, size=size)) == (3136, 12845056)
    assert GenerationConfig.from_pretrained(real_model).repetition_penalty == 1.05


@pytest.mark.parametrize("budget", [PAPER_BUDGET, PixelBudget(3136, 100352)])
def test_processor_takes_the_budget_over_the_checkpoint(real_model, budget):
    from PIL import Image

    from satori_cli.evaluation.model import load_processor, resolved_budget

    processor = load_processor(str(real_model), budget)
    assert resolved_budget(processor) == (budget.min_pixels, budget.max_pixels)
    out = processor(text=["<|image_pad|>"], images=[Image.new("RGB", (1920, 1080))], return_tensors="pt")
    t, gh, gw = out["image_grid_thw"][0].tolist()
    assert (t, gh * 14, gw * 14) == (1, *smart_resize(1080, 1920, 28, budget.min_pixels, budget.max_pixels))


def test_a_processor_that_ignores_the_budget_stops_the_run(real_model, monkeypatch):
    import transformers

    from satori_cli.evaluation.model import load_processor

    original = transformers.AutoProcessor.from_pretrained

    def ignoring(path, **kwargs):  # a transformers version that drops the budget arguments
        return original(path)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", ignoring)
    with pytest.raises(RuntimeError, match="3136-12845056 instead of 200704-401408"):
        load_processor(str(real_model), PAPER_BUDGET)


@pytest.mark.slow
def test_wide_image_reaches_the_model_at_the_budget_size(satori, real_model, tmp_path):
    """Done-when of issue 10: through `satori eval`, a 1920x1080 image is fed at 840x448."""
    data, work = tmp_path / "lmu", tmp_path / "work"
    write_wide_bench(data / "Wide1080.tsv")
    result = satori(
        "eval", "--data", "Wide1080", "--model", str(real_model), "--max-new-tokens", "4",
        "--data-dir", str(data), "--out", str(work),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    want_h, want_w = smart_resize(1080, 1920, 28, *PAPER)
    assert (want_w, want_h) == (840, 448)
    rows = _jsonl(work / "satori" / "satori_Wide1080_inputs.jsonl")
    assert len(rows) == 2
    for row in rows:  # sizes from the image_grid_thw the model received
        assert row["original_wh"] == [1920, 1080] and row["input_wh"] == [840, 448]
        assert row["visual_tokens"] == 840 * 448 // (28 * 28) and row["source"] == "image_grid_thw"
    summary = json.loads((work / "summary.json").read_text())
    resolved = summary["settings"]["resolved"]["satori"]
    assert (resolved["min_pixels"], resolved["max_pixels"]) == PAPER
    assert summary["results"][0]["inputs"]["input_wh"] == {"840x448": 2}
    # The checkpoint asks for sampling and repetition penalty 1.05; the model decoded greedily at 1.0.
    assert resolved["decoding"] == Decoding(max_new_tokens=4).transformers_kwargs()
    asked = summary["settings"]["decoding"]
    assert asked["greedy"] and asked["repetition_penalty"] == 1.0
    assert "images in: 840x448 x2" in result.stdout


# -- decoding -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "decoding", [Decoding(max_new_tokens=3), Decoding(temperature=0.7, top_p=0.9, top_k=0, max_new_tokens=3)]
)
def test_transformers_decodes_with_exactly_the_explicit_settings(real_model, tmp_path, monkeypatch, decoding):
    from PIL import Image
    from transformers import GenerationConfig

    from satori_cli.evaluation.model import SatoriVLM

    checkpoint = GenerationConfig.from_pretrained(real_model)
    assert {k: getattr(checkpoint, k) for k in REAL_SAMPLING} == REAL_SAMPLING
    model = SatoriVLM(str(real_model), **{k: getattr(decoding, k) for k in decoding.__dataclass_fields__})
    received: list[dict] = []
    generate = model.model.generate

    def spy(*args, **kwargs):
        received.append(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(model.model, "generate", spy)
    image = tmp_path / "w.png"
    Image.new("RGB", (640, 480), (9, 9, 9)).save(image)
    record = model.generate([{"type": "image", "value": str(image)}, {"type": "text", "value": "Q?"}])
    assert set(record) == {"prediction", "extra_records"}

    (kwargs,) = received
    config = kwargs["generation_config"]
    assert not set(REAL_SAMPLING) & set(kwargs)  # everything travels in the one config
    assert {k: getattr(config, k) for k in decoding.transformers_kwargs()} == decoding.transformers_kwargs()
    # transformers fills a passed config's unset fields from the checkpoint's: none is unset.
    merged = copy.deepcopy(config)
    merged.update(**checkpoint.to_dict(), defaults_only=True)
    assert {k: getattr(merged, k) for k in decoding.transformers_kwargs()} == decoding.transformers_kwargs()
    assert model.model.generation_config.repetition_penalty == decoding.repetition_penalty
    assert config.eos_token_id == checkpoint.eos_token_id  # token ids still come from the checkpoint


def test_every_backend_and_serve_send_the_same_decoding(tmp_path):
    """eval (transformers, vLLM, api) and serve/predict: greedy, repetition penalty 1.0, all explicit."""
    from PIL import Image

    from satori_cli.evaluation.prompting import PromptStyle, api_payload
    from satori_cli.serve.client import SatoriClient, prepare_image
    from tests.serve_helpers import FakeServer

    d = Decoding(max_new_tokens=64)
    assert d.transformers_kwargs() == {
        "do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50, "num_beams": 1,
        "repetition_penalty": 1.0, "max_new_tokens": 64,
    }  # fmt: skip
    wanted = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "max_tokens": 64}
    assert d.vllm_kwargs() == wanted
    image = tmp_path / "i.png"
    Image.new("RGB", (64, 48), (1, 2, 3)).save(image)
    message = [{"type": "image", "value": str(image)}, {"type": "text", "value": "Q"}]
    eval_body, _ = api_payload(message, PromptStyle.named("satori"), "satori", PAPER_BUDGET, d)
    assert {k: eval_body[k] for k in wanted} == wanted
    with FakeServer() as server:
        SatoriClient(server.base_url).complete(prepare_image(Image.open(image).convert("RGB")), "Q", 0.0, 64)
        serve_body = server.requests[-1]
    assert {k: serve_body.get(k) for k in wanted} == wanted
    # One request builder: the same body, the same pre-resized image; only eval's question suffix differs.
    from satori_cli.grammar import load_prompt

    eval_text = eval_body["messages"][1]["content"][1]["text"]
    serve_body["messages"][1]["content"][1]["text"] += load_prompt("eval_suffix")
    assert eval_text == serve_body["messages"][1]["content"][1]["text"]
    assert eval_body == serve_body


# -- vLLM: batched, one engine per process ----------------------------------------------------
@pytest.mark.slow
def test_vllm_backend_batches_a_rank_and_runs_each_model_in_its_own_process(satori, real_model, tmp_path):
    data, work, log = tmp_path / "lmu", tmp_path / "work", tmp_path / "vllm.jsonl"
    write_tiny_bench(data / "TinyBench.tsv")
    env = {"PYTHONPATH": os.pathsep.join([str(FAKE_VLLM), str(REPO)]), "FAKE_VLLM_LOG": str(log)}
    result = satori(
        "eval", "--data", "TinyBench", "--model", str(real_model), "--backend", "vllm",
        "--baseline", "--baseline-model", str(real_model), "--max-new-tokens", "64",
        "--data-dir", str(data), "--out", str(work), env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    events = _jsonl(log)
    engines = [e for e in events if e["event"] == "engine"]
    calls = [e for e in events if e["event"] == "generate"]
    assert len(engines) == 2 and len({e["pid"] for e in engines}) == 2  # SATORI and baseline never share one
    assert {e["kwargs"]["generation_config"] for e in engines} == {"vllm"}
    assert all(e["kwargs"]["mm_processor_kwargs"] == PAPER_BUDGET.processor_kwargs() for e in engines)
    assert [c["prompts"] for c in calls] == [8, 8]  # one generate call per model for its 8 items
    assert all(c["sampling"] == Decoding(max_new_tokens=64).vllm_kwargs() for c in calls)

    summary = json.loads((work / "summary.json").read_text())
    scores = {r["model"]: r["metrics"]["Overall"] for r in summary["results"]}
    assert scores == {"satori": 1.0, "baseline": 1.0}  # answers mapped back to their own items
    resolved = summary["settings"]["resolved"]
    assert not set(resolved["satori"]["pids"]) & set(resolved["baseline"]["pids"])
    rows = _jsonl(work / "satori" / "satori_TinyBench_inputs.jsonl")
    assert len(rows) == 8  # 32x32 images are enlarged to the budget's minimum; vLLM's token count agrees
    assert all(r["input_wh"] == [448, 448] and r["visual_tokens"] == 256 for r in rows)
    assert {r["source"] for r in rows} == {"vllm visual tokens"}
