"""A tiny, randomly initialised Qwen2.5-VL that ms-swift, VLMEvalKit and transformers accept.

It lets every command run end to end on a laptop or in CI with no GPU and no hub: a few
million parameters, a byte-level tokenizer with Qwen2's special tokens at their real ids
(ms-swift hard-codes `<|image_pad|>` = 151655), and a real `Qwen2_5_VLProcessor`. Its
answers are noise; the plumbing around it is real.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

from satori_cli.errors import SatoriError, require

# Qwen2's special tokens, in order, starting at id 151643.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
FIRST_SPECIAL_ID = 151643
IMAGE_TOKEN_ID = 151655
VIDEO_TOKEN_ID = 151656
VISION_START_ID = 151652
VISION_END_ID = 151653
VOCAB_SIZE = 151680  # Qwen2.5-VL's padded embedding size
MARKER = "satori-tiny.json"

# The Qwen2-VL chat template (system default, images as vision_start/image_pad/vision_end).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def is_tiny_model(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


def _build_tokenizer():
    tokenizers = require("tokenizers", "train", "Building the tiny model")
    transformers = require("transformers", "train", "Building the tiny model")
    from tokenizers import decoders, models, pre_tokenizers

    byte_symbols = list(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(sorted(byte_symbols))}
    while len(vocab) < FIRST_SPECIAL_ID:
        vocab[f"<|filler_{len(vocab)}|>"] = len(vocab)
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(QWEN_SPECIAL_TOKENS))
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
    )
    fast.chat_template = CHAT_TEMPLATE
    image_id = fast.convert_tokens_to_ids("<|image_pad|>")
    if image_id != IMAGE_TOKEN_ID:  # pragma: no cover - guards the construction above
        raise SatoriError(f"tiny tokenizer put <|image_pad|> at {image_id}, not {IMAGE_TOKEN_ID}", 1)
    return fast


def _build_processor(tokenizer, min_pixels: int, max_pixels: int):
    transformers = require("transformers", "train", "Building the tiny model")
    image_processor = transformers.Qwen2VLImageProcessor(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    kwargs = {}
    with contextlib.suppress(Exception):
        kwargs["video_processor"] = transformers.Qwen2VLVideoProcessor()
    return transformers.Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE, **kwargs
    )


def _build_config(hidden_size: int, layers: int):
    transformers = require("transformers", "train", "Building the tiny model")
    heads = 2
    head_dim = hidden_size // heads
    half = head_dim // 2  # mrope sections must sum to head_dim / 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    text = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        rope_scaling={"type": "mrope", "rope_type": "default", "mrope_section": mrope},
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        bos_token_id=FIRST_SPECIAL_ID,
        eos_token_id=FIRST_SPECIAL_ID + 2,
        pad_token_id=FIRST_SPECIAL_ID,
    )
    vision = dict(
        depth=2,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_heads=heads,
        out_hidden_size=hidden_size,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[1],
        in_chans=3,
    )
    return transformers.Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=IMAGE_TOKEN_ID,
        video_token_id=VIDEO_TOKEN_ID,
        vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID,
        tie_word_embeddings=True,
    )


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    layers: int = 2,
    seed: int = 0,
    min_pixels: int = 3136,
    max_pixels: int = 12544,
    overwrite: bool = False,
) -> Path:
    """Build and save the tiny model into `out_dir`; return the folder.

    The folder is written next to its final place and renamed in, so an interrupted build
    never leaves a half model that later commands would trust.
    """
    out = Path(out_dir).expanduser().resolve()
    if out.exists():
        if is_tiny_model(out) and not overwrite:
            return out
        if any(out.iterdir()) and not overwrite:
            raise SatoriError(f"{out} exists and is not empty; pass --overwrite to replace it")
    if hidden_size % 4 or hidden_size < 16:
        raise SatoriError("--hidden-size must be a multiple of 4 and at least 16")
    torch = require("torch", "train", "Building the tiny model")
    transformers = require("transformers", "train", "Building the tiny model")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        torch.manual_seed(seed)
        config = _build_config(hidden_size, layers)
        model = transformers.Qwen2_5_VLForConditionalGeneration(config)
        model.generation_config.eos_token_id = [FIRST_SPECIAL_ID + 2, FIRST_SPECIAL_ID]
        model.generation_config.pad_token_id = FIRST_SPECIAL_ID
        model.save_pretrained(tmp)
        tokenizer = _build_tokenizer()
        processor = _build_processor(tokenizer, min_pixels, max_pixels)
        processor.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        n_params = sum(p.numel() for p in model.parameters())
        (tmp / MARKER).write_text(
            json.dumps(
                {
                    "kind": "tiny-qwen2_5_vl",
                    "parameters": n_params,
                    "seed": seed,
                    "hidden_size": hidden_size,
                    "layers": layers,
                },
                indent=2,
            )
        )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_tiny_model(path: str | Path | None = None) -> Path:
    """The tiny model at `path` (default: under SATORI_HOME), built on first use."""
    from satori_cli.config import paths

    target = Path(path) if path else paths().tiny_model
    if is_tiny_model(target):
        return target.resolve()
    return build_tiny_model(target)
