"""One name per concept across the CLI (`satori_cli/app.py`), old names hidden for one release."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest
import typer.main
from typer._click import Context
from typer.testing import CliRunner

from satori_cli.app import ALIASES, app, note, rewrite


def _leaves() -> dict[str, tuple[list, object]]:
    """{command path: (the groups above it, the command)} for every command of the tree."""
    found: dict[str, tuple[list, object]] = {}

    def walk(command, names: list[str], groups: list) -> None:
        if hasattr(command, "commands"):  # typer vendors click: a group is what has commands
            for name, sub in command.commands.items():
                walk(sub, [*names, name], [*groups, (names[-1] if names else "satori", command)])
        else:
            found[" ".join(names)] = (groups, command)

    walk(typer.main.get_command(app), [], [])
    return found


LEAVES = _leaves()


def _options(command) -> list:
    return [p for p in command.params if getattr(p, "param_type_name", "") == "option"]


def _names(command) -> set[str]:
    return {name for p in _options(command) for name in (*p.opts, *p.secondary_opts)}


def _long(param) -> str:
    return next(o for o in param.opts if o.startswith("--"))


# The decided vocabulary: each short name has one meaning on every command that has it.
SHORT = {"-o": "--out", "-g": "--gpus", "-n": "--rows", "-c": "--config", "-m": "--model", "-d": "--data"}
RETIRED = {"--output", "--work-dir", "--local-dir", "--procs", "--samples", "--sheet", "--n", "--max-tokens"}
NEW_NAMES = {
    "train": ["--out", "-o", "--gpus", "-g"],
    "eval": ["--out", "-o", "--gpus", "-g", "--max-new-tokens", "--limit"],
    "serve": ["--gpus", "-g"],
    "rollout": ["--gpus", "-g"],
    "predict": ["--out", "-o", "--max-new-tokens"],
    "download model": ["--out", "-o"],
    "download data": ["--out", "-o"],
    "data sample": ["--out", "-o", "--rows", "-n"],
    "data inspect": ["--out", "-o", "--rows", "-n"],
    "data prepare": ["--out", "-o", "--column"],
}


def test_every_command_path_of_the_tables_exists():
    assert set(ALIASES) <= set(LEAVES) and set(NEW_NAMES) <= set(LEAVES)
    for path, aliases in ALIASES.items():
        declared = _names(LEAVES[path][1])
        assert set(aliases.values()) <= declared, path  # every alias leads to a real option
        assert not set(aliases) & declared, path  # and the old name is no longer declared


def test_one_name_has_one_meaning_across_the_tree():
    meanings: dict[str, set[str]] = defaultdict(set)
    for path, (_, command) in LEAVES.items():
        for param in _options(command):
            for name in (*param.opts, *param.secondary_opts):
                meanings[name].add(_long(param))
            assert not RETIRED & set(param.opts), (path, param.opts)
    shared = {name: longs for name, longs in meanings.items() if len(longs) > 1}
    assert not shared, shared  # e.g. -n is --rows wherever it is declared
    for short, long in SHORT.items():
        assert meanings[short] == {long}, short


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_help_shows_the_new_names_and_none_of_the_old(path):
    out = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": "200"}).output
    words = set(re.findall(r"(?<![\w-])--?[a-z][\w-]*", out))
    assert not words & RETIRED, words & RETIRED
    assert not words & set(ALIASES.get(path, {})), path
    assert set(NEW_NAMES.get(path, [])) <= words, set(NEW_NAMES.get(path, [])) - words


# Arguments each command needs besides the alias under test.
REQUIRED = {"data sample": ["--out", "x"], "data prepare": ["src", "--out", "x"], "data inspect": ["t"]}
REQUIRED["predict"] = ["image.png", "question"]


def _parse(path: str, args: list[str]) -> dict:
    """The parameters `satori PATH ARGS` gives its command (parsed only; nothing runs)."""
    groups, command = LEAVES[path]
    parent = None
    for name, group in groups:
        parent = Context(group, info_name=name, parent=parent)
    ctx = command.make_context(path.split()[-1], [*REQUIRED.get(path, []), *args], parent=parent)
    return ctx.params


ALIAS_CASES = [(path, old, new) for path, aliases in ALIASES.items() for old, new in aliases.items()]


@pytest.mark.parametrize("path,old,new", ALIAS_CASES, ids=lambda x: x if isinstance(x, str) else None)
def test_each_old_name_still_sets_its_new_option(path, old, new, capsys):
    command = LEAVES[path][1]
    param = next(p for p in _options(command) if new in p.opts)
    assert _parse(path, [old, "3"])[param.name] == _parse(path, [new, "3"])[param.name]
    assert note(old, new) in capsys.readouterr().err
    if old.startswith("--"):
        assert _parse(path, [f"{old}=3"])[param.name] == _parse(path, [new, "3"])[param.name]


def test_rewrite_leaves_values_and_passthrough_alone():
    aliases = {"--output": "--out", "-n": "--gpus"}
    args, notes = rewrite(
        ["--data", "--output", "-n", "2", "--output=r", "--", "--output", "-n"], aliases, {"--data", "--gpus"}
    )
    assert args == ["--data", "--output", "--gpus", "2", "--out=r", "--", "--output", "-n"]
    assert notes == [note("-n", "--gpus"), note("--output", "--out")]
    assert rewrite(["-n4"], aliases, {"--gpus"})[0] == ["--gpus=4"]
    assert rewrite(["--", "-n"], aliases, {"--gpus"}) == (["--", "-n"], [])


# -- the real CLI, as a user runs it ---------------------------------------------------------


def test_data_sample_old_n_writes_that_many_rows(satori, tmp_path):
    done = satori("data", "sample", "--n", "3", "--out", str(tmp_path / "raw"))
    assert done.returncode == 0, done.stderr
    assert note("--n", "--rows") in done.stderr
    rows = (tmp_path / "raw" / "data.jsonl").read_text().splitlines()
    assert len(rows) == 3 and all(json.loads(r)["question"] for r in rows)


def test_eval_n_still_means_gpus(satori, tiny_model, tmp_path):
    from satori_cli.evaluation.sample_bench import write_tiny_bench

    write_tiny_bench(tmp_path / "lmu" / "TinyBench.tsv")
    done = satori(
        "eval", "-n", "2", "--data", "TinyBench", "--model", str(tiny_model),
        "--data-dir", str(tmp_path / "lmu"), "--work-dir", str(tmp_path / "w"), "--dry-run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--nproc-per-node=2" in done.stdout and "backend transformers x2" in done.stdout
    assert note("-n", "--gpus") in done.stderr and note("--work-dir", "--out") in done.stderr
    assert str(tmp_path / "w") in done.stdout


def test_train_output_is_out_and_swift_args_are_untouched(satori, tmp_path):
    run = tmp_path / "run"
    done = satori("train", "--output", str(run), "--dry-run", "--", "--save_steps", "1")
    assert done.returncode == 0, done.stderr
    assert f"run folder {run}" in done.stdout and "--save_steps 1" in done.stdout
    assert done.stderr.count("note:") == 1 and note("--output", "--out") in done.stderr
    # After `--` everything is swift's: an old satori name there is passed on as written.
    passed = satori("train", "--out", str(run), "--dry-run", "--", "--output", "x")
    assert "note:" not in passed.stderr
    assert "--output x" in passed.stdout + passed.stderr and "--out x" not in passed.stdout + passed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-new-tokens", "0"], "--max-new-tokens must be a positive number"),
        (["--temperature", "-1"], "--temperature must be a number >= 0"),
        (["--temperature", "nan"], "--temperature must be a number >= 0"),
    ],
)
def test_shared_numbers_are_checked_alike_in_eval_and_predict(satori, tmp_path, args, message):
    """`--max-new-tokens` and `--temperature` are one option each: eval refuses what predict refuses."""
    image = tmp_path / "i.png"
    image.write_bytes(b"")
    for command in (["eval", "--data", "MMStar", "--dry-run"], ["predict", str(image), "q"]):
        done = satori(*command, *args)
        assert done.returncode == 2 and message in done.stderr, (command, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
