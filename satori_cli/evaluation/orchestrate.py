"""From the user's request to a printed, honest result (the body of `satori eval`): resolve
models and data into a plan, launch VLMEvalKit once per model, judge and print the outcome."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from satori_cli import models
from satori_cli.config import DEFAULT_MODEL, paths
from satori_cli.console import console
from satori_cli.decoding import Decoding
from satori_cli.errors import Interrupted, SatoriError
from satori_cli.evaluation import results
from satori_cli.evaluation.grounding import SOURCE_PREFIX
from satori_cli.evaluation.judge import check_judge
from satori_cli.evaluation.plan import (
    BACKENDS,
    BASELINE_NAME,
    SATORI_NAME,
    Benchmark,
    EvalPlan,
    ModelSpec,
    default_data_dir,
    link_run_data,
    resolve_all,
)
from satori_cli.evaluation.progress import EvalProgress
from satori_cli.grammar import get_grammar
from satori_cli.http_client import served_models
from satori_cli.models import Model, settle_budget
from satori_cli.outputs import check_folder
from satori_cli.process import run


@dataclass
class EvalRequest:
    data: list[str]
    model: str | None = None
    procs: int = 1
    baseline: str | None = None
    baseline_prompt: str = "stock"
    grammar: str | None = None  # None: the run folder's recorded grammar, else satori
    judge: str = "exact_matching"
    judge_url: str | None = None
    judge_key: str | None = None
    limit: int | None = None
    backend: str = "transformers"
    base_url: str | None = None
    api_key: str = "EMPTY"
    data_dir: Path | None = None
    work_dir: Path | None = None
    overwrite: bool = False
    max_new_tokens: int = 2048
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    min_pixels: int | None = None
    max_pixels: int | None = None
    dry_run: bool = False
    verbose: bool = False


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
        "resolved": {m.name: results.runtime(plan.record_dir(m)) for m in plan.models},
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
    plan.write_spec()
    log_path = plan.work_dir / "eval.log"
    started = time.monotonic()
    first_error = 0
    out = console()
    with EvalProgress(out) as progress:
        for model in plan.models:
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
            code = run(plan.command(model), on_line=on_line, log_path=log_path)
            progress.end_model()
            first_error = first_error or code
            if code == 130:
                break
    return first_error, time.monotonic() - started


def check_outcomes(outcomes: list[results.Outcome], code: int, log: Path) -> None:
    """Raise one SatoriError (exit 1) naming each failed benchmark, unless all scored."""
    failed = [o for o in outcomes if not o.ok]
    if failed:
        reasons = "; ".join(f"{o.model} on {o.benchmark}: {o.error}" for o in failed)
        message = f"{len(failed)} of {len(outcomes)} evaluations failed: {reasons}"
        raise SatoriError(message, exit_code=1, hint=f"log: {log}")
    if code != 0:
        raise SatoriError(f"VLMEvalKit exited with code {code}", exit_code=1, hint=f"see {log}")


def evaluate(req: EvalRequest) -> list[results.Outcome]:
    """Run the evaluation and print the table; raise SatoriError (exit 1) if anything failed."""
    plan = build_plan(req)
    out = console()
    for bench in plan.benchmarks:
        arrow = f"{bench.requested} -> {bench.name}" if bench.requested != bench.name else bench.name
        out.print(f"[bold]{escape(arrow)}[/]" + (f" [dim]({escape(bench.note)})[/]" if bench.note else ""))
        if not bench.present:
            into = "" if plan.lmu_dir == plan.data_dir else f" into {plan.lmu_dir} (this run only)"
            text = (
                f"  {bench.tsv} is not there yet: VLMEvalKit will try to download it{into} "
                f"(offline, place the official {bench.name}.tsv in {bench.tsv.parent})"
            )
            out.print(f"[yellow]{escape(text)}[/]")
    if any(not b.grounding for b in plan.benchmarks):
        out.print(f"[dim]{escape(data_line(plan))}[/]")
    grammars = ", ".join(
        f"{m.name} {m.grammar}" + (" (stock prompt)" if m.prompt == "stock" else "") for m in plan.models
    )
    out.print(
        f"[dim]budget {plan.budget}, {plan.decoding.describe()}, "
        f"judge {plan.judge}, backend {plan.backend} x{plan.procs}; grammar: {grammars}[/]"
    )
    if req.dry_run:
        out.print(json.dumps(plan.spec()["models"], indent=2), markup=False, highlight=False)
        for model in plan.models:  # one launch per model, one after the other
            out.print(plan.command(model).display(), markup=False, highlight=False, soft_wrap=True)
        return []

    prepare_work_dir(plan, req.overwrite)
    code, seconds = execute(plan)
    if code == 130:  # Ctrl-C: VLMEvalKit was stopped; what it wrote so far stays in the work dir
        raise Interrupted(f"evaluation stopped; partial results in {plan.work_dir}")
    pairs = [(m.name, b) for b in plan.benchmarks for m in plan.models]
    outcomes = [results.collect(plan.work_dir, name, b, plan.judge) for name, b in pairs]
    settings = settings_of(plan) | {"seconds": round(seconds, 1)}
    json_path, csv_path = results.write_summary(plan.work_dir, outcomes, settings)
    print_table(plan, outcomes)
    for line in resolved_lines(settings["resolved"], outcomes):
        out.print(f"[dim]{line}[/]", highlight=False)
    judges = sorted({o.judge for o in outcomes if o.judge and o.judge != results.GROUNDING_SCORER})
    if judges and plan.judge != "exact_matching":
        out.print(f"[dim]answers matched to options by: {', '.join(judges)} (judge at {plan.judge_url})[/]")
    items = sum(o.items for o in outcomes)
    rate = f", {items / seconds:.2f} items/s" if items and seconds > 0 else ""
    out.print(f"[dim]{items} items in {seconds:.0f} s{rate} (model loading included)[/]")
    out.print(f"summary: {json_path} and {csv_path}")
    check_outcomes(outcomes, code, plan.work_dir / "eval.log")
    return outcomes


def data_line(plan: EvalPlan) -> str:
    """Where VLMEvalKit reads the TSVs and decodes their images (its LMUData) for this run."""
    if plan.lmu_dir == plan.data_dir:
        return f"data: {plan.data_dir} (VLMEvalKit's LMUData: TSVs and decoded images)"
    official = any(not (b.given_path or b.grounding) for b in plan.benchmarks)
    links = f"your TSVs and the official ones in {plan.data_dir}" if official else "your TSVs"
    return f"data: {plan.lmu_dir} (VLMEvalKit's LMUData for this run: links to {links}, decoded images)"


def resolved_lines(resolved: dict, outcomes: list[results.Outcome]) -> list[str]:
    """What each model really ran with, from its processes' own records."""
    lines = []
    for name, got in resolved.items():
        if not got:
            continue
        sizes: Counter[str] = Counter()
        for o in outcomes:
            if o.model == name and o.inputs:
                sizes.update(o.inputs["input_wh"])
        seen = ", ".join(f"{size} x{n}" for size, n in sizes.items())
        devices = ", ".join(f"rank {r}: {d}" for r, d in (got.get("devices") or {}).items())
        lines.append(
            f"{name}: processor budget {got.get('min_pixels')}-{got.get('max_pixels')} px"
            + (f", images in: {seen}" if seen else "")
            + (f" ({devices})" if devices else "")
        )
    return lines


def print_table(plan: EvalPlan, outcomes: list[results.Outcome]) -> None:
    models = [m.name for m in plan.models]
    for bench in plan.benchmarks:
        rows = [r for r in results.table_rows(outcomes, models) if r[0] == bench.name and shown(bench, r[1])]
        if not rows:
            continue  # nothing scored; the error line at the end says why
        rows_run = min(bench.rows or 0, plan.limit) if plan.limit else bench.rows
        what = f"grounding, {rows_run} rows, mean x100" if bench.grounding else "accuracy"
        table = Table(title=f"{bench.name} ({what})", title_justify="left")
        table.add_column("metric")
        for m in plan.models:
            table.add_column(f"{m.name}\n[dim]{m.source}[/]", justify="right")
        if len(models) == 2:
            table.add_column("delta", justify="right")
        for _, metric, values in rows:
            cells = ["-" if v is None else f"{100 * v:.1f}" for v in values]
            if len(models) == 2:
                if None in values:
                    cells.append("-")
                else:
                    d = 100 * (values[0] - values[1])
                    cells.append(f"[{'green' if d > 0 else 'red' if d < 0 else 'dim'}]{d:+.1f}[/]")
            style = "bold" if metric == bench.primary else None
            table.add_row(metric, *cells, style=style)
        for o in outcomes:
            if o.benchmark == bench.name and o.error:
                table.caption = (table.caption or "") + f"{o.model}: {o.error}\n"
        console().print(table)
        for o in outcomes:
            if o.benchmark == bench.name and o.per_row:
                where = escape(f"{o.model}, each row's output and scores: {o.per_row}")
                console().print(f"[dim]{where}[/]", highlight=False, soft_wrap=True)


SHOWN_PER_SOURCE = ("box_iou", "answer")  # the table's per-source rows; summary.json/csv hold all six


def shown(bench: Benchmark, metric: str) -> bool:
    """Whether the printed table has a row for this metric (a grounding run may have many sources)."""
    if not (bench.grounding and metric.startswith(SOURCE_PREFIX)):
        return True
    return metric.rsplit("/", 1)[-1] in SHOWN_PER_SOURCE
