"""The tiny Qwen2.5-VL loads and runs as a real qwen2_5_vl model, with Qwen's special ids."""

from __future__ import annotations

import json

import pytest

from satori_cli.errors import SatoriError
from satori_cli.tiny_model import IMAGE_TOKEN_ID, QWEN_SPECIAL_TOKENS, build_tiny_model, is_tiny_model


def test_folder_is_a_qwen2_5_vl_checkpoint(tiny_model):
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert config["image_token_id"] == IMAGE_TOKEN_ID
    assert is_tiny_model(tiny_model)
    meta = json.loads((tiny_model / "satori-tiny.json").read_text())
    assert 1_000_000 < meta["parameters"] < 20_000_000


def test_tokenizer_has_qwen_special_ids(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ids = tok.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS))
    assert ids == list(range(151643, 151643 + len(QWEN_SPECIAL_TOKENS)))
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    text = "<caption>a</caption> <bbox>[[1,2,3,4]]</bbox> <answer>é</answer>"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: every string round-trips


def test_generates_from_an_image(tiny_model):
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model)
    processor = AutoProcessor.from_pretrained(tiny_model)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[prompt], images=[Image.new("RGB", (100, 60), "red")], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == IMAGE_TOKEN_ID).sum())
    t, h, w = inputs["image_grid_thw"][0].tolist()
    assert n_image_tokens == t * h * w // 4 > 0
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5


def test_build_is_deterministic_and_refuses_to_clobber(tmp_path, tiny_model):
    other = build_tiny_model(tmp_path / "again")
    assert (other / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
    assert build_tiny_model(other) == other  # already there: reused
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "file").write_text("x")
    with pytest.raises(SatoriError, match="not empty"):
        build_tiny_model(junk)


@pytest.mark.slow
def test_cli_builds_into_satori_home(satori, satori_home):
    result = satori("tiny-model")
    assert result.returncode == 0, result.stderr
    assert is_tiny_model(satori_home / "models" / "tiny-qwen2_5_vl")
