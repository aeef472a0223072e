"""Hostile and careless input to every command (issue #12, "Every command"), through the CLI as a
subprocess: the exit code, one line on stderr, no traceback, and every file that existed before
unchanged. Nothing here writes outside tmp_path; no case loads a model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from satori_cli.evaluation.sample_bench import write_tiny_bench
from tests.conftest import PREPARED_ROW as ROW
from tests.conftest import run_satori
from tests.serve_helpers import red_box_image


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(
    *args: str, match: str, code: int = 2, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    done = run_satori(*args, cwd=cwd, env=env, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in out, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def home(tmp_path) -> Path:
    """A folder of things a user owns; the test checks afterwards that none of them changed."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "file.txt").write_text("keep me")
    (folder / "picture.png").write_bytes(b"\x89PNG not really")
    (folder / "train.jsonl").write_text(json.dumps(ROW) + "\n" + json.dumps(ROW | {"id": "b"}) + "\n")
    return folder


@pytest.fixture(autouse=True)
def unchanged(home):
    before = files(home)
    yield
    assert files(home) == before, "a file the user owns was changed"


# -- train ---------------------------------------------------------------------------------------
def test_train_config_that_is_binary_or_the_wrong_shape(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x00\x01\xff\xfe\x80 junk")
    refused("train", "--config", str(binary), "--dry-run", match="is not a text file")
    for text, match in (
        ("data: [1, 2]\n", "'data' must be text, not list [1, 2]"),
        ("model: {a: 1}\n", "'model' must be text"),
        ("needs: vllm\n", "'needs' must be a list"),
        ("swift: {num_generations: many}\n", "num_generations must be a whole number, not str 'many'"),
        ("gpus: [1]\n", "invalid recipe"),
        ("[" * 5000 + "\n", "config file"),
        ("swift: {max_steps: " + "9" * 5000 + "}\n", "has a number too long to read"),
    ):
        config = tmp_path / "recipe.yaml"
        config.write_text(text)
        refused("train", "--config", str(config), "--dry-run", match=match)
        refused("train", "--config", str(config), "--out", str(tmp_path / "run"), match=match)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--num_generations", "abc"], "num_generations must be a whole number, not str 'abc'"),
        (["--per_device_train_batch_size", "1e400"], "per_device_train_batch_size must be a whole number"),
        (["--max_steps", "2.5"], "max_steps must be a whole number"),
        (["--beta", "nan"], "beta must be a number"),
        (["--learning_rate", "fast"], "learning_rate must be a number"),
    ],
)
def test_train_pass_through_values_satori_reads_are_checked(home, extra, match):
    refused("train", "--out", str(home / "run"), "--", *extra, match=match)
    refused("train", "--dry-run", "--", *extra, match=match)
    assert not (home / "run").exists()


@pytest.mark.slow
def test_train_pass_through_values_swift_refuses_are_its_one_line(home, tiny_model):
    """A value only ms-swift reads reaches its parser, whose one line is passed on (about 10 s of
    importing swift); the run folder made for it goes again."""
    refused(
        "train", "--model", str(tiny_model), "--out", str(home / "run"), "--", "--temperature", "hot",
        match="ms-swift refused an argument: argument --temperature: invalid float value: 'hot'",
    )  # fmt: skip
    assert not (home / "run").exists()


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b'{"broken": \n', "line 3 is not valid JSON: Expecting value"),
        (b"[1, 2]\n", "line 3 is not a JSON object"),
        (b'{"id": "c"}\n', "line 3 has no bboxs, images, messages"),
        (b"\xff\xfe\n", "line 3 is not UTF-8 text"),
        (b'{"n": ' + b"9" * 5000 + b"}\n", "line 3 is not valid JSON"),
        (b"[" * 100_000 + b"\n", "line 3 is not valid JSON"),
    ],
    ids=["truncated", "array", "not-prepared", "binary", "huge-int", "deep"],
)
def test_train_data_with_a_bad_later_line_names_it(home, line, match):
    data = home / "data.jsonl"
    data.write_bytes((home / "train.jsonl").read_bytes() + line)
    refused("train", "--data", str(data), "--out", str(home / "run"), match=match)
    assert not (home / "run").exists()
    data.unlink()


def test_train_output_that_cannot_be_a_run_folder(home):
    refused("train", "--out", str(home / "file.txt"), match="is a file")
    refused("train", "--out", str(home / "file.txt" / "run"), match="file.txt is a file")
    if Path("/proc/self").is_dir():  # a folder nobody can create anything in
        refused("train", "--out", "/proc/satori-run", match="--out /proc/satori-run is not writable")
    refused("train", "--out", str(home), match="not a satori run folder")


# -- eval ----------------------------------------------------------------------------------------
def test_eval_work_dir_that_is_a_file_or_a_foreign_folder(home, tmp_path):
    bench = write_tiny_bench(tmp_path / "lmu" / "TinyBench.tsv")
    common = ("eval", "--data", str(bench), "--model", "tiny", "--dry-run")
    refused(*common, "--out", str(home / "file.txt"), match="--out")
    refused(*common, "--out", str(home / "file.txt" / "w"), match="file.txt is a file")
    refused(*common, "--out", str(home), match="holds no satori evaluation")


def test_eval_custom_tsv_without_the_columns_it_needs(home, tmp_path):
    for header, missing in (
        ("index\tquestion\tanswer\n", "'image (or image_path)'"),
        ("index\tquestion\tA\tB\timage\n", "'answer'"),
        ("question\tanswer\timage\n", "'index'"),
    ):
        tsv = tmp_path / "custom.tsv"
        tsv.write_text(header + "\t".join(["1"] * header.count("\t")) + "\tx\n")
        refused("eval", "--data", str(tsv), "--model", "tiny", "--dry-run", match=f"has no {missing} column")
    tsv.write_bytes(b"\xff\xfe\x00binary")
    refused("eval", "--data", str(tsv), "--model", "tiny", "--dry-run", match="is not a UTF-8 TSV")


# -- tiny-model, data, predict, rewards, report ----------------------------------------------------
def test_tiny_model_out_that_is_a_file_or_someone_elses_folder(home):
    refused("tiny-model", "--out", str(home / "file.txt"), match="is a file")
    refused("tiny-model", "--out", str(home / "file.txt" / "m"), match="file.txt is a file")
    refused("tiny-model", "--out", str(home), "--overwrite", match="is not a tiny model satori built")
    refused(
        "tiny-model", "--out", "/proc/satori-tiny", match="cannot write in /proc"
    )  # nothing can be made there


def test_data_sample_out_under_a_file(home):
    refused("data", "sample", "--out", str(home / "file.txt" / "x"), match="file.txt is a file")


def test_predict_refuses_bad_numbers_and_never_saves_over_a_users_file(home, tmp_path):
    image = red_box_image(tmp_path / "in.png", (64, 48), (16, 12, 48, 36))
    no_server = ("--base-url", "http://127.0.0.1:9/v1")  # refused before anything is asked
    refused("predict", str(image), "q", *no_server, "--timeout", "-1", match="--timeout must be a positive")
    refused(
        "predict", str(image), "q", *no_server, "--out", str(home / "picture.png"), match="already exists"
    )
    refused("predict", str(image), "q", *no_server, "--out", str(home), match="is a folder")
    link = tmp_path / "link.png"
    link.symlink_to(home / "picture.png")
    refused("predict", str(image), "q", *no_server, "--out", str(link), "--overwrite", match="symbolic link")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    refused("predict", str(image), "q", *no_server, "--out", str(fifo), "--overwrite", match="not a regular")
    # a file that exists but whose read fails (EIO here; EACCES for a user who is not root)
    refused("predict", "/proc/self/mem", "q", *no_server, match="cannot read image /proc/self/mem")


def test_rewards_score_out_over_a_users_file(home):
    refused(
        "rewards", "score", str(home / "train.jsonl"), "--out", str(home / "file.txt"), match="already exists"
    )
    refused(
        "rewards",
        "score",
        str(home / "train.jsonl"),
        "--out",
        str(home / "file.txt" / "s"),
        match="is a file",
    )


@pytest.mark.parametrize(
    ("args", "match"),
    [(["rewards", "score", "/proc/self/mem"], "cannot read /proc/self/mem: Input/output error")],
)
def test_a_file_whose_read_fails(args, match):
    """A file that exists but cannot be read (EIO here; EACCES for a user who is not root)."""
    refused(*args, match=match)


def test_report_out_over_a_users_file(home, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    step = {"reward": 0.5, "kl": 0.0, "completions/mean_length": 8.0, "global_step/max_steps": "1/1"}
    (run / "logging.jsonl").write_text(json.dumps(step) + "\n")
    (home / "rewards.png").write_bytes(b"my own plot")
    try:
        refused("report", str(run), "--out", str(home), match="rewards.png already exists")
        assert not [p for p in home.iterdir() if p.name.startswith(".")]  # no scratch left behind
    finally:
        (home / "rewards.png").unlink()


@pytest.mark.parametrize("value", ["nan", "-1", "0"])
def test_train_dry_run_refuses_a_data_timeout_a_real_run_would(value):
    refused("train", "--data-timeout", value, "--dry-run", match="--data-timeout must be a positive number")


# -- paths the filesystem refuses before any command's own check -----------------------------------
@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("--model", "x" * 300, "file name too long: "),
        ("--out", "x" * 300, "file name too long: "),
        ("--resume-from", "x" * 300, "file name too long: "),
        ("--data", "~no-such-user-satori/train.jsonl", "a path starts with ~ but that user"),
        ("--out", "~no-such-user-satori/run", "a path starts with ~ but that user"),
    ],
)
def test_train_paths_the_filesystem_refuses(tmp_path, option, value, match):
    refused(
        "train", option, str(tmp_path / value) if value.startswith("x") else value, "--dry-run", match=match
    )


# -- environment variables satori reads -----------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "args", "match"),
    [
        (
            {"MASTER_PORT": "\u00b2"},
            ["train", "--dry-run"],
            "MASTER_PORT='\u00b2' in the environment is not a port",
        ),
        ({"MASTER_PORT": "9" * 5000}, ["train", "--dry-run"], "MASTER_PORT='999"),
        (
            {"MASTER_PORT": "70000"},
            ["train", "--dry-run"],
            "MASTER_PORT=70000 in the environment is not a port",
        ),
    ],
)
def test_environment_variables_with_garbage(env, args, match):
    refused(*args, env=env, match=match)


# -- what error lines may carry --------------------------------------------------------------------
def test_error_lines_carry_no_escape_sequences(tmp_path):
    """A file name (or content) with terminal escapes reaches the error line as plain text."""
    name = "evil\x1b[2J\x1b]0;pwned\x07\x1b[31m\nline.jsonl"
    line = refused("train", "--data", str(tmp_path / name), "--out", str(tmp_path / "run"), match="not found")
    assert "\x1b" not in line and "\x07" not in line and "evil" in line
