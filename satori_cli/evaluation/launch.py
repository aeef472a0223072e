"""`satori eval` as a library: resolve models and data, launch VLMEvalKit, judge the outcome."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

from satori_cli import models
from satori_cli.errors import SatoriError
from satori_cli.evaluation import records
from satori_cli.evaluation.datasets import link_run_data
from satori_cli.evaluation.plan import BASELINE_NAME, SATORI_NAME, EvalPlan, ModelSpec
from satori_cli.evaluation.results import Outcome, collect
from satori_cli.grammar import get_grammar
from satori_cli.http_client import served_models
from satori_cli.models import Model
from satori_cli.process import run


def resolve_models(
    model: str,
    baseline: str | None,
    backend: str,
    base_url: str | None,
    baseline_prompt: str,
    grammar: str | None = None,
    *,
    dry_run: bool = False,
) -> tuple[list[ModelSpec], list[Model]]:
    """What each launch runs, and the resolved models whose runs set the pixel budget.

    Local backends get checkpoint folders: a run folder's last checkpoint, a hub model from the
    cache or downloaded, `tiny` built; a dry run downloads and builds nothing. With `--backend
    api` the names are served model names; a `--model` that is a local run folder (or one of its
    checkpoints) names the served model's budget and grammar, and the server's first model is
    asked. `grammar` (--grammar) is the evaluated model's, else the one its run recorded, else
    satori; the baseline keeps its own run's grammar, if any, else shares the evaluated model's.
    """
    if backend == "api":
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
            specs.append(ModelSpec(BASELINE_NAME, baseline, baseline, baseline_prompt, main))
        return specs, [local] if local else []
    if base_url:
        raise SatoriError("--base-url is only used with --backend api")
    hub = "keep" if dry_run else "download"
    found = models.resolve(model, flag="--model", hub=hub, build=not dry_run)
    main = _grammar(grammar, found)
    specs = [ModelSpec(SATORI_NAME, model, found.path, "satori", main, run=_run(found))]
    resolved = [found]
    if baseline:
        base = models.resolve(baseline, flag="--baseline-model", hub=hub, build=not dry_run)
        own = _grammar(None, base, main)
        specs.append(ModelSpec(BASELINE_NAME, baseline, base.path, baseline_prompt, own, run=_run(base)))
        resolved.append(base)
    return specs, resolved


def _grammar(chosen: str | None, model: Model | None, default: str | None = None) -> str:
    """--grammar if given, else the one the model's run recorded, else `default` (satori)."""
    recorded = model.run.grammar if model is not None and model.run is not None else None
    return get_grammar(chosen or recorded or default).name


def _run(model: Model | None) -> str | None:
    return str(model.run.folder) if model is not None and model.run is not None else None


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
            hint="choose a new --out, or pass --overwrite to replace them",
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
    from satori_cli.console import console
    from satori_cli.evaluation.progress import EvalProgress

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
