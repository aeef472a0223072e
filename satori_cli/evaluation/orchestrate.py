"""From the user's request to a printed, honest result (the body of `satori eval`): build the
plan (`plan.py`; all a dry run does is print it), launch VLMEvalKit once per model, judge and
print the outcome."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from satori_cli.console import console
from satori_cli.errors import Interrupted, SatoriError
from satori_cli.evaluation import results
from satori_cli.evaluation.grounding import SOURCE_PREFIX
from satori_cli.evaluation.plan import Benchmark, EvalPlan, EvalRequest, build_plan
from satori_cli.evaluation.progress import EvalProgress
from satori_cli.process import run


def link_run_data(benchmarks: list[Benchmark], data_dir: Path, run_dir: Path) -> None:
    """Fill the run's data folder: each TSV given by path, and each official TSV `data_dir`
    holds (VLMEvalKit reads one folder per launch). Links, or copies where links fail."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for bench in benchmarks:
        if bench.grounding:
            continue
        source = bench.tsv if bench.given_path else data_dir / f"{bench.name}.tsv"
        target = run_dir / f"{bench.name}.tsv"
        if not source.is_file() or target.exists() or target.is_symlink():
            continue
        try:
            target.symlink_to(source)
        except OSError:
            shutil.copyfile(source, target)


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
