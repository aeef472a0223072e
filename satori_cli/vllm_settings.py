"""The vLLM engine settings satori runs with, for `satori serve --backend vllm` (as `vllm serve`
flags) and `satori eval --backend vllm` (as `vllm.LLM` arguments): one source for both.

The context length is derived, not guessed. A SATORI request holds the prompt's text (system
prompt, chat template, question and options), the image's visual tokens (at most
max_pixels / 784 under the pixel budget) and the completion. The paper's recipe trained with
`max_length` 2048 = 1024 text tokens + 512 visual tokens (its budget's max_pixels 401408 / 784)
+ 512 completion tokens (`max_completion_length`), so:

    max_model_len = 1024 + images x max_pixels / 784 + max_new_tokens

which is 3584 at the paper's budget for eval's (and a served request's) default 2048 new tokens.
vLLM sizes its KV cache from `gpu_memory_utilization`, not from this length, so covering the
longest request costs nothing when requests are short.
"""

from __future__ import annotations

from typing import Any

from satori_cli.decoding import DEFAULT_DECODING
from satori_cli.pixels import PixelBudget

# The paper's max_length 2048 - max_completion_length 512 - 512 visual tokens (tests tie it to the preset).
PROMPT_TEXT_TOKENS = 1024
GPU_MEMORY_UTILIZATION = 0.85


def context_length(budget: PixelBudget, max_new_tokens: int, images: int = 1) -> int:
    """Tokens the longest request can need: prompt text, `images` images at the budget, completion."""
    return PROMPT_TEXT_TOKENS + images * (budget.max_pixels // budget.token_pixels) + max_new_tokens


def engine_settings(
    model: str,
    budget: PixelBudget,
    *,
    images: int = 1,
    max_new_tokens: int = DEFAULT_DECODING.max_new_tokens,
    tensor_parallel: int = 1,
    max_model_len: int | None = None,
) -> dict[str, Any]:
    """vLLM engine arguments for a Qwen2.5-VL checkpoint under the pixel budget.

    `mm_processor_kwargs` make vLLM resize with our budget (and size its profiling image by it);
    `generation_config="vllm"`: the checkpoint's generation_config.json supplies no defaults,
    every request carries its sampling settings (`satori_cli/decoding.py`).
    """
    return {
        "model": model,
        "tensor_parallel_size": tensor_parallel,
        "max_model_len": max_model_len or context_length(budget, max_new_tokens, images),
        "limit_mm_per_prompt": {"image": images, "video": 0},
        "mm_processor_kwargs": budget.processor_kwargs(),
        "gpu_memory_utilization": GPU_MEMORY_UTILIZATION,
        "dtype": "bfloat16",
        "generation_config": "vllm",
    }
