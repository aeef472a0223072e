"""The data a run trains on, made in its run folder: the files swift reads.

`--data` is a prepared JSONL (used as it is), or a raw source that `satori data prepare` reads
(prepared into RUN/data/prepared); the smoke preset without --data uses the built-in sample set.
What swift reads is a copy in RUN/data: for GRPO each row tagged with its id (`tag_rows`), for
the SFT stage each row with its gold completion as the assistant turn.

Gold completions, the targets of a cold-start SFT: a prepared row holds the caption, the accepted
answers and the ground-truth boxes in original-image pixels. The model must answer with boxes in the pixels
of its *resized* input (the frame the bbox reward maps back from), so the gold completion
maps every box through the shared pixel budget (`PixelBudget.to_resized`) and writes it with
the one grammar module (`grammar.format_completion`), with the row's caption and first accepted
answer; in SATORI's grammar:

    <caption>{image_caption}</caption> <bbox>[[x1,y1,x2,y2], ...]</bbox> <answer>{answer}</answer>

(`nocap` drops the caption; grammars with a thinking part have no gold text for it.)

Coordinates are whole pixels, as Qwen2.5-VL writes them: each one is rounded to the nearest
integer (Python's `round`, halves to even), which moves an edge by at most half a pixel of the
resized image. Rounding never leaves the image: the resized sides are whole numbers.

Multi-node: every node of a multi-node run shares one run folder (`--out` on a shared filesystem).
If each node prepared the data itself, they would truncate and rewrite the same files while the others
read them. Instead node 0 writes the files (each atomically: a temporary file, then a rename)
and then `data/ready.json`: what the data was made from and the sha256 of each file. The other
nodes wait for it, check that they were given the same data, and check the files' hashes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from satori_cli import outputs
from satori_cli.errors import SatoriError, one_line
from satori_cli.grammar import Grammar, format_completion, get_grammar
from satori_cli.pixels import PixelBudget
from satori_cli.train.plan import Launch
from satori_cli.train.recipe import Recipe
from satori_cli.train.runfolder import fingerprint

SAMPLE_ROWS = 8

GRPO_KEYS = frozenset({"messages", "images", "bboxs"})


def is_prepared_jsonl(path: Path) -> bool:
    """A JSONL in the GRPO shape satori trains on (first row has messages, images and bboxs;
    `tag_rows` checks every other row)."""
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    return False
                return isinstance(row, dict) and set(row) >= GRPO_KEYS
    return False


def _prepare(src: Path, out_dir: Path) -> Path:
    """A raw source prepared into `out_dir` (no val split): its training JSONL."""
    from satori_cli.data.prepare import prepare_dataset

    return prepare_dataset(src, out_dir).train_path


def resolve_data(recipe: Recipe, run_dir: Path) -> tuple[Path, Path | None]:
    """The prepared training JSONL (preparing a raw source, or the sample set, into the run folder)."""
    if recipe.data is None:
        if recipe.preset != "smoke":
            raise SatoriError(
                "--data is required for this preset",
                hint="e.g. satori data prepare SRC --out data/vqa, then --data data/vqa/train.jsonl",
            )
        from satori_cli.data.sample import write_sample

        raw = write_sample(run_dir / "data" / "sample", SAMPLE_ROWS, 0)
        train = _prepare(Path(raw), run_dir / "data" / "prepared")
    else:
        source = Path(recipe.data).expanduser().resolve()
        if not source.exists():
            raise SatoriError(f"training data {recipe.data} not found")
        train = source if is_prepared_jsonl(source) else _prepare(source, run_dir / "data" / "prepared")
    val = None
    if recipe.val_data:
        val = Path(recipe.val_data).expanduser().resolve()
        if not val.is_file():
            raise SatoriError(f"validation data {recipe.val_data} not found")
    return train, val


def tag_rows(src: Path, dest: Path) -> Path:
    """Copy a prepared JSONL adding `solution` = the row id where absent.

    ms-swift logs a `solution` column next to each completion (and no other column), so this
    is what lets `satori report` find a completion's image and ground-truth boxes. The
    prompt the model sees is unchanged; the rewards ignore the column. Every row must be a
    prepared row: a broken line is refused here, with its number, not minutes later in swift.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed over: a reader (another node, a resumed run) never sees half a file.
    with open(src, "rb") as fin, outputs.atomic_file(dest, remember=False) as fout:
        for n, line in enumerate(fin):
            if not line.strip():
                continue
            row = _prepared_row(line, src, n + 1)
            row.setdefault("solution", str(row.get("id", n)))
            fout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return dest


PREPARE_HINT = "make it with `satori data prepare SRC --out DIR`, or pass the raw source as --data"


def _prepared_row(line: bytes, src: Path, number: int) -> dict[str, Any]:
    """One line of a prepared JSONL as a row, or a one-line error naming the line."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SatoriError(
            f"{src} line {number} is not UTF-8 text (byte {exc.start + 1})", hint=PREPARE_HINT
        ) from None
    except json.JSONDecodeError as exc:
        why = f"{exc.msg} at character {exc.pos + 1}"
        raise SatoriError(f"{src} line {number} is not valid JSON: {why}", hint=PREPARE_HINT) from None
    except (ValueError, RecursionError) as exc:
        raise SatoriError(
            f"{src} line {number} is not valid JSON: {one_line(exc, 120)}", hint=PREPARE_HINT
        ) from None
    if not isinstance(row, dict):
        raise SatoriError(f"{src} line {number} is not a JSON object", hint=PREPARE_HINT)
    missing = sorted(GRPO_KEYS - set(row))
    if missing:
        raise SatoriError(
            f"{src} line {number} has no {', '.join(missing)}: not a prepared row", hint=PREPARE_HINT
        )
    return row


def stage_data(
    stage: str, train: Path, val: Path | None, run_dir: Path, budget: PixelBudget, grammar: str
) -> tuple[Path, Path | None]:
    """The files swift reads, in the run folder: GRPO rows tagged with their id (`tag_rows`), or,
    for SFT, the same rows with their gold completion as the assistant turn (`write_sft_jsonl`)."""
    write = tag_rows
    if stage == "sft":
        write = partial(write_sft_jsonl, budget=budget, grammar=grammar)
    dest, val_dest = stage_files(stage, run_dir)
    return write(train, dest), write(val, val_dest) if val else None


def make_data(
    recipe: Recipe, run_dir: Path, launch: Launch, stage: str, grammar: str, timeout: float
) -> tuple[Path, Path | None, Path, Path | None]:
    """The data as given and the files swift reads: (train, val, staged train, staged val).

    On a multi-node run node 0 makes them once; the other nodes wait for them and verify them.
    """
    source = source_of(recipe.data, recipe.val_data) if launch.nodes > 1 else {}
    if (launch.node_rank or 0) > 0:
        staged = wait_for_data(run_dir, source, timeout)
        return *staged, *staged
    train, val = resolve_data(recipe, run_dir)
    staged = stage_data(stage, train, val, run_dir, recipe.budget, grammar)
    if launch.nodes > 1:
        publish(run_dir, source, *staged)
    return train, val, *staged


def stage_files(stage: str, run_dir: Path) -> tuple[Path, Path]:
    """Where a stage's training and validation files go in the run folder."""
    prefix = "sft_" if stage == "sft" else ""
    return run_dir / "data" / f"{prefix}train.jsonl", run_dir / "data" / f"{prefix}val.jsonl"


# -- gold completions for SFT ---------------------------------------------------------------------
def gold_completion(row: Mapping[str, Any], budget: PixelBudget, grammar: str | Grammar | None = None) -> str:
    """The completion a perfect model gives for a prepared row, boxes in resized-input pixels.

    >>> row = {"image_caption": "A red square.", "possible_answers": ["red"],
    ...        "bboxs": [[10, 20, 110, 120]], "width": 640, "height": 480}
    >>> gold_completion(row, PixelBudget())
    '<caption>A red square.</caption> <bbox>[[10,20,111,119]]</bbox> <answer>red</answer>'
    """
    spec = get_grammar(grammar)
    if spec.thinking_tag:
        raise SatoriError(f"there is no gold <{spec.thinking_tag}> text for the {spec.name} grammar")
    width, height = int(row["width"]), int(row["height"])
    boxes = budget.to_resized(row["bboxs"], width, height)
    whole = [[round(v) for v in box] for box in boxes]
    answers = row["possible_answers"]
    answer = answers if isinstance(answers, str) else answers[0]
    return format_completion(str(row["image_caption"]).strip(), whole, str(answer).strip(), spec)


def sft_row(
    row: Mapping[str, Any], budget: PixelBudget, grammar: str | Grammar | None = None
) -> dict[str, Any]:
    """A prepared GRPO row plus the assistant turn ms-swift's SFT trains on.

    The user turn and images are kept as they are (the same prompt GRPO sees); the reward
    columns stay too, so the same file can be scored.
    """
    messages = [m for m in row["messages"] if m.get("role") != "assistant"]
    gold = gold_completion(row, budget, grammar)
    return {**row, "messages": [*messages, {"role": "assistant", "content": gold}]}


def write_sft_jsonl(src: Path, dest: Path, budget: PixelBudget, grammar: str | Grammar | None = None) -> Path:
    """Write `dest`: every row of the prepared JSONL `src` with its gold assistant turn.

    Written to a partial file renamed into place at the end: a bad row leaves no `dest`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(src, encoding="utf-8") as fin, outputs.atomic_file(dest, remember=False) as fout:
        for number, line in enumerate(fin, 1):
            if not line.strip():
                continue
            try:
                row = sft_row(json.loads(line), budget, grammar)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                raise SatoriError(
                    f"{src} line {number} is not a prepared row ({type(exc).__name__}: {exc})",
                    hint="prepare the data first: satori data prepare SRC --out DIR",
                ) from exc
            fout.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
        if not written:
            raise SatoriError(f"{src} holds no rows")
    return dest


# -- multi-node: node 0 prepares, the others wait -----------------------------------------------
READY = "ready.json"
DEFAULT_TIMEOUT = 3600.0  # preparing a raw data set (images and all) on node 0 can take a while


def ready_path(run_dir: Path) -> Path:
    return Path(run_dir) / "data" / READY


def source_of(data: str | None, val_data: str | None) -> dict[str, Any]:
    """What a node was told to train on: each file's path and sha256 (a folder: its path)."""

    def one(name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        path = Path(name).expanduser().resolve()
        found: dict[str, Any] = {"path": str(path)}
        if path.is_file():
            found["sha256"] = fingerprint(path)["sha256"]
        return found

    return {"data": one(data) or {"path": "(the built-in sample set)"}, "val": one(val_data)}


def _same(mine: dict[str, Any] | None, theirs: dict[str, Any] | None) -> bool:
    """The same data: equal hashes where both have one (mount points may differ), else equal paths."""
    if mine is None or theirs is None:
        return mine is theirs
    if "sha256" in mine and "sha256" in theirs:
        return mine["sha256"] == theirs["sha256"]
    return mine.get("path") == theirs.get("path")


def _describe(source: dict[str, Any] | None) -> str:
    if source is None:
        return "none"
    sha = f" (sha256 {source['sha256'][:12]})" if "sha256" in source else ""
    return f"{source.get('path')}{sha}"


def _entry(run_dir: Path, path: Path | None) -> dict[str, Any] | None:
    """A prepared file by its place in the run folder (mount points may differ between nodes)."""
    found = fingerprint(path)
    if found is None:
        return None
    found["path"] = os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())
    return found


def publish(run_dir: Path, source: dict[str, Any], train: Path, val: Path | None) -> Path:
    """Node 0: record the prepared files and their hashes, after they are complete."""
    record = {
        "source": source,
        "train": _entry(run_dir, train),
        "val": _entry(run_dir, val),
        "written_by": {"node_rank": 0, "host": os.uname().nodename, "pid": os.getpid()},
    }
    path = ready_path(run_dir)
    with outputs.atomic_file(path, remember=False) as handle:  # readers see all of it or none
        handle.write(json.dumps(record, indent=2) + "\n")
    return path


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not there yet, or (on a filesystem without atomic rename) half-written
    return data if isinstance(data, dict) else None


def _problem(run_dir: Path, record: dict[str, Any], source: dict[str, Any]) -> str | None:
    """Why the published data is not (yet) this node's: None when it is, complete and intact."""
    theirs = record.get("source") or {}
    for key, what in (("data", "data"), ("val", "validation data")):
        if not _same(source.get(key), theirs.get(key)):
            return (
                f"node 0 prepared its {what} from {_describe(theirs.get(key))}, "
                f"but this node was given {_describe(source.get(key))}"
            )
    if not isinstance(record.get("train"), dict):
        return "node 0's record has no training file"
    for key in ("train", "val"):
        want = record.get(key)
        if not isinstance(want, dict):
            continue
        path = Path(run_dir) / want["path"]
        if not path.is_file():
            return f"{path} (recorded by node 0) does not exist on this node"
        have = fingerprint(path)
        if have is None or have["sha256"] != want["sha256"]:
            return f"{path} does not match the sha256 node 0 recorded ({want['sha256'][:12]})"
    return None


def wait_for_data(
    run_dir: Path, source: dict[str, Any], timeout: float = DEFAULT_TIMEOUT, interval: float = 1.0
) -> tuple[Path, Path | None]:
    """Nodes 1..N-1: wait until node 0 has published this node's data, verified; its (train, val).

    A record from an earlier run with other data is waited past (node 0 may not have replaced it
    yet); at the deadline the last reason is the one-line error.
    """
    path = ready_path(run_dir)
    deadline = time.monotonic() + timeout
    problem = f"node 0 has not published the prepared data ({path} does not exist)"
    while True:
        record = _read(path)
        if record is not None:
            problem = _problem(run_dir, record, source) or ""
            if not problem:
                val = record.get("val")
                train = Path(run_dir) / record["train"]["path"]
                return train, Path(run_dir) / val["path"] if val else None
        if time.monotonic() >= deadline:
            raise SatoriError(
                f"waited {timeout:g} s for node 0's data: {problem}",
                hint="start node 0 too, with the same --data and the same --out on a filesystem "
                "every node shares (or raise --data-timeout)",
            )
        time.sleep(interval)
