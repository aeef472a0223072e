"""The process torchrun (or python) launches: register SATORI's models, then run VLMEvalKit.

Usage (built by `satori_cli.evaluation.plan`, not typed by users):

    python -m satori_cli.evaluation.worker --spec SPEC.json -- <VLMEvalKit run.py arguments>

It must be the launched process itself: VLMEvalKit's `run.py` reads RANK / WORLD_SIZE and
slices CUDA_VISIBLE_DEVICES when it is imported, which must happen before any CUDA call
(`start_process`). Models are added to VLMEvalKit's registry at
run time; no VLMEvalKit file is edited.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Any

from satori_cli.evaluation.judge import strict_judge


def _force_gloo() -> None:
    """VLMEvalKit hard-codes the NCCL backend; without CUDA use gloo so torchrun works on CPU."""
    import torch.distributed as dist

    original = dist.init_process_group

    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        kwargs["backend"] = "gloo"
        return original(*args, **kwargs)

    dist.init_process_group = init_process_group


def _warn_md5(names: list[str]) -> None:
    """An official TSV whose md5 differs is re-downloaded by VLMEvalKit: say so up front."""
    from vlmeval.dataset.image_mcq import ImageMCQDataset
    from vlmeval.smp import LMUDataRoot, md5

    root = Path(LMUDataRoot())
    for name in names:
        expected = ImageMCQDataset.DATASET_MD5.get(name)
        tsv = root / f"{name}.tsv"
        if expected and tsv.is_file() and md5(str(tsv)) != expected:
            print(
                f"[satori] {tsv} is not the official {name} file (md5 differs): "
                "VLMEvalKit will try to download the official one",
                flush=True,
            )


def register(spec: dict[str, Any]) -> None:
    """Add each model of the spec to VLMEvalKit's registry (shared by run.py and inference.py)."""
    import vlmeval.api
    import vlmeval.vlm
    from vlmeval.config import supported_VLM

    from satori_cli.evaluation.model import SatoriAPI, SatoriVLM

    vlmeval.vlm.SatoriVLM = SatoriVLM
    vlmeval.api.SatoriAPI = SatoriAPI
    for name, kwargs in spec["models"].items():
        kwargs = dict(kwargs)
        cls = SatoriAPI if kwargs.pop("class") == "SatoriAPI" else SatoriVLM
        supported_VLM[name] = partial(cls, **kwargs)


def launched_models(args: list[str]) -> list[str]:
    """The `--model` names of VLMEvalKit's arguments (one per launch: satori runs a launch per model)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # `--mode` is not `--model`
    parser.add_argument("--model", nargs="+", default=[])
    return parser.parse_known_args(args)[0].model


def register_grounding(spec: dict[str, Any], models: list[str]) -> None:
    """Make the spec's prepared JSONLs VLMEvalKit benchmarks (`build_dataset` tries this class first),
    scored in the output grammar of the model this launch evaluates."""
    entries = spec.get("grounding") or {}
    if not entries:
        return
    import vlmeval.dataset

    from satori_cli.evaluation.grounding_dataset import SatoriGroundingDataset

    grammars = [spec["models"][m].get("grammar") for m in models if m in spec["models"]]
    SatoriGroundingDataset.GRAMMAR = grammars[0] if grammars else None  # one model per launch
    SatoriGroundingDataset.SOURCES.update(entries)
    if SatoriGroundingDataset not in vlmeval.dataset.DATASET_CLASSES:
        vlmeval.dataset.DATASET_CLASSES.insert(0, SatoriGroundingDataset)


def _ids(value: str | None) -> list[str]:
    return [x.strip() for x in (value or "").split(",") if x.strip()]


def device_index(visible_before: str | None, visible_now: str | None, device_count: int) -> int:
    """The CUDA ordinal, in this process, of the first GPU in `visible_now` (this rank's slice).

    If the runtime started after the narrowing it enumerates only the slice: ordinal 0. If
    something started it earlier it still enumerates `visible_before` (all GPUs when unset), so
    the rank's GPU is found in that list.
    """
    before, now = _ids(visible_before), _ids(visible_now)
    if not now or device_count <= len(now) or now == before:
        return 0
    if before:
        return before.index(now[0]) if now[0] in before else 0
    return int(now[0]) if now[0].isdigit() and int(now[0]) < device_count else 0


def start_process() -> str:
    """Place this rank on its GPU before anything touches CUDA; return the device ("cpu" without CUDA).

    Order matters: under torchrun, `import vlmeval.run` narrows CUDA_VISIBLE_DEVICES to this
    rank's GPUs, and the CUDA runtime reads it once, at its first call (`torch.cuda.is_available()`
    is one), so a CUDA call before that import would put every rank on GPU 0. The rank's GPU
    becomes the current device, where the model class puts the model (`model.model_device`).
    """
    visible_before = os.environ.get("CUDA_VISIBLE_DEVICES")
    import torch
    import vlmeval.run  # noqa: F401  (narrows CUDA_VISIBLE_DEVICES per local rank at import)

    if not torch.cuda.is_available():
        _force_gloo()
        return "cpu"
    count = torch.cuda.device_count()
    index = device_index(visible_before, os.environ.get("CUDA_VISIBLE_DEVICES"), count)
    torch.cuda.set_device(index)
    return f"cuda:{index}"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] != "--spec":
        sys.exit("usage: python -m satori_cli.evaluation.worker --spec SPEC.json -- ARGS...")
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    rest = argv[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    warnings.filterwarnings("ignore", category=FutureWarning)

    start_process()
    import vlmeval.run

    register(spec)
    register_grounding(spec, launched_models(rest))
    strict_judge()
    os.environ.pop("LOCAL_LLM", None)  # it would replace the --judge name VLMEvalKit sends
    _warn_md5(spec.get("datasets", []))
    sys.argv = ["vlmeval", *rest]
    vlmeval.run.main()


if __name__ == "__main__":
    main()
