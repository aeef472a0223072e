"""The Gradio demo end to end through gradio_client, against the fake server."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from PIL import Image

from satori_cli.serve.fake_server import FakeServer
from satori_cli.serve.ui import EXAMPLES, EXAMPLES_DIR, build_demo, launch_demo
from tests.serve_helpers import CASES, red_box_image


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack():
    """Fake server with an API key + the demo using that key, launched once for the module."""
    fake = FakeServer(api_key="demo-key").start()
    port = free_port()
    demo = launch_demo(build_demo(fake.base_url, api_key="demo-key", timeout=10), port=port, block=False)
    from gradio_client import Client

    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield fake, port, client
    demo.close()
    fake.stop()


def mask_bbox(path: str) -> tuple[int, int, int, int]:
    return Image.open(path).getchannel("A").getbbox()


def ask(client, image_path, question="where is the red box?", temperature=0.0, max_tokens=512):
    from gradio_client import handle_file

    return client.predict(handle_file(str(image_path)), question, temperature, max_tokens, api_name="/ask")


@pytest.mark.parametrize("size", [(640, 480), (1000, 333)])
def test_demo_draws_the_box_on_the_exact_pixels(stack, tmp_path, size):
    _, _, client = stack
    box = CASES[size]
    annotated, parsed, raw = ask(client, red_box_image(tmp_path / "in.png", size, box))
    assert Image.open(annotated["image"]).size == size
    assert [a["label"] for a in annotated["annotations"]] == ["box 1"]
    assert mask_bbox(annotated["annotations"][0]["image"]) == box
    assert "**Answer:** red" in parsed and f"box 1 {list(box)}" in parsed
    assert raw.startswith("<caption>") and raw.endswith("</answer>")


def test_demo_streams(stack, tmp_path):
    from gradio_client import handle_file

    _, _, client = stack
    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    job = client.submit(handle_file(str(image)), "q", 0.0, 512, api_name="/ask")
    outputs = list(job)
    raws = [o[2] for o in outputs]
    assert len(raws) >= 3 and raws[-1].endswith("</answer>")
    assert any(r and not r.endswith("</answer>") for r in raws), "no partial answer was streamed"


def test_bundled_examples_work(stack):
    _, _, client = stack
    name, question = EXAMPLES[0]
    annotated, parsed, _ = ask(client, EXAMPLES_DIR / name, question)
    assert "**Answer:** red" in parsed
    # red_box.png has its red rectangle at (400, 200)-(520, 360) in 640x480.
    assert mask_bbox(annotated["annotations"][0]["image"]) == (400, 200, 520, 360)


def test_non_image_upload_is_refused_with_a_message(stack, tmp_path):
    from gradio_client.exceptions import AppError

    _, _, client = stack
    fake_png = tmp_path / "notes.png"
    fake_png.write_text("this is text")
    with pytest.raises(AppError, match="not an image"):
        ask(client, fake_png)


def test_server_down_shows_a_message_not_a_trace(tmp_path):
    from gradio_client import Client

    with FakeServer() as gone:
        url = gone.base_url
    port = free_port()
    demo = launch_demo(build_demo(url, timeout=5), port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        annotated, parsed, raw = ask(client, red_box_image(tmp_path / "in.png", (64, 64), (8, 8, 32, 32)))
        assert annotated["annotations"] == [] and raw == ""
        assert parsed.startswith("**Error:** cannot reach the SATORI server")
        assert "Traceback" not in parsed
    finally:
        demo.close()


def test_slow_server_shows_a_timeout_message(tmp_path):
    from gradio_client import Client

    port = free_port()
    with FakeServer(delay=5.0) as slow:
        demo = launch_demo(build_demo(slow.base_url, timeout=1), port=port, block=False)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            _, parsed, _ = ask(client, red_box_image(tmp_path / "in.png", (64, 64), (8, 8, 32, 32)))
        finally:
            demo.close()
    assert parsed.startswith("**Error:** the server at") and "did not answer in time" in parsed


def test_demo_serves_no_file_outside_its_own(stack, tmp_path):
    _, port, _ = stack
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    for path in (str(secret), "/etc/passwd", "pyproject.toml", "../../../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/file={path}")
        assert err.value.code in (403, 404)
