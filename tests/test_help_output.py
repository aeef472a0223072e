"""Help people read at 80 columns, and output that survives a pipe (a log file, SLURM, `| tee`)."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from satori_cli.app import app


def _command_paths() -> list[list[str]]:
    """Every command and group of the CLI, as argv prefixes (the root is [])."""
    paths: list[list[str]] = []

    def walk(command, prefix: list[str]) -> None:
        paths.append(prefix)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


COMMANDS = _command_paths()


def test_the_walk_finds_every_command():
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "eval", "serve", "report", "rewards score", "data prepare", "download model"} <= names


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda p: " ".join(p) or "satori")
def test_help_shows_readable_metavars_at_80_columns(argv):
    result = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    out = result.output
    # Python types and typer's bracket shapes are not words a user reads.
    assert not re.search(r"<(bool|str|int|float|path|text)>", out), out
    assert "[[" not in out
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    assert "--no-dry-run" not in out and "--no-overwrite" not in out  # flags take no value
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out  # nothing cut short


def test_options_and_arguments_get_words():
    runner = CliRunner()
    env = {"COLUMNS": "120"}
    report = runner.invoke(app, ["report", "--help"], env=env).output
    assert "Usage: satori report [OPTIONS] [RUN_DIR]" in report  # optional: the newest run
    assert re.search(r"--out\s+-o\s+PATH", report) and re.search(r"--max-completions\s+N\b", report)
    evaluate = runner.invoke(app, ["eval", "--help"], env=env).output
    assert "Usage: satori eval [OPTIONS] [NAMES]..." in evaluate
    assert re.search(r"--out\s+-o\s+DIR", evaluate) and re.search(r"--base-url\s+URL", evaluate)
    assert re.search(r"--temperature\s+NUMBER", evaluate)
    serve = runner.invoke(app, ["serve", "--help"], env=env).output
    assert re.search(r"--port\s+PORT", serve) and re.search(r"--startup-timeout\s+SECONDS", serve)
    train = runner.invoke(app, ["train", "--help"], env=env).output
    assert "Usage: satori train [OPTIONS] [-- SWIFT_ARGS...]" in train


def test_help_text_is_reflowed_not_ragged():
    out = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "80"}).output
    # The docstring's own line break after "the shared" no longer ends a screen line early.
    assert "grammar's, --grammar), the shared pixel budget" in " ".join(out.split())
    assert not any(line.rstrip().endswith("the shared") for line in out.splitlines())


def test_piped_output_never_wraps_a_long_path(satori, tmp_path):
    deep = tmp_path.joinpath(*[f"folder-with-a-long-name-{i}" for i in range(6)]) / "TinyBench.tsv"
    result = satori("data", "sample-bench", "--out", str(deep), env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert len(str(deep)) > 80
    assert f"wrote {deep}" in result.stdout.splitlines()  # one line, the whole path


def test_piped_errors_stay_on_one_line(satori, tmp_path):
    missing = tmp_path.joinpath(*[f"no-such-folder-with-a-long-name-{i}" for i in range(4)]) / "x.jsonl"
    result = satori("rewards", "score", str(missing), env={"COLUMNS": "80"})
    assert result.returncode == 2
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert str(missing) in line
