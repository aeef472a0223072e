"""`satori eval` as a library: resolve models and data, launch VLMEvalKit, judge the outcome."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from satori_cli.cmdline import run
from satori_cli.errors import SatoriError
from satori_cli.evaluation import records
from satori_cli.evaluation.datasets import Benchmark, link_run_data
from satori_cli.evaluation.plan import BASELINE_NAME, SATORI_NAME, EvalPlan, ModelSpec
from satori_cli.evaluation.results import Outcome, collect
from satori_cli.http_client import served_models
from satori_cli.train.runinfo import model_grammar, recorded_grammar

QWEN_VL_TYPES = ("qwen2_5_vl", "qwen2_vl")


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") != 1 or Path(source).exists()


def check_checkpoint(folder: Path) -> None:
    """A Qwen2.5-VL (or Qwen2-VL) checkpoint, judged by its config.json, not its folder name."""
    config = folder / "config.json"
    if not config.is_file():
        raise SatoriError(f"{folder} has no config.json: not a model checkpoint")
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except ValueError as exc:
        raise SatoriError(f"{config} is not valid JSON: {exc}") from exc
    if kind not in QWEN_VL_TYPES:
        raise SatoriError(f"{folder} is a '{kind}' model; satori eval runs Qwen2.5-VL checkpoints")


def resolve_checkpoint(source: str, flag: str = "--model") -> Path:
    """A local folder, or a hub id found in the local cache or downloaded (one line if not)."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        check_checkpoint(folder)
        return folder.resolve()
    if _looks_like_path(source):
        raise SatoriError(f"model folder not found: {folder}")
    from huggingface_hub import snapshot_download

    try:
        found = Path(snapshot_download(source, local_files_only=True))
    except Exception:
        try:
            from satori_cli.ui import err_console

            with err_console().status(f"downloading {source} from the Hugging Face hub ..."):
                found = Path(snapshot_download(source))
        except Exception as exc:
            raise SatoriError(
                f"'{source}' is not a local folder and the Hugging Face hub could not provide it "
                f"({type(exc).__name__})",
                hint=f"download it elsewhere and pass {flag} /path/to/folder",
            ) from exc
    check_checkpoint(found)
    return found


def resolve_models(
    model: str,
    baseline: str | None,
    backend: str,
    base_url: str | None,
    baseline_prompt: str,
    grammar: str | None = None,
) -> list[ModelSpec]:
    """The models to evaluate. `grammar` (--grammar) is the evaluated model's, else the one
    its run folder recorded, else satori; the baseline keeps its own run's grammar, if any,
    else shares the evaluated model's."""
    if backend == "api":
        if not base_url:
            raise SatoriError("--backend api needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        offered = served_models(base_url)
        name = model or (offered[0] if offered else None)
        if not name:
            raise SatoriError(f"the server at {base_url} lists no models; pass --model NAME")
        main = model_grammar(grammar).name
        specs = [ModelSpec(SATORI_NAME, name, name, "satori", main)]
        if baseline:
            specs.append(ModelSpec(BASELINE_NAME, baseline, baseline, baseline_prompt, main))
        return specs
    if base_url:
        raise SatoriError("--base-url is only used with --backend api")
    main = model_grammar(grammar, model).name
    specs = [ModelSpec(SATORI_NAME, model, str(resolve_checkpoint(model)), "satori", main)]
    if baseline:
        base_path = str(resolve_checkpoint(baseline, "--baseline-model"))
        own = model_grammar(recorded_grammar(baseline) or main).name
        specs.append(ModelSpec(BASELINE_NAME, baseline, base_path, baseline_prompt, own))
    return specs


def prepare_work_dir(plan: EvalPlan, overwrite: bool) -> None:
    """VLMEvalKit silently reuses old predictions (and decoded images) in its work dir: refuse,
    or clear on request. Then make the launches' data folder (LMUData), which must exist:
    VLMEvalKit falls back to ~/LMUData otherwise."""
    ours = [plan.work_dir / m.name for m in plan.models]
    if plan.lmu_dir != plan.data_dir:
        ours.append(plan.lmu_dir)
    stale = [folder for folder in ours if folder.exists() or folder.is_symlink()]
    if stale and not overwrite:
        raise SatoriError(
            f"{plan.work_dir} already holds results ({stale[0].name}/)",
            hint="choose a new --work-dir, or pass --overwrite to replace them",
        )
    for folder in stale:
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
        else:
            folder.unlink()
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    plan.data_dir.mkdir(parents=True, exist_ok=True)
    if plan.lmu_dir != plan.data_dir:
        link_run_data(plan.benchmarks, plan.data_dir, plan.lmu_dir)


def settings_of(plan: EvalPlan) -> dict:
    """What was asked for, and (`resolved`) what each model's processes recorded they really used."""
    return {
        "backend": plan.backend,
        "procs": plan.procs,
        "min_pixels": plan.budget.min_pixels,
        "max_pixels": plan.budget.max_pixels,
        "max_new_tokens": plan.decoding.max_new_tokens,
        "judge": plan.judge,
        "judge_url": plan.judge_url,
        "limit": plan.limit,
        "decoding": plan.decoding.record(),
        "resolved": {m.name: records.runtime(plan.record_dir(m)) for m in plan.models},
        "models": [asdict(m) for m in plan.models],
        "benchmarks": [
            {"requested": b.requested, "name": b.name, "kind": b.kind, "tsv": str(b.tsv), "rows": b.rows}
            for b in plan.benchmarks
        ],
        "data_dir": str(plan.data_dir),
        "lmu_data": str(plan.lmu_dir),
    }


def execute(plan: EvalPlan) -> tuple[int, float]:
    """Launch VLMEvalKit once per model, one after the other; stream the log to `eval.log`.

    Shows items done / total per benchmark (`progress.EvalProgress`); satori's own notes from
    the worker (`[satori] ...`) are printed, VLMEvalKit's log only with --verbose.
    Returns (first non-zero exit code or 0, seconds). Ctrl-C (130) stops before the next model.
    """
    from satori_cli.evaluation.progress import EvalProgress
    from satori_cli.ui import console

    plan.write_spec()
    log_path = plan.work_dir / "eval.log"
    started = time.monotonic()
    first_error = 0
    out = console()
    with EvalProgress(out) as progress:
        for model, command in plan.commands():
            progress.start_model(model.name)

            def on_line(line: str) -> None:
                if progress.feed(line):
                    return
                if plan.verbose:
                    out.print(line, markup=False, highlight=False)
                elif "[satori]" in line:
                    out.print(line.strip(), markup=False, highlight=False)

            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"===== satori: {model.name} ({model.source}) =====\n")
            code = run(command, on_line=on_line, log_path=log_path)
            progress.end_model()
            first_error = first_error or code
            if code == 130:
                break
    return first_error, time.monotonic() - started


def outcomes_of(plan: EvalPlan) -> list[Outcome]:
    return [collect(plan.work_dir, m.name, b, plan.judge) for b in plan.benchmarks for m in plan.models]


def failure_report(outcomes: list[Outcome], code: int, log: Path) -> SatoriError | None:
    """One SatoriError (exit 1) naming each failed benchmark, or None when all scored."""
    failed = [o for o in outcomes if not o.ok]
    if not failed and code == 0:
        return None
    if not failed:
        return SatoriError(f"VLMEvalKit exited with code {code}", exit_code=1, hint=f"see {log}")
    reasons = "; ".join(f"{o.model} on {o.benchmark}: {o.error}" for o in failed)
    message = f"{len(failed)} of {len(outcomes)} evaluations failed: {reasons}"
    return SatoriError(message, exit_code=1, hint=f"log: {log}")


def missing_official(benchmarks: list[Benchmark]) -> list[Benchmark]:
    return [b for b in benchmarks if not b.present and not b.local]
