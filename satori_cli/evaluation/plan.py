"""Turn `satori eval` options into VLMEvalKit launches: a spec file and one `Command` per model.

SATORI and, with `--baseline`, the base model get identical data, pixel budget, decoding and
judge from the one spec, but each runs in its own launch, one after the other: two models (or
two vLLM engines) never share one process's GPU memory. Each writes its own
`<work_dir>/<model>/` folder, so the summary still puts them side by side.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from satori_cli.decoding import Decoding
from satori_cli.errors import install_hint
from satori_cli.evaluation.datasets import Benchmark
from satori_cli.pixels import PixelBudget
from satori_cli.process import Command, find_program

BACKENDS = ("transformers", "vllm", "api")
SATORI_NAME = "satori"  # file-name prefix of the evaluated model in VLMEvalKit's outputs
BASELINE_NAME = "baseline"
WORKER_MODULE = "satori_cli.evaluation.worker"


@dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate: VLMEvalKit name, where it is, and which prompt it gets."""

    name: str
    source: str  # what the user named (hub id, folder, or served model)
    path: str  # local folder (transformers / vllm) or served model name (api)
    prompt: str  # "satori" (its grammar's prompt and suffix) or "stock"
    grammar: str = "satori"  # output grammar (satori_cli.grammar.GRAMMARS)
    run: str | None = None  # the `satori train` run it comes from: its budget is the eval's


@dataclass
class EvalPlan:
    benchmarks: list[Benchmark]
    models: list[ModelSpec]
    work_dir: Path
    data_dir: Path
    backend: str = "transformers"
    procs: int = 1
    budget: PixelBudget = field(default_factory=PixelBudget)
    decoding: Decoding = field(default_factory=Decoding)
    judge: str = "exact_matching"
    judge_url: str | None = None
    judge_key: str | None = None
    limit: int | None = None
    base_url: str | None = None
    api_key: str = "EMPTY"
    verbose: bool = False

    @property
    def lmu_dir(self) -> Path:
        """VLMEvalKit's LMUData for the launches: `data_dir`, or, when a TSV was given by path, the
        run's own `data` folder (its link, and the images VLMEvalKit decodes from it, stay with the
        run's results)."""
        if any(b.given_path for b in self.benchmarks):
            return self.work_dir / "data"
        return self.data_dir

    @property
    def spec_path(self) -> Path:
        return self.work_dir / "satori_eval_spec.json"

    def model_kwargs(self, model: ModelSpec) -> dict[str, Any]:
        """Constructor arguments of the model class, as the worker registers them."""
        common = {
            "prompt": model.prompt,
            "grammar": model.grammar,
            "min_pixels": self.budget.min_pixels,
            "max_pixels": self.budget.max_pixels,
            **asdict(self.decoding),
            "record_dir": str(self.record_dir(model)),
        }
        if self.backend == "api":
            return {
                "class": "SatoriAPI",
                "base_url": self.base_url,
                "served_model": model.path,
                "api_key": self.api_key,
                **common,
            }
        extra = {"tensor_parallel": self.procs} if self.backend == "vllm" else {}
        return {"class": "SatoriVLM", "model_path": model.path, "backend": self.backend, **common, **extra}

    def record_dir(self, model: ModelSpec) -> Path:
        """VLMEvalKit's folder for this model (its `pred_root`), where the worker records what ran."""
        return self.work_dir / model.name

    def spec(self) -> dict[str, Any]:
        return {
            "models": {m.name: self.model_kwargs(m) for m in self.models},
            "datasets": [b.name for b in self.benchmarks],
            "models_info": [asdict(m) for m in self.models],
            # prepared JSONLs, scored with the rewards under the same budget the model sees
            "grounding": {
                b.name: {"path": str(b.tsv), **self.budget.processor_kwargs()}
                for b in self.benchmarks
                if b.grounding
            },
        }

    def write_spec(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.spec_path.write_text(json.dumps(self.spec(), indent=2), encoding="utf-8")
        return self.spec_path

    @property
    def launches_torchrun(self) -> bool:
        """Data parallel over processes only for transformers; vLLM and API run as one process."""
        return self.backend == "transformers" and self.procs > 1

    def vlmeval_args(self, model: ModelSpec) -> list[str]:
        args = [
            "--data",
            *[b.name for b in self.benchmarks],
            "--model",
            model.name,
            "--work-dir",
            str(self.work_dir),
            "--judge",
            self.judge,
            "--mode",
            "all",
        ]
        if self.judge_url:
            args += ["--judge-base-url", self.judge_url]
        if self.judge_key:
            args += ["--judge-key", self.judge_key]
        if self.limit is not None:
            args += ["--limit", str(self.limit)]
        if self.backend == "api":
            args += ["--api-nproc", str(self.procs)]  # concurrent requests
        if self.verbose:
            args.append("--verbose")
        return args

    def commands(self) -> list[tuple[ModelSpec, Command]]:
        """One launch per model, run one after the other."""
        return [(model, self.command(model)) for model in self.models]

    def command(self, model: ModelSpec) -> Command:
        """The launch: `torchrun --standalone --nproc-per-node=N -m worker ...` or plain python."""
        worker = ["--spec", str(self.spec_path), "--", *self.vlmeval_args(model)]
        if self.launches_torchrun:
            torchrun = find_program("torchrun", hint=f"install PyTorch: {install_hint('eval')}")
            argv = [torchrun, "--standalone", f"--nproc-per-node={self.procs}", "-m", WORKER_MODULE, *worker]
        else:
            argv = [sys.executable, "-m", WORKER_MODULE, *worker]
        env = {
            "LMUData": str(self.lmu_dir),
            **self.budget.env(),
            "PYTHONUNBUFFERED": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        if self.launches_torchrun:  # share the cores instead of oversubscribing them
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.procs))
        if self.backend == "vllm":
            env["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
        return Command(argv, env)
