"""The SATORI model classes VLMEvalKit runs (imported only inside evaluation workers).

Why not VLMEvalKit's `Qwen2VLChat`: it asserts a GPU, hard-codes flash-attn, has no SATORI
prompt or answer extraction, and (in older copies) picks the model class from the folder name.
Here the architecture comes from `config.json`, attention is `sdpa`, CPU works, and the answer
is extracted with the shared grammar while the raw output is kept.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from vlmeval.vlm.base import BaseModel

from satori_cli.errors import SatoriError
from satori_cli.evaluation.prompting import (
    PromptStyle,
    api_payload,
    chat_messages,
    prediction_record,
    split_items,
    vllm_engine_kwargs,
)
from satori_cli.pixels import PixelBudget

FAIL_MSG = "Failed to obtain answer via API."  # VLMEvalKit's marker of a failed item
QWEN_VL_TYPES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
}


def model_type(model_path: str | Path) -> str:
    """`model_type` from the checkpoint's config.json (never from its folder name)."""
    with open(Path(model_path) / "config.json", encoding="utf-8") as fh:
        return str(json.load(fh).get("model_type", ""))


class SatoriVLM(BaseModel):
    """A local Qwen2.5-VL checkpoint through transformers (CPU or GPU) or vLLM (GPU)."""

    INSTALL_REQ = False
    INTERLEAVE = True

    def __init__(
        self,
        model_path: str,
        backend: str = "transformers",
        prompt: str = "satori",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = 2048,
        tensor_parallel: int = 1,
        **kwargs: Any,  # VLMEvalKit passes e.g. use_vllm= to some names; ignored on purpose
    ) -> None:
        super().__init__()
        self.model_path = str(model_path)
        self.backend = backend
        self.style = PromptStyle.named(prompt)
        self.budget = PixelBudget(min_pixels, max_pixels) if min_pixels else PixelBudget.from_env()
        self.max_new_tokens = max_new_tokens
        kind = model_type(self.model_path)
        if kind not in QWEN_VL_TYPES:
            raise ValueError(f"{self.model_path} is a '{kind}' model, not Qwen2.5-VL or Qwen2-VL")

        from transformers import AutoProcessor

        size = {"shortest_edge": self.budget.min_pixels, "longest_edge": self.budget.max_pixels}
        self.processor = AutoProcessor.from_pretrained(self.model_path, size=size)
        if backend == "vllm":
            from vllm import LLM

            self.llm = LLM(**vllm_engine_kwargs(self.model_path, self.budget, tensor_parallel))
            return
        if backend != "transformers":
            raise ValueError(f"unknown backend {backend!r}")
        import torch
        import transformers

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        cls = getattr(transformers, QWEN_VL_TYPES[kind])
        self.model = cls.from_pretrained(self.model_path, dtype=dtype, attn_implementation="sdpa")
        self.model.to(self.device).eval()

    def _prompt(self, message: list[dict[str, str]]) -> tuple[str, list[Any]]:
        from PIL import Image

        paths, _ = split_items(message)
        images = [Image.open(p).convert("RGB") for p in paths]
        text = self.processor.apply_chat_template(
            chat_messages(message, self.style), tokenize=False, add_generation_prompt=True
        )
        return text, images

    def generate_inner(self, message: list[dict[str, str]], dataset: str | None = None) -> dict[str, str]:
        text, images = self._prompt(message)
        if self.backend == "vllm":
            from vllm import SamplingParams

            request: dict[str, Any] = {"prompt": text}
            if images:
                request["multi_modal_data"] = {"image": images}
            params = SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens)
            raw = self.llm.generate(request, sampling_params=params, use_tqdm=False)[0].outputs[0].text
            return prediction_record(raw)
        import torch

        inputs = self.processor(text=[text], images=images or None, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = out[0, inputs["input_ids"].shape[1] :]
        raw = self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return prediction_record(raw)


class SatoriAPI(BaseModel):
    """A model behind an OpenAI-compatible server (`satori serve`, vLLM): threads, no GPU here."""

    is_api = True
    INSTALL_REQ = False
    INTERLEAVE = True

    def __init__(
        self,
        base_url: str,
        served_model: str,
        prompt: str = "satori",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = 2048,
        api_key: str = "EMPTY",
        timeout: float = 600.0,
        retry: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.served_model = served_model
        self.style = PromptStyle.named(prompt)
        self.budget = PixelBudget(min_pixels, max_pixels) if min_pixels else PixelBudget.from_env()
        self.max_new_tokens = max_new_tokens
        self.api_key = api_key
        self.timeout = timeout
        self.retry = max(1, retry)
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def _post(self, payload: dict[str, Any]) -> str:
        from satori_cli.http_client import chat_text, request_json

        body = request_json("POST", self.url, payload, api_key=self.api_key, timeout=self.timeout)
        return chat_text(body, self.url)

    def generate_inner(self, message: list[dict[str, str]], dataset: str | None = None) -> Any:
        payload = api_payload(message, self.style, self.served_model, self.budget, self.max_new_tokens)
        for attempt in range(self.retry):
            try:
                return prediction_record(self._post(payload))
            except SatoriError as exc:  # every transport and answer-shape failure, as one line
                with self._lock:
                    self.last_error = str(exc)
                time.sleep(min(2**attempt, 10))
        return FAIL_MSG
