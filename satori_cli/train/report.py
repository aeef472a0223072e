"""`satori report RUN_DIR`: PNG plots of a run and an HTML gallery of its completions.

Plots (over training steps): the total reward with each component's mean, KL, the mean
completion length, and the loss (with token accuracy for an SFT run). The gallery shows
logged completions on their images: predicted boxes
(red; the model answers in resized-input pixels, mapped back with the run's pixel budget)
and ground-truth boxes (green, original pixels), with the caption, answer and each reward.
Images are inlined as base64 so the HTML file can be mailed or opened anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from satori_cli import outputs
from satori_cli.data.validate import finite
from satori_cli.errors import SatoriError
from satori_cli.grammar import parse
from satori_cli.pixels import PixelBudget
from satori_cli.train import runfolder, runlogs

THUMB = 320  # gallery image width in pixels


@dataclass
class Report:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    eval_command: str | None = None  # the grounding evaluation of the run's val split, if it has one
    notes: list[str] = field(default_factory=list)  # what the plots alone would not say


# Each series of a panel gets its own line style and marker, so one drawn over another still shows.
STYLES = (("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 3)), "x"))
FLAT = 1e-9  # a series whose values all lie within this of each other is flat


def series_notes(series: dict[str, list[float]]) -> dict[str, str]:
    """Legend notes: a flat series says its value; one that repeats an earlier one says which.

    >>> series_notes({"total": [0.0, 0.0], "format": [0.0, 0.0], "kl": [0.1, 0.2]})
    {'total': 'flat at 0.000', 'format': 'flat at 0.000, = total'}
    >>> series_notes({"mean": [1.0, 2.0], "max": [1.0, 2.0]})
    {'max': '= mean'}
    """
    notes: dict[str, str] = {}
    seen: list[tuple[str, list[float]]] = []
    for label, ys in series.items():
        parts = []
        if ys and max(ys) - min(ys) <= FLAT:
            parts.append(f"flat at {ys[0]:.3f}")
        same = next((o for o, other in seen if len(other) == len(ys) and _close(other, ys)), None)
        if same is not None:
            parts.append(f"= {same}")
        seen.append((label, ys))
        if parts:
            notes[label] = ", ".join(parts)
    return notes


def _close(a: list[float], b: list[float]) -> bool:
    return all(abs(x - y) <= FLAT for x, y in zip(a, b, strict=True))


def reward_series(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(metric key, label) of the total reward and of each reward function the run logged."""
    return [("reward", "total")] + [(f"rewards/{n}/mean", n) for n in runlogs.reward_components(rows)]


def zero_rewards_note(rows: list[dict[str, Any]]) -> str | None:
    """The line to print when every logged reward is 0 at every step (a random model's run),
    so a flat plot is not taken for a broken one."""
    keys = [key for key, _ in reward_series(rows)]
    values = [float(row[k]) for row in rows for k in keys if isinstance(row.get(k), (int, float))]
    if not values or any(abs(v) > FLAT for v in values):
        return None
    return (
        "every reward is 0 at every step: expected for a random model such as the smoke preset's tiny "
        "one (it cannot write the format yet, so nothing scores); the plumbing worked"
    )


def trend_note(rows: list[dict[str, Any]], least: int = 8) -> str | None:
    """Each reward's mean over the first and the last quarter of the logged steps: the trend that a
    few sampled completions a step hide in the plot (GRPO rewards are noisy step to step).

    >>> rows = [{"step": i, "reward": r} for i, r in enumerate([1.0, 1.2, 0.8, 1.0, 1.4, 1.6, 1.2, 1.4], 1)]
    >>> trend_note(rows)
    'mean reward over the first 2 and the last 2 of 8 steps: total 1.10 -> 1.30'
    """
    series = [(label, _series(rows, key)[1]) for key, label in reward_series(rows)]
    series = [(label, ys) for label, ys in series if len(ys) >= least]
    if not series:
        return None
    n = len(series[0][1])
    k = n // 4
    same = [(label, ys) for label, ys in series if len(ys) == n]  # one step count for the sentence
    parts = [f"{label} {sum(ys[:k]) / k:.2f} -> {sum(ys[-k:]) / k:.2f}" for label, ys in same]
    return f"mean reward over the first {k} and the last {k} of {n} steps: " + ", ".join(parts)


def _run_budget(run_dir: Path) -> PixelBudget:
    """The run's budget through the one checked reader of run.json (a malformed one is one line)."""
    from satori_cli.models import run_for

    run = run_for(run_dir)
    return run.budget if run is not None else PixelBudget()


def grounding_eval_command(run_dir: Path) -> str | None:
    """`satori eval` of the run's latest checkpoint on its val split, at the run's budget (None: no split)."""
    import shlex

    run_dir = Path(run_dir)
    val = next((p for p in (run_dir / "data" / "val.jsonl", run_dir / "data" / "prepared" / "val.jsonl")
                if p.is_file()), None)  # fmt: skip
    if val is None:
        return None
    checkpoint = runlogs.latest_checkpoint(run_dir)
    model = shlex.quote(str(checkpoint)) if checkpoint else shlex.quote(str(run_dir)) + "/checkpoint-N"
    command = f"satori eval --data {shlex.quote(str(val))} --model {model}"
    budget = _run_budget(run_dir)
    run = runfolder.read_run_json(run_dir)
    if budget != PixelBudget():
        command += f" --min-pixels {budget.min_pixels} --max-pixels {budget.max_pixels}"
    if isinstance(run.get("model"), str) and run["model"]:  # beside the model the run started from
        command += f" --baseline --baseline-model {shlex.quote(run['model'])}"
    return command


def _pyplot():
    from satori_cli.errors import require

    matplotlib = require("matplotlib", "train", "satori report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)):
            xs.append(row["step"])
            ys.append(float(value))
    return xs, ys


def plot_metrics(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """rewards.png (total + components), kl.png, completion_length.png, loss.png (+ token accuracy).
    Series that are flat or repeat another say so in the legend, and each has its own line style
    and marker."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    written = []
    panels = [
        ("rewards.png", "reward", reward_series(rows)),
        ("kl.png", "KL to the reference policy", [("kl", "kl")]),
        (
            "completion_length.png",
            "completion length (tokens)",
            [("completions/mean_length", "mean"), ("completions/max_length", "max")],
        ),
        (
            "loss.png",
            "training loss (SFT: and token accuracy)",
            [("loss", "loss"), ("token_acc", "token acc")],
        ),
    ]
    for name, title, series in panels:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        data = {label: _series(rows, key) for key, label in series}
        data = {label: xy for label, xy in data.items() if xy[0]}
        notes = series_notes({label: ys for label, (_, ys) in data.items()})
        legend = [f"{label} ({notes[label]})" if label in notes else label for label in data]
        for i, ((xs, ys), shown) in enumerate(zip(data.values(), legend, strict=True)):
            style, marker = STYLES[i % len(STYLES)]
            ax.plot(
                xs,
                ys,
                linestyle=style,
                marker=marker,
                markevery=max(1, len(xs) // 20),
                markersize=max(3, 10 - 2 * (i % 4)),  # a later marker sits inside an earlier, larger one
                fillstyle="none" if i else "full",
                label=shown,
            )
        if not data:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if data:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / name
        # The legend as text in the PNG too (tEXt chunk), for tools and tests.
        fig.savefig(path, metadata={"Title": title, "Description": "; ".join(legend) or "not logged"})
        plt.close(fig)
        written.append(path)
    return written


def dataset_rows(run: dict[str, Any], run_dir: Path) -> dict[str, dict[str, Any]]:
    """Training rows by their `solution` tag (the row id satori adds), for images and ground truth."""
    files = [Path(run_dir) / "data" / "train.jsonl", Path(run_dir) / "data" / "val.jsonl"]
    swift_args = run.get("swift_args")
    datasets = swift_args.get("dataset") if isinstance(swift_args, dict) else None
    files += [Path(v) for v in (datasets if isinstance(datasets, list) else []) if isinstance(v, str)]
    rows: dict[str, dict[str, Any]] = {}
    for path in files:
        for row in runlogs.json_objects(path):
            rows.setdefault(str(row.get("solution", row.get("id"))), row)
    return rows


def _box(box: Any, width: int, height: int) -> list[float] | None:
    """Four finite numbers as a rectangle inside the image, corners in order; None for anything else."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return None
    numbers = [finite(v) for v in box]  # a 400-digit integer too: math.isfinite would raise on it
    if None in numbers:
        return None
    x1, y1, x2, y2 = numbers
    xs = sorted(min(max(x, 0.0), width) for x in (x1, x2))
    ys = sorted(min(max(y, 0.0), height) for y in (y1, y2))
    return [xs[0], ys[0], xs[1], ys[1]]


def _draw(row: dict[str, Any], predicted: list, budget: PixelBudget) -> str | None:
    """The row's image with boxes drawn, as a base64 PNG data URL (None if unreadable).

    The rows are the run's data files: whatever is in them (a box of text, a FIFO for an image)
    costs the card its picture, never the report."""
    from PIL import Image, ImageDraw

    images = row.get("images")
    if not isinstance(images, list) or not images:
        return None
    first = images[0]
    path = first.get("path") if isinstance(first, dict) else first
    if not isinstance(path, str) or not Path(path).is_file():  # not a FIFO: opening one would block
        return None
    try:
        image = Image.open(path).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    width, height = image.size
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(width, height) / 200))
    truth = row.get("bboxs")
    for box in truth if isinstance(truth, list) else []:
        if rect := _box(box, width, height):
            draw.rectangle(rect, outline=(0, 200, 0), width=line)
    try:
        mapped = budget.to_original(predicted, width, height) if predicted else []
    except ValueError:
        mapped = []
    for box in mapped:
        if rect := _box(box, width, height):
            draw.rectangle(rect, outline=(230, 0, 0), width=line)
    if width > THUMB:
        image = image.resize((THUMB, max(1, round(height * THUMB / width))))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _reward_keys(item: dict[str, Any]) -> list[str]:
    skip = {"step", "prompt", "completion", "advantages", "solution", "entropy", "num_turns"}
    return [k for k, v in item.items() if k not in skip and isinstance(v, (int, float))]


def write_gallery(run_dir: Path, out_dir: Path, max_items: int) -> Path:
    """gallery.html: the latest logged completions, newest step first, one card each."""
    budget = _run_budget(run_dir)
    run = runfolder.read_run_json(run_dir)
    dataset = dataset_rows(run, run_dir)
    grammar = runfolder.model_grammar(None, run_dir)  # "well-formed" in the run's own grammar
    seen, items = set(), []
    for item in reversed(runlogs.read_completions(run_dir)):
        key = repr((item.get("step"), item.get("completion"), item.get("solution")))  # may hold dicts
        if key in seen:
            continue
        seen.add(key)
        items.append(item)
        if len(items) >= max_items:
            break
    cards = []
    for item in items:
        completion = str(item.get("completion", ""))
        parsed = parse(completion, grammar=grammar)
        row = dataset.get(str(item.get("solution")), {})
        image = _draw(row, list(parsed.boxes or ()), budget) if row else None
        question = ""
        messages = row.get("messages")
        for message in messages if isinstance(messages, list) else []:
            if isinstance(message, dict) and message.get("role") == "user":
                question = str(message.get("content", "")).replace("<image>", "")
        rewards = " · ".join(f"{k} {float(item[k]):.2f}" for k in _reward_keys(item))
        truth = row.get("possible_answers")
        answers = ", ".join(map(str, truth)) if isinstance(truth, list) else ""
        cards.append(
            "<div class='card'>"
            + (f"<img src='{image}' alt='image'>" if image else "<div class='noimg'>image not found</div>")
            + f"<p class='meta'>step {html.escape(str(item.get('step', '?')))} · {html.escape(rewards)}</p>"
            + (f"<p><b>Q</b> {html.escape(question)}</p>" if question else "")
            + (f"<p><b>truth</b> {html.escape(answers)}</p>" if answers else "")
            + f"<p><b>answer</b> {html.escape(parsed.answer or '-')} · "
            + ("well-formed" if parsed.well_formed else "malformed: " + html.escape(parsed.reason or ""))
            + "</p>"
            + f"<pre>{html.escape(completion[:2000])}</pre></div>"
        )
    body = "\n".join(cards) or "<p>No completions logged (run with log_completions true).</p>"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>satori run gallery</title><style>"
        "body{font-family:sans-serif;margin:1em;background:#fafafa}"
        ".grid{display:flex;flex-wrap:wrap;gap:12px}"
        ".card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;width:340px}"
        ".card img{width:320px;display:block}.meta{color:#555;font-size:12px}"
        "pre{white-space:pre-wrap;font-size:11px;max-height:160px;overflow:auto;background:#f3f3f3}"
        ".noimg{height:60px;color:#999}</style></head><body>"
        f"<h1>{html.escape(Path(run_dir).name)}</h1>"
        "<p>Boxes: <span style='color:#e60000'>predicted</span>, "
        "<span style='color:#00a000'>ground truth</span>.</p>"
        f"<div class='grid'>{body}</div></body></html>"
    )
    path = out_dir / "gallery.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_report(
    run_dir: Path, out_dir: Path | None = None, max_completions: int = 24, overwrite: bool = False
) -> Report:
    """Render into a scratch folder, then move each file into place: a file in `out_dir` that
    satori did not write is refused (before any is moved) unless `overwrite`. The default
    folder, RUN_DIR/report, is the run's own and is replaced freely."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SatoriError(f"run folder {run_dir} not found")
    rows = runlogs.read_metrics(run_dir)
    if not rows:
        raise SatoriError(
            f"{run_dir} has no training metrics (logging.jsonl)", hint="is it a `satori train` run folder?"
        )
    final = Path(out_dir) if out_dir else run_dir / "report"
    outputs.ensure_dir(final, "--out")
    with outputs.staging(final, overwrite=overwrite or out_dir is None) as out:
        report = Report(out)
        report.files += plot_metrics(rows, out)
        report.files.append(write_gallery(run_dir, out, max_completions))
    report.out_dir, report.files = final, [final / p.name for p in report.files]
    report.eval_command = grounding_eval_command(run_dir)
    if note := zero_rewards_note(rows) or trend_note(rows):
        report.notes.append(note)
    return report
