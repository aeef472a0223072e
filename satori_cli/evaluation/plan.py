"""From `satori eval`'s options to what will run: the benchmarks, the models, and one VLMEvalKit
launch per model; everything is checked here, before anything is written or loaded.

Benchmarks are named as users type them and mapped to splits VLMEvalKit can score on this
machine: VLMEvalKit's `MMBench` is the internal name of the *test* split, whose answers are not
public: it runs inference and then silently skips scoring. Users typing `MMBench` (as SATORI's
own script does) want a number, so we say so and score the dev split instead.

SATORI and, with `--baseline`, the base model get identical data, pixel budget, decoding and
judge from the one spec, but each runs in its own launch, one after the other: two models (or
two vLLM engines) never share one process's GPU memory. Each writes its own
`<work_dir>/<model>/` folder, so the summary still puts them side by side.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from satori_cli import models
from satori_cli.config import DEFAULT_MODEL, paths
from satori_cli.decoding import Decoding
from satori_cli.errors import SatoriError, install_hint
from satori_cli.evaluation import grounding
from satori_cli.evaluation.judge import check_judge
from satori_cli.grammar import get_grammar
from satori_cli.http_client import served_models
from satori_cli.models import Model, settle_budget
from satori_cli.outputs import check_folder
from satori_cli.pixels import PixelBudget
from satori_cli.process import Command, find_program

BACKENDS = ("transformers", "vllm", "api")
SATORI_NAME = "satori"  # file-name prefix of the evaluated model in VLMEvalKit's outputs
BASELINE_NAME = "baseline"
WORKER_MODULE = "satori_cli.evaluation.worker"
GROUNDING = "grounding"

# What users type (lower-cased) -> (VLMEvalKit name, why it was changed or None).
_NO_ANSWERS = "the {src} test split has no public answers, so it cannot be scored here; using the dev split"
ALIASES: dict[str, tuple[str, str | None]] = {
    "mmbench": ("MMBench_DEV_EN", _NO_ANSWERS.format(src="MMBench")),
    "mmbench_en": ("MMBench_DEV_EN", _NO_ANSWERS.format(src="MMBench")),
    "mmbench_cn": ("MMBench_DEV_CN", _NO_ANSWERS.format(src="MMBench-CN")),
    "mmbench_v11": ("MMBench_DEV_EN_V11", _NO_ANSWERS.format(src="MMBench v1.1")),
    "mmbench_cn_v11": ("MMBench_DEV_CN_V11", _NO_ANSWERS.format(src="MMBench-CN v1.1")),
    "mmstar": ("MMStar", None),
}

# Names VLMEvalKit can run but never scores without the official server's answers.
UNSCORABLE = frozenset({"MMBench_TEST_EN", "MMBench_TEST_CN", "MMBench_TEST_EN_V11", "MMBench_TEST_CN_V11"})


# -- benchmarks ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Benchmark:
    """One benchmark to run: what the user typed, the VLMEvalKit name, and where its TSV is."""

    requested: str
    name: str
    note: str | None
    tsv: Path  # the data file: a VLMEvalKit TSV, or the prepared JSONL of a grounding benchmark
    kind: str = "vlmeval"  # or GROUNDING: a prepared SATORI JSONL scored with the rewards
    rows: int | None = None  # rows of a grounding benchmark (checked before anything runs)
    given_path: bool = False  # `tsv` is the user's own file, linked into the run's data folder

    @property
    def present(self) -> bool:
        return self.tsv.is_file()

    @property
    def grounding(self) -> bool:
        return self.kind == GROUNDING

    @property
    def primary(self) -> str:
        """The metric whose presence says the benchmark was scored."""
        return grounding.PRIMARY if self.grounding else "Overall"


def default_data_dir() -> Path:
    """Where official TSVs are kept: $LMUData when the user set it (VLMEvalKit's own variable),
    else satori's data folder. Never VLMEvalKit's fallback ~/LMUData: satori writes there only
    when the user points --data-dir (or $LMUData) at it."""
    env = os.environ.get("LMUData")  # noqa: SIM112 (VLMEvalKit's name)
    if env:
        return Path(env).expanduser()
    from satori_cli.config import paths

    return paths().data / "vlmeval"


def is_grounding(requested: str) -> bool:
    """A prepared SATORI JSONL, or a folder (holding its `val.jsonl`)."""
    if requested.lower().endswith(".jsonl"):
        return True
    folder = Path(requested).expanduser()
    return folder.is_dir() and (os.sep in requested or (folder / grounding.FOLDER_FILE).is_file())


def resolve(requested: str, data_dir: Path, taken: list[str] | tuple[str, ...] = ()) -> Benchmark:
    """Map one `--data` item to a Benchmark.

    - `MMBench`, `MMStar` and friends (any case) map to scorable VLMEvalKit names (with a note).
    - A path to an existing `.tsv` becomes a custom benchmark named after the file; when the
      run starts it is linked into the run's own data folder (`EvalPlan.lmu_dir`), never into
      `data_dir`, so a same-named file of another run can neither clash nor lend its images.
    - A `.jsonl` or a folder is a grounding benchmark, named apart from `taken`.
    - Anything else passes through as a VLMEvalKit name (official or a TSV in `data_dir`).
    """
    if is_grounding(requested):  # every row is checked now, so a bad line fails before any model loads
        path, picked = grounding.data_file(Path(requested))
        rows = len(grounding.read_rows(path))
        note = f"grounding: {rows} rows of " + (picked or str(path))
        return Benchmark(
            requested, grounding.benchmark_name(path, taken), note, path, kind=GROUNDING, rows=rows
        )
    as_path = Path(requested).expanduser()
    if requested.lower().endswith(".tsv") or os.sep in requested:
        if not as_path.is_file():
            raise SatoriError(f"benchmark file not found: {as_path}")
        check_tsv_columns(as_path)
        name, note = as_path.stem, f"local TSV {as_path} as '{as_path.stem}'"
        return Benchmark(requested, name, note, as_path.resolve(), given_path=True)
    alias = ALIASES.get(requested.lower())
    if alias is not None:
        name, note = alias
        return Benchmark(requested, name, note, data_dir / f"{name}.tsv")
    if requested in UNSCORABLE:
        raise SatoriError(
            f"{requested} has no public answers and cannot be scored locally",
            hint=f"use {requested.replace('_TEST_', '_DEV_')}",
        )
    tsv = data_dir / f"{requested}.tsv"
    return Benchmark(requested, requested, None, tsv)


def check_tsv_columns(path: Path) -> None:
    """A custom TSV has the columns VLMEvalKit reads, checked from its header before any model
    loads (a missing one would fail only after loading, as a bare KeyError such as 'image_path').

    VLMEvalKit reads a custom TSV as multiple choice with images (`A`, `B` and `image` or
    `image_path`), as text-only multiple choice (`A`, `B`, no image) or as open questions, which
    need an image column; every kind needs `index`, `question` and (to be scored) `answer`.
    """
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            header = fh.readline(1 << 16)
    except OSError as exc:
        raise SatoriError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise SatoriError(f"{path} is not a UTF-8 TSV file") from None
    columns = {c.strip() for c in header.rstrip("\r\n").split("\t")}
    missing = [c for c in ("index", "question", "answer") if c not in columns]
    multiple_choice = {"A", "B"} <= columns
    if not multiple_choice and not columns & {"image", "image_path"}:
        missing.append("image (or image_path)")
    if missing:
        raise SatoriError(
            f"{path} has no {', '.join(repr(c) for c in missing)} column: not a VLMEvalKit TSV "
            f"(its header: {', '.join(sorted(columns))[:200]})",
            hint="columns: index, question, answer, image or image_path, and options A, B, ... for "
            "multiple choice",
        )


def resolve_all(requested: list[str], data_dir: Path) -> list[Benchmark]:
    """Resolve every name, dropping duplicates (e.g. `MMBench MMBench_DEV_EN`) in order."""
    out: list[Benchmark] = []
    for item in requested:
        bench = resolve(item, data_dir, [b.name for b in out])
        # a grounding file is named apart from the others: the same file twice (e.g. as a
        # folder and as its val.jsonl) is found by its path
        same = next((b for b in out if b.name == bench.name or (b.grounding and b.tsv == bench.tsv)), None)
        if same is None:
            out.append(bench)
        elif (same.given_path or bench.given_path) and same.tsv != bench.tsv:
            raise SatoriError(
                f"two benchmarks would be named '{bench.name}': {same.requested} and {bench.requested}",
                hint="VLMEvalKit names a benchmark after its file; rename one of the files",
            )
    return out


# -- models and launches ----------------------------------------------------------------------
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

    def write_spec(self) -> None:
        """Into the work dir `orchestrate.prepare_work_dir` made; every launch reads it."""
        self.spec_path.write_text(json.dumps(self.spec(), indent=2), encoding="utf-8")

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

    def command(self, model: ModelSpec) -> Command:
        """The model's launch (one per model, run one after the other): `torchrun --standalone
        --nproc-per-node=N -m worker ...` or plain python."""
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


# -- from the request to the plan ------------------------------------------------------------
@dataclass
class EvalRequest:
    """`satori eval`'s options as given (their defaults are the command's)."""

    data: list[str]
    model: str | None
    procs: int
    baseline: str | None
    baseline_prompt: str
    grammar: str | None  # None: the run folder's recorded grammar, else satori
    judge: str
    judge_url: str | None
    judge_key: str | None
    limit: int | None
    backend: str
    base_url: str | None
    api_key: str
    data_dir: Path | None
    work_dir: Path | None
    overwrite: bool
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    min_pixels: int | None
    max_pixels: int | None
    dry_run: bool
    verbose: bool


def _validate(req: EvalRequest) -> Decoding:
    if req.backend not in BACKENDS:
        raise SatoriError(f"unknown backend '{req.backend}'", hint=f"choose one of {', '.join(BACKENDS)}")
    if req.baseline_prompt not in ("stock", "satori"):
        raise SatoriError("--baseline-prompt must be 'stock' or 'satori'")
    if req.grammar is not None:
        get_grammar(req.grammar)  # an unknown name stops here, before anything is written
    names = [n for item in req.data for n in item.split(",") if n.strip()]
    if not names:
        raise SatoriError("no benchmark given", hint="e.g. satori eval --data MMBench MMStar")
    req.data = [n.strip() for n in names]
    try:
        settle_budget([], req.min_pixels, req.max_pixels)  # a bad bound fails before any model loads
        return Decoding(req.temperature, req.top_p, req.top_k, req.repetition_penalty, req.max_new_tokens)
    except ValueError as exc:
        raise SatoriError(str(exc)) from exc


def build_plan(req: EvalRequest) -> EvalPlan:
    decoding = _validate(req)
    check_judge(req.judge, req.judge_url, req.judge_key, reach=not req.dry_run)  # a dry run stays offline
    data_dir = (req.data_dir or default_data_dir()).expanduser().resolve()
    benchmarks = resolve_all(req.data, data_dir)
    specs, resolved = resolve_models(req)
    # A run's model is scored in the budget it was trained in (a contradicting flag is refused).
    budget = settle_budget(resolved, req.min_pixels, req.max_pixels)
    work_dir = (req.work_dir or paths().runs / "eval" / time.strftime("%Y%m%d-%H%M%S")).expanduser().resolve()
    check_work_dir(work_dir)
    return EvalPlan(
        benchmarks=benchmarks,
        models=specs,
        work_dir=work_dir,
        data_dir=data_dir,
        backend=req.backend,
        procs=req.procs,
        budget=budget,
        decoding=decoding,
        judge=req.judge,
        judge_url=req.judge_url,
        judge_key=req.judge_key,
        limit=req.limit,
        base_url=req.base_url,
        api_key=req.api_key,
        verbose=req.verbose,
    )


# What an evaluation leaves in its work dir (besides a folder per model).
WORK_DIR_MARKS = ("satori_eval_spec.json", "eval.log", "summary.json")


def check_work_dir(work_dir: Path) -> None:
    """--out is a folder that is new, empty, or an earlier evaluation's (whose results
    --overwrite replaces): never a file, and never a folder of something else."""
    if check_folder(work_dir, "--out") and not any((work_dir / m).exists() for m in WORK_DIR_MARKS):
        raise SatoriError(
            f"--out {work_dir} is not empty and holds no satori evaluation: satori will not write there",
            hint="choose a new or empty folder",
        )


def resolve_models(req: EvalRequest) -> tuple[list[ModelSpec], list[Model]]:
    """What each launch runs, and the resolved models whose runs set the pixel budget.

    Local backends get checkpoint folders: a run folder's last checkpoint, a hub model from the
    cache or downloaded, `tiny` built; a dry run downloads and builds nothing. With `--backend
    api` the names are served model names; a `--model` that is a local run folder (or one of its
    checkpoints) names the served model's budget and grammar, and the server's first model is
    asked. `grammar` (--grammar) is the evaluated model's, else the one its run recorded, else
    satori; the baseline keeps its own run's grammar, if any, else shares the evaluated model's.
    """
    baseline, base_url, grammar = req.baseline, req.base_url, req.grammar
    if req.backend == "api":
        model = req.model or ""
        if not base_url:
            raise SatoriError("--backend api needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        offered = served_models(base_url)
        local = models.resolve(model, hub="keep") if model and Path(model).expanduser().exists() else None
        name = (None if local else model) or (offered[0] if offered else None)
        if not name:
            raise SatoriError(f"the server at {base_url} lists no models; pass --model NAME")
        main = _grammar(grammar, local)
        specs = [ModelSpec(SATORI_NAME, model or name, name, "satori", main, run=_run(local))]
        if baseline:
            specs.append(ModelSpec(BASELINE_NAME, baseline, baseline, req.baseline_prompt, main))
        return specs, [local] if local else []
    if base_url:
        raise SatoriError("--base-url is only used with --backend api")
    model = req.model or DEFAULT_MODEL
    hub = "keep" if req.dry_run else "download"
    found = models.resolve(model, flag="--model", hub=hub, build=not req.dry_run)
    main = _grammar(grammar, found)
    specs = [ModelSpec(SATORI_NAME, model, found.path, "satori", main, run=_run(found))]
    resolved = [found]
    if baseline:
        base = models.resolve(baseline, flag="--baseline-model", hub=hub, build=not req.dry_run)
        own = _grammar(None, base, main)
        specs.append(ModelSpec(BASELINE_NAME, baseline, base.path, req.baseline_prompt, own, run=_run(base)))
        resolved.append(base)
    return specs, resolved


def _grammar(chosen: str | None, model: Model | None, default: str | None = None) -> str:
    """--grammar if given, else the one the model's run recorded, else `default` (satori)."""
    recorded = model.run.grammar if model is not None and model.run is not None else None
    return get_grammar(chosen or recorded or default).name


def _run(model: Model | None) -> str | None:
    return str(model.run.folder) if model is not None and model.run is not None else None
