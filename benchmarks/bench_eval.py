"""Items per second of `satori eval`'s generation backends on the same items.

Measures the SATORI model class exactly as VLMEvalKit calls it (`generate` on a
`[image, question]` message, one item at a time, greedy, `--max-new-tokens` tokens), in one
process, model loading excluded. For vLLM the items are bound first, as VLMEvalKit's loop binds a
benchmark, so its look-ahead answers them from batched `generate` calls. Always: the
transformers backend on the tiny model (CPU or GPU). With a GPU and vLLM installed
(`BENCH_EVAL_MODEL=/path/to/Qwen2.5-VL-3B`): vLLM against transformers on that model.

Targets: tiny model on transformers >= 0.25 items/s (plumbing overhead stays small); vLLM >= 2x
transformers when both are measured. vLLM is CUDA-only; where it cannot run, the report says
so and only the transformers target applies.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ITEMS = int(os.environ.get("BENCH_EVAL_ITEMS", "16"))
NEW_TOKENS = int(os.environ.get("BENCH_EVAL_TOKENS", "32"))
TINY_TARGET = 0.25  # measured 0.69 on a shared 2-core CPU
VLLM_SPEEDUP_TARGET = 2.0


def _messages(folder: Path, n: int) -> list[list[dict[str, str]]]:
    from PIL import Image

    out = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.new("RGB", (640, 480), (i * 15 % 256, 80, 160)).save(path)
        question = f"Question: what colour is image {i}?\nOptions:\nA. red\nB. blue\n"
        out.append([{"type": "image", "value": str(path)}, {"type": "text", "value": question}])
    return out


def items_per_second(model_path: str, backend: str, messages: list) -> float:
    from satori_cli.evaluation.model import SatoriVLM

    model = SatoriVLM(model_path, backend=backend, max_new_tokens=NEW_TOKENS)
    model.generate(messages[0])  # warm-up
    if backend == "vllm":
        model.lookahead.bind([model.preproc_content(m) for m in messages])
    start = time.perf_counter()
    for message in messages:
        model.generate(message)
    rate = len(messages) / (time.perf_counter() - start)
    if backend == "vllm":
        print(f"vllm: {model.lookahead.calls - 1} generate calls for {len(messages)} items")
    return rate


def main() -> int:
    from satori_cli.tiny_model import build_tiny_model

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        messages = _messages(Path(tmp), ITEMS)
        tiny = str(build_tiny_model(Path(tmp) / "tiny"))
        rate = items_per_second(tiny, "transformers", messages)
        print(f"transformers, tiny model: {rate:.2f} items/s ({ITEMS} items, {NEW_TOKENS} new tokens)")
        ok &= rate >= TINY_TARGET
        real = os.environ.get("BENCH_EVAL_MODEL")
        import torch

        if importlib.util.find_spec("vllm") is None or not torch.cuda.is_available():
            print("vllm: not measured (vLLM is not installed or there is no CUDA GPU here)")
        elif not real:
            print("vllm: not measured (set BENCH_EVAL_MODEL to a Qwen2.5-VL checkpoint folder)")
        else:
            hf = items_per_second(real, "transformers", messages)
            fast = items_per_second(real, "vllm", messages)
            print(f"{real}: transformers {hf:.2f} items/s, vllm {fast:.2f} items/s ({fast / hf:.1f}x)")
            ok &= fast >= VLLM_SPEEDUP_TARGET * hf
    print("targets met" if ok else "target missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
