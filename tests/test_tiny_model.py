"""The tiny Qwen2.5-VL carries the real Qwen2.5-VL-3B-Instruct's files; only its weights are tiny.

Every expected value below was read from a public source other than our own resource files (the
sources are named in satori_cli/tiny_model.py), so a typo in a resource file fails here.
"""

from __future__ import annotations

import json

import pytest

from satori_cli.errors import SatoriError
from satori_cli.tiny_model import build_tiny_model, is_tiny_model, qwen2_tokenizer_files

IMAGE_TOKEN_ID = 151655
# Qwen2.5's added tokens from id 151643 on, as a printed Qwen2.5-VL-7B-Instruct tokenizer lists
# them; the first 14 are special (skipped when decoding), the rest plain added tokens.
ADDED_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]  # fmt: skip

# transformers' Qwen2 tokenizer integration test (tests/models/qwen2/test_tokenization_qwen2.py,
# Qwen/Qwen-tokenizer, the same BPE as Qwen2.5): its sequences and expected ids, padding removed.
INTEGRATION = [
    (
        "Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides "
        "general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural "
        "Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained "
        "models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
        [8963, 388, 320, 69514, 3881, 438, 4510, 27414, 32852, 388, 323, 4510, 27414, 21334, 35722, 1455,
         529, 8, 5707, 4586, 58238, 77235, 320, 61437, 11, 479, 2828, 12, 17, 11, 11830, 61437, 64, 11,
         1599, 10994, 11, 27604, 321, 33, 529, 11, 29881, 6954, 32574, 369, 18448, 11434, 45451, 320, 45,
         23236, 8, 323, 18448, 11434, 23470, 320, 30042, 38, 8, 448, 916, 220, 18, 17, 10, 80669, 4119,
         304, 220, 16, 15, 15, 10, 15459, 323, 5538, 94130, 2897, 1948, 619, 706, 11, 5355, 51, 21584,
         323, 94986, 13],
    ),
    (
        "🤗 Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。使用预训练模型可以减少"
        "计算消耗和碳排放，并且节省从头训练所需要的时间和资源。",
        [144834, 80532, 93685, 83744, 34187, 73670, 104261, 29490, 62189, 103937, 104034, 102830, 98841,
         104034, 104949, 9370, 5333, 58143, 102011, 1773, 37029, 98841, 104034, 104949, 73670, 101940,
         100768, 104997, 33108, 100912, 105054, 90395, 100136, 106831, 45181, 64355, 104034, 113521,
         101975, 33108, 85329, 1773],
    ),
    (
        '```python\ntokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen-tokenizer")\n'
        'tokenizer("世界，你好！")```',
        [73594, 12669, 198, 85593, 284, 8979, 37434, 6387, 10442, 35722, 445, 48, 16948, 45274, 16948,
         34841, 3135, 1138, 85593, 445, 99489, 3837, 108386, 6313, 899, 73594],
    ),
    ("Hello world", [9707, 1879]),
    # Printed by a Qwen2.5-VL-7B-Instruct processor on text only (a public notes repository).
    ("描述这张图片的内容。", [53481, 108893, 45930, 104597, 1773]),
]  # fmt: skip

# The official Qwen2.5-VL chat template rendered by hand for a system + image + text conversation.
RENDERED = (
    "<|im_start|>system\nYou are SATORI.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many cats?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
CONVERSATION = [
    {"role": "system", "content": "You are SATORI."},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many cats?"}]},
]


def _json(folder, name):
    return json.loads((folder / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_folder_has_the_real_checkpoint_files(tiny_model):
    names = {p.name for p in tiny_model.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "chat_template.json",
        "tokenizer_config.json",
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
        "model.safetensors",
    } <= names
    assert not names & {"chat_template.jinja", "processor_config.json", "video_preprocessor_config.json"}
    assert is_tiny_model(tiny_model)
    meta = _json(tiny_model, "satori-tiny.json")
    assert 1_000_000 < meta["parameters"] < 20_000_000


def test_config_is_the_real_one_with_small_sizes(tiny_model):
    config = _json(tiny_model, "config.json")
    # Qwen2.5-VL-3B-Instruct's own values (flat transformers-4 layout, as the hub file).
    assert config["model_type"] == "qwen2_5_vl"
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert config["torch_dtype"] == "bfloat16"
    assert config["vocab_size"] == 151936
    assert config["tie_word_embeddings"] is True
    assert config["rope_theta"] == 1000000.0
    assert config["max_position_embeddings"] == 128000
    assert config["rope_scaling"]["type"] == "mrope"
    assert (config["bos_token_id"], config["eos_token_id"]) == (151643, 151645)
    ids = [config[k] for k in ("vision_start_token_id", "vision_end_token_id", "vision_token_id")]
    assert ids == [151652, 151653, 151654]
    assert (config["image_token_id"], config["video_token_id"]) == (151655, 151656)
    vision = config["vision_config"]
    assert (vision["patch_size"], vision["spatial_merge_size"], vision["temporal_patch_size"]) == (14, 2, 2)
    assert (vision["window_size"], vision["tokens_per_second"], vision["in_chans"]) == (112, 2, 3)
    assert vision["hidden_act"] == "silu"
    # Only the sizes are small, and they fit together.
    assert config["hidden_size"] == vision["out_hidden_size"] == 32
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    assert sum(config["rope_scaling"]["mrope_section"]) == head_dim // 2
    assert max(vision["fullatt_block_indexes"]) < vision["depth"]


def test_weights_are_bf16_under_the_real_key_names(tiny_model):
    from safetensors import safe_open

    with safe_open(tiny_model / "model.safetensors", "pt") as f:
        keys = list(f.keys())
        dtypes = {f.get_slice(k).get_dtype() for k in keys}
    assert dtypes == {"BF16"}  # as config.json's torch_dtype says
    assert "model.embed_tokens.weight" in keys
    assert any(k.startswith("visual.blocks.0.") for k in keys)
    assert "visual.patch_embed.proj.weight" in keys


def test_generation_config_is_the_real_one(tiny_model):
    from transformers import GenerationConfig

    gen = _json(tiny_model, "generation_config.json")
    assert {k: v for k, v in gen.items() if k != "transformers_version"} == {
        "bos_token_id": 151643,
        "pad_token_id": 151643,
        "do_sample": True,
        "eos_token_id": [151645, 151643],
        "repetition_penalty": 1.05,
        "temperature": 1e-06,
    }
    loaded = GenerationConfig.from_pretrained(tiny_model)
    sampling = (loaded.repetition_penalty, loaded.temperature, loaded.top_k, loaded.top_p)
    assert sampling == (1.05, 1e-06, None, None)


def test_preprocessor_config_is_the_real_one(tiny_model):
    assert _json(tiny_model, "preprocessor_config.json") == {
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
    }


def test_processor_loads_with_the_real_pixel_range(tiny_model):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    size = processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (3136, 12845056)


@pytest.mark.parametrize(("text", "ids"), INTEGRATION)
def test_tokenizer_gives_qwen2s_real_ids(tokenizer, text, ids):
    assert tokenizer(text)["input_ids"] == ids
    assert tokenizer.decode(ids) == text


def test_tokenizer_special_tokens_are_qwen2s(tokenizer, tiny_model):
    ids = tokenizer.convert_tokens_to_ids(ADDED_TOKENS)
    assert ids == list(range(151643, 151643 + 22))
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == IMAGE_TOKEN_ID == 151655
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.bos_token is None
    assert tokenizer.model_max_length == 131072
    assert len(tokenizer) == 151665
    # <|vision_start|> is special (skipped), <tool_call> only an added token (kept), as in Qwen2.5.
    assert tokenizer.decode([151652, 151657, 9707, 151645], skip_special_tokens=True) == "<tool_call>Hello"
    decoder = _json(tiny_model, "tokenizer_config.json")["added_tokens_decoder"]
    assert [decoder[str(i)]["special"] for i in ids] == [True] * 14 + [False] * 8
    assert tokenizer.extra_special_tokens == ADDED_TOKENS[1:14]  # "additional_special_tokens"


def test_tokenizer_files_match_qwens_vocab_and_merges(tiny_model):
    # Qwen2.5's own merges.txt is 1,671,853 bytes and vocab.json 3,383,406 (a public listing of
    # the files extracted from Qwen2.5-0.5B); its merges.txt starts with these lines.
    merges = (tiny_model / "merges.txt").read_bytes()
    assert len(merges) == 1_671_853
    assert len((tiny_model / "vocab.json").read_bytes()) == 3_383_406
    head = merges.decode().splitlines()[:11]
    assert head == [
        "#version: 0.2",
        "Ġ Ġ",
        "ĠĠ ĠĠ",
        "i n",
        "Ġ t",
        "ĠĠĠĠ ĠĠĠĠ",
        "e r",
        "ĠĠ Ġ",
        "o n",
        "Ġ a",
        "r e",
    ]
    structure = _json(tiny_model, "tokenizer.json")
    assert structure["normalizer"] == {"type": "NFC"}
    split, byte_level = structure["pre_tokenizer"]["pretokenizers"]
    assert split["type"] == "Split" and split["behavior"] == "Isolated"
    digits_alone = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"  # one digit per token
    assert split["pattern"]["Regex"].startswith(digits_alone)
    assert (byte_level["type"], byte_level["use_regex"]) == ("ByteLevel", False)
    assert structure["decoder"]["type"] == structure["post_processor"]["type"] == "ByteLevel"
    assert structure["model"]["type"] == "BPE" and len(structure["model"]["merges"]) == 151_387


def test_chat_template_is_the_official_one(tiny_model, tokenizer):
    import hashlib

    from transformers import AutoProcessor

    template = _json(tiny_model, "chat_template.json")["chat_template"]
    # sha256 of the JSON-encoded official Qwen2.5-VL template, as a public report recorded it.
    digest = hashlib.sha256(json.dumps(template).encode()).hexdigest()
    assert digest == "4df95d05455c2a6f762616492bba63d0f9bef904ef47daabad35f5715d6d2e4e"
    assert _json(tiny_model, "tokenizer_config.json")["chat_template"] == template
    processor = AutoProcessor.from_pretrained(tiny_model)
    assert processor.apply_chat_template(CONVERSATION, add_generation_prompt=True) == RENDERED
    assert tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False) == RENDERED
    no_system = processor.apply_chat_template(CONVERSATION[1:], add_generation_prompt=True)
    default_system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    assert no_system.startswith(default_system)


def test_generates_from_an_image(tiny_model):
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(tiny_model)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[prompt], images=[Image.new("RGB", (100, 60), "red")], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == IMAGE_TOKEN_ID).sum())
    t, h, w = inputs["image_grid_thw"][0].tolist()
    assert n_image_tokens == t * h * w // 4 > 0
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5


def test_ms_swift_loads_and_encodes_it_as_qwen2_5_vl(tiny_model, monkeypatch):
    import torch
    from PIL import Image
    from swift.model import get_model_processor
    from swift.template import get_template

    monkeypatch.setenv("MAX_PIXELS", "12544")
    model, processor = get_model_processor(
        str(tiny_model), model_type="qwen2_5_vl", torch_dtype=torch.float32
    )
    assert model.model_meta.model_type == "qwen2_5_vl"
    template = get_template(processor, template_type="qwen2_5_vl")
    row = {
        "messages": [{"role": "user", "content": "<image>Hello world"}],
        "images": [Image.new("RGB", (280, 140))],
    }
    encoded = template.encode(row)
    ids = encoded["input_ids"]
    t, h, w = encoded["image_grid_thw"][0].tolist()
    assert ids.count(IMAGE_TOKEN_ID) == t * h * w // 4 > 0
    after_image = ids.index(151653) + 1  # <|vision_end|>
    assert ids[after_image : after_image + 2] == [9707, 1879]


def test_build_is_deterministic_and_refuses_to_clobber(tmp_path, tiny_model):
    other = build_tiny_model(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (other / name).read_bytes() == (tiny_model / name).read_bytes()
    assert build_tiny_model(other) == other  # already there: reused
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "file").write_text("x")
    with pytest.raises(SatoriError, match="not empty"):
        build_tiny_model(junk)
    with pytest.raises(SatoriError, match="not a tiny model"):  # --overwrite wipes only a tiny model
        build_tiny_model(junk, overwrite=True)
    assert (junk / "file").read_text() == "x"


def test_a_bigger_miniature_keeps_the_real_layout(tmp_path):
    folder = build_tiny_model(tmp_path / "bigger", hidden_size=96, layers=4)
    config = _json(folder, "config.json")
    assert (config["hidden_size"], config["num_hidden_layers"]) == (96, 4)
    assert config["rope_scaling"]["mrope_section"] == [6, 9, 9]  # the real 16:24:24, scaled
    assert _json(folder, "satori-tiny.json")["layers"] == 4


def test_missing_bpe_source_is_one_line_with_the_install_command(monkeypatch):
    import importlib.util

    from satori_cli import tiny_model as tm

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "dashscope" else real_find_spec(name, *args)

    monkeypatch.setattr(tm.importlib.util, "find_spec", find_spec)
    with pytest.raises(SatoriError, match="dashscope") as err:
        tm.bpe_ranks_path()
    assert "pip install 'dashscope" in str(err.value) and "\n" not in str(err.value)


def test_tokenizer_files_are_built_once_per_process():
    assert qwen2_tokenizer_files() is qwen2_tokenizer_files()


@pytest.mark.slow
def test_cli_builds_into_satori_home(satori, satori_home):
    result = satori("tiny-model")
    assert result.returncode == 0, result.stderr
    assert is_tiny_model(satori_home / "models" / "tiny-qwen2_5_vl")
