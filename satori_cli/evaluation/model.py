"""The SATORI model classes VLMEvalKit runs (imported only inside evaluation workers).

Why not VLMEvalKit's `Qwen2VLChat`: it asserts a GPU, hard-codes flash-attn, has no SATORI
prompt or answer extraction, and (in older copies) picks the model class from the folder name.
Here the architecture comes from `config.json`, attention is `sdpa`, CPU works, and the answer
is extracted with the shared grammar while the raw output is kept. The vLLM backend answers
VLMEvalKit's one-item calls from batched engine calls (`LookAhead`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlmeval.smp import get_rank_and_world_size
from vlmeval.vlm.base import BaseModel

from satori_cli.decoding import Decoding
from satori_cli.errors import SatoriError
from satori_cli.evaluation.progress import ItemCounter
from satori_cli.evaluation.prompting import (
    PromptStyle,
    api_payload,
    chat_messages,
    image_paths,
    prediction_record,
    vllm_engine_kwargs,
)
from satori_cli.evaluation.results import RUNTIME_FILE, inputs_file
from satori_cli.models import QWEN_VL_CLASSES, checked_type
from satori_cli.pixels import PixelBudget

FAIL_MSG = "Failed to obtain answer via API."  # VLMEvalKit's marker of a failed item
IMAGE_PAD = "<|image_pad|>"
API_TIMEOUT_S, API_TRIES = 600.0, 3  # per request to an OpenAI-compatible server


def resolved_budget(processor: Any) -> tuple[int, int]:
    """(min_pixels, max_pixels) the loaded image processor will really resize with."""
    size = processor.image_processor.size
    values = []
    for key in ("shortest_edge", "longest_edge"):
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        values.append(int(value) if value is not None else -1)
    return values[0], values[1]


def load_processor(model_path: str, budget: PixelBudget) -> Any:
    """The checkpoint's processor under our pixel budget, which must beat the checkpoint's own.

    Qwen2.5-VL's preprocessor_config.json carries min_pixels 3136 / max_pixels 12845056, and
    transformers lets those override a `size=` argument; `min_pixels=`/`max_pixels=` win (and
    `size=` covers versions that drop them). The result is checked: a mismatch stops the run.
    """
    from transformers import AutoProcessor

    size = {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}
    processor = AutoProcessor.from_pretrained(model_path, size=size, **budget.processor_kwargs())
    got = resolved_budget(processor)
    if got != (budget.min_pixels, budget.max_pixels):
        raise RuntimeError(
            f"the image processor of {model_path} resolved the pixel budget to {got[0]}-{got[1]} "
            f"instead of {budget.min_pixels}-{budget.max_pixels}"
        )
    return processor


def model_device() -> str:
    """The current CUDA device (the worker made it this rank's GPU), else the CPU."""
    import torch

    return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"


def explicit_generation_config(checkpoint: Any, decoding: Decoding) -> Any:
    """A GenerationConfig with every decoding field set by us and only token ids from the checkpoint.

    transformers fills any field left unset from the model's generation_config (Qwen2.5-VL's
    says do_sample, top_k 1, repetition_penalty 1.05), so nothing is left unset.
    """
    from transformers import GenerationConfig

    ids = {k: getattr(checkpoint, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    ids = {k: v for k, v in ids.items() if v is not None}
    return GenerationConfig(**ids, **decoding.transformers_kwargs())


# -- look-ahead batching for vLLM ------------------------------------------------------------
Message = list[dict[str, Any]]
DEFAULT_WINDOW = 256  # prompts per engine call: enough to keep vLLM's continuous batching full


def message_key(message: Message) -> str:
    return json.dumps(message, sort_keys=True, default=str)


class RankItems(Sequence[Message]):
    """This rank's items of a VLMEvalKit dataset, as the messages `infer_data` would build."""

    def __init__(self, dataset: Any, model: Any, rank: int, world_size: int) -> None:
        self.dataset = dataset
        self.model = model
        self.name = str(dataset.dataset_name)
        self.rows = list(range(rank, len(dataset.data), world_size))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Message:  # an index, never a slice
        line = self.dataset.data.iloc[self.rows[i]]
        if getattr(self.dataset, "force_use_dataset_prompt", False):
            struct = self.dataset.build_prompt(line)
        elif self.model.use_custom_prompt(self.name):
            struct = self.model.build_prompt(line, dataset=self.name)
        else:
            struct = self.dataset.build_prompt(line)
        return self.model.preproc_content(struct)  # as BaseModel.generate does before generate_inner


class LookAhead:
    """Serve single items from batches of `window` items generated by `run_batch`.

    VLMEvalKit's inference loop asks the model for one item at a time and keeps its own progress
    and prediction files; vLLM is fast only when it sees many prompts at once. This keeps
    VLMEvalKit's loop (so resume and prediction files stay VLMEvalKit's) and, when asked for an
    item it has no answer for, generates that item and the next `window - 1` items of the rank
    (`RankItems`, from the dataset VLMEvalKit hands the model) in one call, then answers the
    following calls from that batch.
    """

    def __init__(self, run_batch: Callable[[list[Message]], list[Any]], window: int = DEFAULT_WINDOW) -> None:
        self.run_batch = run_batch
        self.window = max(1, window)
        self.items: Sequence[Message] | None = None
        self.cursor = 0
        self.ready: dict[str, Any] = {}
        self.calls = 0  # engine calls so far (for tests and the benchmark)

    def bind(self, items: Sequence[Message] | None) -> None:
        """The items VLMEvalKit is about to ask for, in order (None: no look-ahead)."""
        self.items, self.cursor, self.ready = items, 0, {}

    def _position(self, key: str) -> int | None:
        """Where the asked item is: normally at the cursor; later after resumed (skipped) items."""
        if self.items is None:
            return None
        n = len(self.items)
        for i in [*range(self.cursor, n), *range(0, min(self.cursor, n))]:
            if message_key(self.items[i]) == key:
                return i
        return None

    def answer(self, message: Message) -> Any:
        key = message_key(message)
        if key in self.ready:  # kept until the next batch: identical prompts share one answer
            return self.ready[key]
        pos = self._position(key)
        batch = [message]
        if pos is not None:
            end = min(pos + self.window, len(self.items))
            batch += [self.items[i] for i in range(pos + 1, end)]
            self.cursor = end
        results = self.run_batch(batch)
        self.calls += 1
        if len(results) != len(batch):
            raise RuntimeError(f"the engine returned {len(results)} answers for {len(batch)} prompts")
        self.ready = {message_key(m): r for m, r in zip(batch[1:], results[1:], strict=True)}
        return results[0]


class _SatoriModel(BaseModel):
    """What both model classes share: the constructor arguments of the spec, the prompt style,
    pixel budget and decoding, progress lines and the records of what ran."""

    INSTALL_REQ = False
    INTERLEAVE = True

    def __init__(
        self,
        prompt: str = "satori",
        grammar: str = "satori",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = 2048,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        record_dir: str | None = None,
        **kwargs: Any,  # VLMEvalKit passes e.g. use_vllm= to some names; ignored on purpose
    ) -> None:
        super().__init__()
        self.items = ItemCounter()  # progress lines for `satori eval` (evaluation/progress.py)
        self.style = PromptStyle.named(prompt, grammar)
        self.budget = PixelBudget(min_pixels, max_pixels) if min_pixels else PixelBudget.from_env()
        self.decoding = Decoding(temperature, top_p, top_k, repetition_penalty, max_new_tokens)
        self.record_dir = Path(record_dir) if record_dir else None

    def set_dump_image(self, dump_image_func: Any) -> None:
        """VLMEvalKit calls this before a benchmark's items (its dataset's bound `dump_image`)."""
        super().set_dump_image(dump_image_func)
        self.items.start(getattr(dump_image_func, "__self__", None))

    def generate(self, message: Any, dataset: str | None = None) -> Any:
        answer = super().generate(message, dataset=dataset)
        self.items.item_done()
        return answer

    def _record(self, path: Path, rows: list[dict[str, Any]]) -> None:
        """Append whole lines (O_APPEND, one write each), so the ranks can share a file
        (`results.runtime` and `results.input_sizes` read them for summary.json)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for row in rows:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    def _record_runtime(self, row: dict[str, Any]) -> None:
        if self.record_dir is not None:
            rank, _ = get_rank_and_world_size()
            self._record(self.record_dir / RUNTIME_FILE, [{"rank": rank, **row}])

    def _record_inputs(self, dataset: str | None, rows: list[dict[str, Any]]) -> None:
        if self.record_dir is not None:
            self._record(inputs_file(self.record_dir, dataset or "unnamed"), rows)


class SatoriVLM(_SatoriModel):
    """A local Qwen2.5-VL checkpoint through transformers (CPU or GPU) or vLLM (GPU)."""

    def __init__(
        self,
        model_path: str,
        backend: str = "transformers",
        tensor_parallel: int = 1,
        **kwargs: Any,  # the shared arguments of _SatoriModel
    ) -> None:
        super().__init__(**kwargs)
        self.model_path = str(model_path)
        self.backend = backend
        self.dataset_name: str | None = None
        # The architecture comes from config.json (never from the folder name); satori checked it.
        kind = checked_type(Path(self.model_path), "")

        self.processor = load_processor(self.model_path, self.budget)
        self.image_pad_id = self.processor.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        if backend == "vllm":
            from vllm import LLM

            self.device = "vllm"
            self.llm = LLM(**vllm_engine_kwargs(self.model_path, self.budget, self.decoding, tensor_parallel))
            self.lookahead = LookAhead(self._generate_batch)
            self._record_engine(self.decoding.vllm_kwargs())
            return
        import torch
        import transformers

        self.device = model_device()
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        cls = getattr(transformers, QWEN_VL_CLASSES[kind])
        self.model = cls.from_pretrained(self.model_path, dtype=dtype, attn_implementation="sdpa")
        self.model.to(self.device).eval()
        self.generation_config = explicit_generation_config(self.model.generation_config, self.decoding)
        # Nothing of the checkpoint's generation_config.json is left to be merged in.
        self.model.generation_config = self.generation_config
        fields = self.decoding.transformers_kwargs()
        self._record_engine({k: getattr(self.generation_config, k) for k in fields})

    def _record_engine(self, decoding: dict[str, Any]) -> None:
        """The budget the loaded processor resolved and the decoding the engine got."""
        min_px, max_px = resolved_budget(self.processor)
        row = {
            "pid": os.getpid(),
            "backend": self.backend,
            "device": self.device,
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "min_pixels": min_px,
            "max_pixels": max_px,
            "decoding": decoding,
        }
        self._record_runtime(row)

    def _check_grids(self, paths: list[str], images: list[Any], grids: list[list[int]]) -> None:
        """Each image's size as the model received it (image_grid_thw) must be the budget's."""
        patch = int(self.processor.image_processor.patch_size)
        merge = int(self.processor.image_processor.merge_size)
        rows = []
        for path, image, (t, gh, gw) in zip(paths, images, grids, strict=True):
            got, want = (gh * patch, gw * patch), self.budget.resized_hw(image.height, image.width)
            if got != want:
                raise RuntimeError(
                    f"{path}: the model received a {got[1]}x{got[0]} image, but the pixel budget "
                    f"{self.budget.min_pixels}-{self.budget.max_pixels} gives {want[1]}x{want[0]}"
                )
            tokens = t * gh * gw // (merge * merge)
            rows.append(_input_row(path, image, got, tokens, "image_grid_thw"))
        self._record_inputs(self.dataset_name, rows)

    def _check_tokens(self, paths: list[str], images: list[Any], prompt_ids: list[int] | None) -> None:
        """vLLM does not say what size it fed; its visual token count must be the budget's."""
        factor = self.budget.factor
        sizes = [self.budget.resized_hw(im.height, im.width) for im in images]
        want = sum(visual_tokens(hw, factor) for hw in sizes)
        seen = None if prompt_ids is None else sum(1 for t in prompt_ids if t == self.image_pad_id)
        if seen is not None and seen not in (want, len(images)):  # len(images): placeholders not expanded
            raise RuntimeError(
                f"{paths[0]}: vLLM gave the model {seen} visual tokens, the pixel budget "
                f"{self.budget.min_pixels}-{self.budget.max_pixels} gives {want}"
            )
        checked = seen == want
        source = "vllm visual tokens" if checked else "budget (not reported by vllm)"
        self._record_inputs(
            self.dataset_name,
            [
                _input_row(p, im, hw, visual_tokens(hw, factor) if checked else None, source)
                for p, im, hw in zip(paths, images, sizes, strict=True)
            ],
        )

    # -- generation ------------------------------------------------------------------------
    def _prompt(self, message: list[dict[str, str]]) -> tuple[str, list[Any], list[str]]:
        from PIL import Image

        paths = image_paths(message)
        images = [Image.open(p).convert("RGB") for p in paths]
        text = self.processor.apply_chat_template(
            chat_messages(message, self.style), tokenize=False, add_generation_prompt=True
        )
        return text, images, paths

    def set_dump_image(self, dump_image_func: Any) -> None:
        """The vLLM backend looks ahead in the benchmark's items."""
        super().set_dump_image(dump_image_func)
        if self.backend == "vllm":
            dataset = getattr(dump_image_func, "__self__", None)  # the dataset whose method it is
            usable = dataset is not None and hasattr(dataset, "data")
            self.lookahead.bind(RankItems(dataset, self, *get_rank_and_world_size()) if usable else None)

    def generate_inner(self, message: list[dict[str, str]], dataset: str | None = None) -> dict[str, str]:
        self.dataset_name = dataset
        if self.backend == "vllm":
            return self.lookahead.answer(message)
        import torch

        text, images, paths = self._prompt(message)
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        if images:
            self._check_grids(paths, images, inputs["image_grid_thw"].tolist())
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=self.generation_config)
        new_tokens = out[0, inputs["input_ids"].shape[1] :]
        raw = self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return prediction_record(raw)

    def _generate_batch(self, messages: list[list[dict[str, str]]]) -> list[dict[str, str]]:
        """One vLLM call for many items; answers in the items' order."""
        from vllm import SamplingParams

        prompts = [self._prompt(m) for m in messages]
        requests: list[dict[str, Any]] = []
        for text, images, _ in prompts:
            request: dict[str, Any] = {"prompt": text}
            if images:
                request["multi_modal_data"] = {"image": images}
            requests.append(request)
        params = SamplingParams(**self.decoding.vllm_kwargs())
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        answers = []
        for (_, images, paths), out in zip(prompts, outputs, strict=True):
            if images:
                self._check_tokens(paths, images, getattr(out, "prompt_token_ids", None))
            answers.append(prediction_record(out.outputs[0].text))
        return answers


def visual_tokens(hw: tuple[int, int], factor: int) -> int:
    return hw[0] * hw[1] // (factor * factor)


def _input_row(path: str, image: Any, hw: tuple[int, int], tokens: int | None, source: str) -> dict[str, Any]:
    return {
        "image": Path(path).name,
        "original_wh": [image.width, image.height],
        "input_wh": [hw[1], hw[0]],
        "visual_tokens": tokens,
        "source": source,  # how input_wh is known
    }


class SatoriAPI(_SatoriModel):
    """A model behind an OpenAI-compatible server (`satori serve`, vLLM): threads, no GPU here."""

    is_api = True

    def __init__(
        self,
        base_url: str,
        served_model: str,
        api_key: str = "EMPTY",
        **kwargs: Any,  # the shared arguments of _SatoriModel
    ) -> None:
        super().__init__(**kwargs)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.served_model = served_model
        self.api_key = api_key
        # images are sent resized to this budget (satori_cli/decoding.py)
        standard, extra = self.decoding.openai_fields()
        row = {"backend": "api", "device": self.url, **self.budget.processor_kwargs()}
        self._record_runtime(row | {"decoding": standard | extra})

    def _post(self, payload: dict[str, Any]) -> str:
        from satori_cli.http_client import chat_text, request_json

        body = request_json("POST", self.url, payload, api_key=self.api_key, timeout=API_TIMEOUT_S)
        return chat_text(body, self.url)

    def generate_inner(self, message: list[dict[str, str]], dataset: str | None = None) -> Any:
        payload, images = api_payload(message, self.style, self.served_model, self.budget, self.decoding)
        rows = []
        for source, image in zip(image_paths(message), images, strict=True):
            hw = (image.resized.height, image.resized.width)
            rows.append(
                _input_row(source, image.original, hw, visual_tokens(hw, self.budget.factor), "sent resized")
            )
        self._record_inputs(dataset, rows)
        for attempt in range(API_TRIES):
            try:
                return prediction_record(self._post(payload))
            except SatoriError as exc:  # every transport and answer-shape failure, as one line
                error = str(exc)
                time.sleep(min(2**attempt, 10))
        # Structured like a success: VLMEvalKit keeps the `extra_records` column (the raw
        # outputs) only when every item's record is structured.
        return {"prediction": FAIL_MSG, "extra_records": f"{FAIL_MSG} ({error})"}
