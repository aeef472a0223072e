"""`satori serve` / `satori predict`: the vLLM command line, the supervisor, and the CLI round trip."""

from __future__ import annotations

import importlib.util
import json
import shlex
import signal
import socket
import subprocess
import sys

import pytest
from PIL import Image

from satori_cli.errors import SatoriError
from satori_cli.pixels import PAPER_MAX_PIXELS, PAPER_MIN_PIXELS, PixelBudget
from satori_cli.process import Command, wait_until
from satori_cli.serve.client import BOX_COLORS
from satori_cli.serve.server import ServerDied, ServerProcess, vllm_command
from tests.conftest import REPO, satori_env
from tests.serve_helpers import CASES, FakeServer, listening, red_box_image, serving


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_vllm_argv_carries_the_recipe():
    argv = vllm_command("justairr/SATORI", port=9000, gpus=4).argv
    assert argv[:3] == ["vllm", "serve", "justairr/SATORI"]
    assert option(argv, "--served-model-name") == "satori"
    assert option(argv, "--tensor-parallel-size") == "4"
    assert option(argv, "--host") == "127.0.0.1"
    assert option(argv, "--port") == "9000"
    assert option(argv, "--max-model-len") == "3584"  # 1024 text + 512 visual + 2048 new tokens
    assert json.loads(option(argv, "--limit-mm-per-prompt")) == {"image": 1, "video": 0}
    assert json.loads(option(argv, "--mm-processor-kwargs")) == {
        "min_pixels": PAPER_MIN_PIXELS,
        "max_pixels": PAPER_MAX_PIXELS,
    }


def test_the_context_length_follows_from_the_paper_recipe():
    """1024 text tokens = the paper's max_length - max_completion_length - its budget's visual tokens."""
    from satori_cli.pixels import PAPER_BUDGET
    from satori_cli.train.recipe import load_preset
    from satori_cli.vllm_settings import PROMPT_TEXT_TOKENS, context_length

    paper = load_preset("paper")["swift"]
    visual = PAPER_BUDGET.max_pixels // PAPER_BUDGET.token_pixels
    assert paper["max_length"] - paper["max_completion_length"] - visual == PROMPT_TEXT_TOKENS
    assert context_length(PAPER_BUDGET, paper["max_completion_length"]) == paper["max_length"]
    bigger = PixelBudget(PAPER_MIN_PIXELS, 4 * PAPER_MAX_PIXELS)  # a run with a larger budget needs more
    assert context_length(bigger, 2048) == PROMPT_TEXT_TOKENS + 4 * visual + 2048
    argv = vllm_command("m/x", budget=bigger, max_model_len=9999).argv
    assert option(argv, "--max-model-len") == "9999"  # --max-model-len still wins


def test_vllm_api_key_goes_in_the_environment_not_argv():
    command = vllm_command("m/x", api_key="s3cret")
    assert "s3cret" not in command.argv
    assert command.env["VLLM_API_KEY"] == "s3cret"


def test_vllm_argv_against_vllm_parser_or_dry_run(satori):
    """With vLLM installed, its own parser must accept our flags; without it, the dry run shows them."""
    argv = vllm_command("justairr/SATORI", gpus=2).argv
    assert argv[:3] == ["vllm", "serve", "justairr/SATORI"]
    if importlib.util.find_spec("vllm") is not None:  # a GPU machine with vLLM in this environment
        try:  # where vLLM 0.33 keeps the `vllm serve` parser
            from vllm.entrypoints.common.cli_args import make_arg_parser
        except ImportError:  # older releases
            from vllm.entrypoints.openai.cli_args import make_arg_parser
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        parsed = make_arg_parser(FlexibleArgumentParser()).parse_args(argv[2:])
        assert parsed.model_tag == "justairr/SATORI"
        assert parsed.tensor_parallel_size == 2
        assert parsed.max_model_len == 3584
        assert parsed.limit_mm_per_prompt == {"image": 1, "video": 0}
        assert parsed.served_model_name == ["satori"]
        assert parsed.mm_processor_kwargs == {"min_pixels": PAPER_MIN_PIXELS, "max_pixels": PAPER_MAX_PIXELS}
        return
    result = satori("serve", "--backend", "vllm", "--gpus", "2", "--api-key", "s3cret", "--dry-run", "--ui")
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[0]
    words = shlex.split(line)
    assert "VLLM_API_KEY=***" in words and "s3cret" not in result.stdout
    start = words.index("vllm")
    assert words[start:] == argv
    assert "demo on http://127.0.0.1:7860" in result.stdout


def test_dry_run_transformers_backend_uses_swift_deploy_with_the_budget(satori):
    result = satori("serve", "--backend", "transformers", "--model", "tiny", "--port", "8123", "--dry-run")
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout.strip())
    assert f"MIN_PIXELS={PAPER_MIN_PIXELS}" in words and f"MAX_PIXELS={PAPER_MAX_PIXELS}" in words
    assert words[words.index("deploy") - 1] == "swift"
    assert option(words, "--served_model_name") == "satori"
    assert option(words, "--infer_backend") == "transformers"
    assert option(words, "--host") == "127.0.0.1"
    assert option(words, "--model").endswith("tiny-qwen2_5_vl")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-url", "http://127.0.0.1:1/v1"], "add --ui"),
        (["--backend", "tpu"], "unknown backend"),
        (["--backend", "transformers", "--gpus", "2"], "needs --backend vllm"),
        (["--model", "./no/such/folder"], "no such folder"),
        (["--model", "Org/Uncached"], "not in the Hugging Face cache (HF_HUB_OFFLINE is set)"),
        (["--backend", "vllm", "--vllm-bin", "/nonexistent/vllm"], "not an executable"),
        (["--backend", "fake", "--ui", "--ui-port", "8000"], "is the API's --port too"),
    ],
)
def test_user_errors_are_one_line(satori, args, message):
    result = satori("serve", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _folder(tmp_path, tiny_model, name, model_type=None):
    folder = tmp_path / name
    folder.mkdir()
    for f in tiny_model.iterdir():
        if f.is_file():
            (folder / f.name).write_bytes(f.read_bytes())
    if model_type:
        config = json.loads((folder / "config.json").read_text())
        config |= {"model_type": model_type, "architectures": ["LlamaForCausalLM"]}
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def _broken_config(folder):
    (folder / "config.json").write_text("{not json")
    return folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, tiny: tmp / "runs" / "missing", "no such folder"),
        (lambda tmp, tiny: "runs/missing", "not in the Hugging Face cache (HF_HUB_OFFLINE is set)"),
        (lambda tmp, tiny: _folder(tmp, tiny, "llama", model_type="llama"), "is a 'llama' model"),
        (lambda tmp, tiny: _broken_config(_folder(tmp, tiny, "bad-config")), "is not valid JSON"),
    ],
    ids=["missing-folder", "not-in-cache-offline", "not-qwen", "bad-config"],
)
def test_serve_checks_the_model_before_starting_a_server(
    satori, satori_home, tiny_model, tmp_path, make, message
):
    """Checked like eval checks it: one line and exit 2, before swift or vLLM is started (which
    used to print a 15-line traceback after 11 s)."""
    model = make(tmp_path, tiny_model)
    result = satori("serve", "--backend", "transformers", "--model", str(model), "--port", "0", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "starting the" not in result.stdout and not (satori_home / "logs").exists()  # no server log


def test_port_in_use_is_refused(satori):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = satori("serve", "--backend", "fake", "--port", str(port))
        busy_ui = satori("serve", "--backend", "fake", "--port", "0", "--ui", "--ui-port", str(port))
    assert result.returncode == 2
    assert "already in use" in result.stderr
    assert busy_ui.returncode == 2
    assert "already in use" in busy_ui.stderr and "--ui-port" in busy_ui.stderr


def test_dead_server_passes_exit_code_and_last_lines(tmp_path):
    script = "import sys; print('loading weights'); print('CUDA out of memory'); sys.exit(3)"
    server = ServerProcess(Command([sys.executable, "-c", script]), "the test server", tmp_path / "s.log")
    server.start()
    with pytest.raises(ServerDied) as died:
        server.wait_healthy("http://127.0.0.1:9/health", timeout=30)
    assert died.value.exit_code == 3
    assert died.value.tail[-1] == "CUDA out of memory"
    assert "CUDA out of memory" in (tmp_path / "s.log").read_text()


def test_health_timeout_stops_the_child(tmp_path):
    server = ServerProcess(Command([sys.executable, "-c", "import time; time.sleep(60)"]), "sleeper")
    server.start()
    with pytest.raises(SatoriError, match="did not become healthy"):
        server.wait_healthy("http://127.0.0.1:9/health", timeout=1.5)
    assert not server.alive


def test_bad_budget_in_the_environment_is_a_user_error(tmp_path):
    env = satori_env({"MIN_PIXELS": "not-a-number"})
    for args in (["serve", "--backend", "fake", "--dry-run"], ["predict", str(tmp_path / "x.png"), "q"]):
        result = subprocess.run(
            [sys.executable, "-m", "satori_cli", *args], env=env, capture_output=True, text=True, cwd=REPO
        )
        assert result.returncode == 2
        assert "MIN_PIXELS" in result.stderr and "Traceback" not in result.stderr


def test_fake_backend_says_its_answers_are_canned_in_the_log_and_the_demo(tmp_path):
    import httpx

    from satori_cli.serve.client import CANNED_NOTICE

    env = {"GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    with serving("--backend", "fake", "--ui", "--ui-port", "0", env=env) as (proc, _):
        page = httpx.get(f"http://127.0.0.1:{proc.ui_port}/config", timeout=30).text
    assert CANNED_NOTICE in " ".join("".join(proc.lines).split())  # a line at start
    banner = next(c for c in json.loads(page)["components"] if c["props"].get("elem_id") == "canned")
    assert "Canned answers" in banner["props"]["value"]


def test_fake_backend_serves_and_stops_cleanly_on_ctrl_c(satori, tmp_path):
    with serving("--backend", "fake") as (proc, port):
        image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
        result = satori(
            "predict", str(image), "where?", "--base-url", f"http://127.0.0.1:{port}/v1", "--json"
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["boxes"] == [list(CASES[(640, 480)])]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode == 130
        assert wait_until(lambda: not listening(port), timeout=10, interval=0.1), (
            "the server child outlived satori"
        )


@pytest.fixture(scope="module")
def fake():
    with FakeServer() as server:
        yield server


@pytest.mark.parametrize(("size", "box"), list(CASES.items()))
def test_predict_json_and_save_land_on_the_exact_pixels(satori, fake, tmp_path, size, box):
    image = red_box_image(tmp_path / "in.png", size, box)
    out = tmp_path / "out" / "boxes.png"
    result = satori("predict", str(image), "where?", "--base-url", fake.base_url, "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["boxes"] == [list(box)]
    assert payload["image_size"] == list(size)
    assert payload["answer"] == "red" and payload["well_formed"]
    drawn = Image.open(out).convert("RGB")
    assert drawn.size == size
    x1, y1, x2, y2 = box
    mid_y = (y1 + y2) // 2
    # The frame's dark outer line lies on the box's edges (x2 exclusive); nothing outside changes.
    assert drawn.getpixel((x1, mid_y)) == (0, 0, 0) and drawn.getpixel((x2 - 1, mid_y)) == (0, 0, 0)
    assert drawn.getpixel((x1 - 1, mid_y)) == (255, 255, 255)
    assert drawn.getpixel((x2, mid_y)) == (255, 255, 255)
    color = Image.new("RGB", (1, 1), BOX_COLORS[0]).getpixel((0, 0))
    assert color in {drawn.getpixel((x, mid_y)) for x in range(x1, x1 + 12)}


def test_predict_human_output_and_errors(satori, fake, tmp_path):
    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    result = satori("predict", str(image), "where?", "--base-url", fake.base_url)
    assert result.returncode == 0, result.stderr
    assert "box 1: [160, 120, 480, 360]" in result.stdout
    assert "answer: red" in result.stdout
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00" * 100)
    result = satori("predict", str(bad), "q", "--base-url", fake.base_url)
    assert result.returncode == 2 and "not an image" in result.stderr
    result = satori("predict", str(image), "q", "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 1 and "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_waits_for_a_server_that_is_starting(tmp_path):
    """--wait polls /health and asks only once the server says it is ready (vLLM answers 503, or
    nothing at all, while it loads)."""
    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    with FakeServer() as server:
        server.healthy.clear()  # loading
        predict = subprocess.Popen(
            [
                *(sys.executable, "-m", "satori_cli", "predict", str(image), "q"),
                *("--base-url", server.base_url, "--wait", "60", "--json"),
            ],
            env=satori_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert wait_until(lambda: server.health_polls >= 2, timeout=60, interval=0.05), "no /health poll"
            assert predict.poll() is None and not server.requests, "predict asked a server that was not ready"
            server.healthy.set()
            out, err = predict.communicate(timeout=60)
        finally:
            if predict.poll() is None:
                predict.kill()
    assert predict.returncode == 0, err
    assert json.loads(out)["boxes"] == [list(CASES[(640, 480)])]
    assert len(server.requests) == 1
