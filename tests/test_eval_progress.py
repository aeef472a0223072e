"""`satori eval` while it runs: items done / total per benchmark and model, and where its data goes."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from rich.console import Console

from satori_cli.evaluation.progress import EvalProgress, ItemCounter, parse_progress, progress_line
from satori_cli.evaluation.sample_bench import write_tiny_bench

sys.path.insert(0, str(Path(__file__).parent))
from eval_fake_server import answer_for

from tests.serve_helpers import FakeServer

LINE = re.compile(r"^satori TinyBench: (\d+)/8 items")


class _Dataset:
    def __init__(self, name: str, rows: int) -> None:
        self.dataset_name, self.data = name, list(range(rows))


def test_the_worker_counts_its_ranks_share_and_says_when_done(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    lines: list[str] = []
    counter = ItemCounter(emit=lines.append)
    counter.start(_Dataset("MMStar", 5))  # rank 1 of 2 gets items 1 and 3
    counter.item_done()
    counter.item_done()
    records = [parse_progress(line) for line in lines]
    assert records[0] == {"dataset": "MMStar", "rank": 1, "world": 2, "done": 0, "total": 5}
    assert records[-1]["done"] == 2  # its last item is always reported, throttled or not
    counter.start(None)  # a call without a dataset (not VLMEvalKit's) counts nothing
    counter.item_done()
    assert len(lines) == len(records)


def test_a_record_glued_to_a_tqdm_fragment_is_still_read():
    line = "Infer:  50%|#####  | 4/8 [00:01<00:01]" + progress_line("B", 0, 1, 4, 8)
    assert parse_progress(line)["done"] == 4
    assert parse_progress("[satori-progress] not json") is None
    assert parse_progress("plain VLMEvalKit log") is None


def _piped() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=80, force_terminal=False), buffer


def test_piped_progress_adds_ranks_and_prints_a_whole_line_per_tenth():
    console, buffer = _piped()
    with EvalProgress(console) as progress:
        progress.start_model("satori")
        for done in range(0, 51):  # two ranks of a 100-item benchmark, 50 each
            for rank in (0, 1):
                assert progress.feed(progress_line("MMStar", rank, 2, done, 100))
        assert not progress.feed("Evaluation Results ---------")
        progress.end_model()
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "satori: starting VLMEvalKit and loading the model ..."
    counts = [int(re.match(r"satori MMStar: (\d+)/100 items", x).group(1)) for x in lines[1:]]
    assert counts[0] == 0 and counts[-1] == 100 and counts == sorted(counts)
    assert len(counts) == 11  # 0, then one line per tenth: no flood, whatever the rate
    assert lines[-1].startswith("satori MMStar: 100/100 items in ") and lines[-1].endswith("; scoring")
    assert all("ETA" in x for x in lines[2:-1])


@pytest.mark.slow
def test_eval_when_piped_shows_items_per_benchmark_and_leaves_home_alone(satori, tmp_path):
    """The api backend against the fake server: plain progress lines, no VLMEvalKit table borders
    in them, and a TSV given by path read through the run's own data folder, never ~/LMUData."""
    home = tmp_path / "home"
    home.mkdir()
    bench = write_tiny_bench(tmp_path / "mine" / "TinyBench.tsv")
    work = tmp_path / "work"
    with FakeServer(answer=answer_for, delay=0.25) as server:
        result = satori(
            "eval", "--data", str(bench), "--backend", "api", "--base-url", server.base_url,
            "--out", str(work),
            env={"HOME": str(home), "LMUData": "", "COLUMNS": "80"},
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "satori: starting VLMEvalKit and loading the model ..." in lines
    progress = [int(m.group(1)) for m in map(LINE.match, lines) if m]
    assert progress[0] == 0 and progress[-1] == 8 and progress == sorted(progress)
    assert len(progress) >= 3  # items landed one by one and were shown on the way
    assert any("ETA" in x for x in lines if LINE.match(x))
    assert not any(x.startswith(("---", "===")) for x in lines)
    assert f"data: {work / 'data'}" in result.stdout
    assert not (home / "LMUData").exists()
    assert (work / "data" / "TinyBench.tsv").resolve() == bench.resolve()
    assert (work / "data" / "images" / "TinyBench").is_dir()  # VLMEvalKit decoded into the run's folder
    assert "Overall" in result.stdout


def test_a_dry_run_writes_no_data_folder(satori, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    bench = write_tiny_bench(tmp_path / "mine" / "TinyBench.tsv")
    result = satori(
        "eval", "--data", str(bench), "MMStar", "--model", "org/model", "--dry-run",
        env={"HOME": str(home), "LMUData": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not (home / "LMUData").exists() and list(home.iterdir()) == []


def test_in_a_terminal_each_benchmark_gets_a_bar_with_its_count():
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=True, color_system=None)
    with EvalProgress(console) as progress:
        progress.start_model("baseline")
        for done in range(9):
            progress.feed(progress_line("TinyBench", 0, 1, done, 8))
        progress.feed(progress_line("MMStar", 0, 1, 0, 1500))
        progress.end_model()
    screen = buffer.getvalue()
    assert "baseline TinyBench" in screen and "8/8" in screen and "done" in screen
    assert "baseline MMStar" in screen and "0/1500" in screen and "stopped" in screen
    assert "baseline TinyBench:" not in screen  # no plain lines in a terminal
