"""Decoding: one definition of how tokens are picked, for every backend of `eval` and `serve`.

A checkpoint's `generation_config.json` is a silent default: Qwen2.5-VL ships `do_sample`,
temperature 0.1, top_p 0.001, top_k 1 and `repetition_penalty` 1.05. transformers and
`swift deploy` fill every field a caller leaves unset from it, vLLM only under
`--generation-config auto`, so the same model decoded differently per backend. Every backend
therefore gets every field explicitly, from here. The default is VLMEvalKit's own Qwen2-VL
setting: greedy, repetition penalty 1.0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Decoding:
    """Sampling settings; temperature 0 means greedy (top_p / top_k then play no part)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    repetition_penalty: float = 1.0
    max_new_tokens: int = 2048

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: off), got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def record(self) -> dict[str, Any]:
        """What `summary.json` says about decoding."""
        return {"greedy": self.greedy, **asdict(self)}

    def describe(self) -> str:
        how = "greedy"
        if not self.greedy:
            how = f"sampling t={self.temperature} top_p={self.top_p} top_k={self.top_k}"
        return f"{how}, repetition penalty {self.repetition_penalty}, max {self.max_new_tokens} new tokens"

    def transformers_kwargs(self) -> dict[str, Any]:
        """Fields of a transformers `GenerationConfig`, none left unset (unset ones come from the checkpoint).

        Under greedy search the sampling fields get transformers' neutral values: they are
        ignored, and setting them keeps the checkpoint's from showing up in the resolved config.
        """
        if self.greedy:
            sampling: dict[str, Any] = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50}
        else:
            sampling = {"do_sample": True, "temperature": self.temperature}
            sampling |= {"top_p": self.top_p, "top_k": self.top_k}
        return {
            **sampling,
            "num_beams": 1,
            "repetition_penalty": self.repetition_penalty,
            "max_new_tokens": self.max_new_tokens,
        }

    def vllm_kwargs(self) -> dict[str, Any]:
        """Arguments of `vllm.SamplingParams` (temperature 0 is vLLM's greedy; top_k 0 is off)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "max_tokens": self.max_new_tokens,
        }

    def openai_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(standard, extra) fields of an OpenAI chat-completions request.

        `top_k` and `repetition_penalty` are not OpenAI fields; vLLM and `swift deploy` read
        them from the request body (the openai client sends them through `extra_body`).
        """
        standard = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_new_tokens}
        extra = {"top_k": self.top_k, "repetition_penalty": self.repetition_penalty}
        return standard, extra


DEFAULT_DECODING = Decoding()
