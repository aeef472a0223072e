"""The Gradio demo end to end through gradio_client, against the fake server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from satori_cli.serve.demo import EXAMPLES, EXAMPLES_DIR, build_demo, launch_demo
from tests.serve_helpers import CASES, FakeServer, free_port, red_box_image


@pytest.fixture(scope="module", autouse=True)
def gradio_folder(tmp_path_factory):
    """Gradio's uploads and result files go to this module's own folder, not the shared /tmp/gradio."""
    folder = tmp_path_factory.mktemp("gradio")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def stack(gradio_folder, tmp_path_factory):
    """Fake server with an API key + the demo behind that key, launched once for the module."""
    fake = FakeServer(api_key="demo-key").start()
    port = free_port()
    demo = launch_demo(build_demo(fake.base_url, api_key="demo-key", timeout=10), port=port, block=False)
    client = connect(port, auth=("anyone", "demo-key"), downloads=tmp_path_factory.mktemp("downloads"))
    yield fake, port, client
    demo.close()
    fake.stop()


def connect(port: int, auth=None, downloads=None):
    from gradio_client import Client

    folder = str(downloads) if downloads else os.environ["GRADIO_TEMP_DIR"]
    return Client(f"http://127.0.0.1:{port}/", auth=auth, verbose=False, download_files=folder)


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


def test_demo_boxes_are_frames_that_leave_the_object_visible(stack, tmp_path):
    """The box layer is the frame and label `predict --out` draws, not a translucent fill that
    hid a red object under a red box: its inside is transparent, its frame has a dark and a
    light line (visible on any colour)."""
    _, _, client = stack
    box = x1, y1, x2, y2 = CASES[(640, 480)]
    annotated, _, _ = ask(client, red_box_image(tmp_path / "in.png", (640, 480), box))
    mask = Image.open(annotated["annotations"][0]["image"]).convert("RGBA")
    assert mask.getpixel(((x1 + x2) // 2, (y1 + y2) // 2))[3] == 0  # the red box shows through
    edge = {mask.getpixel((x, (y1 + y2) // 2)) for x in range(x1, x1 + 12)}
    assert (0, 0, 0, 255) in edge and (255, 255, 255, 255) in edge


def test_the_status_line_says_a_fake_servers_answers_are_canned(stack):
    from satori_cli.serve.client import SatoriClient
    from satori_cli.serve.demo import server_status

    fake, _, _ = stack
    status = server_status(SatoriClient(fake.base_url, api_key="demo-key"))
    assert status.startswith("Connected to") and "Canned answers" in status


def test_a_demo_behind_an_api_key_refuses_callers_without_it(stack, tmp_path):
    """Otherwise the demo is an open door to the server the key protects, using the server's key."""
    import httpx
    from gradio_client.exceptions import AuthenticationError

    fake, port, client = stack
    url = f"http://127.0.0.1:{port}/"
    asked = len(fake.requests)
    for auth in (None, ("anyone", "wrong-key")):
        with pytest.raises((AuthenticationError, ValueError)):
            connect(port, auth=auth)
    for path in ("gradio_api/call/ask", "gradio_api/queue/join", "gradio_api/upload"):
        assert httpx.post(url + path, json={"data": []}, timeout=10).status_code == 401, path
    assert len(fake.requests) == asked, "a refused caller reached the model"
    annotated, _, _ = ask(client, red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)]))
    assert mask_bbox(annotated["annotations"][0]["image"]) == CASES[(640, 480)]


def test_64_concurrent_jobs_all_succeed_each_with_its_own_files(stack, gradio_folder, tmp_path):
    """Gradio rewrote one cached result file per distinct picture while other clients were still
    downloading it ("Too little data for declared Content-Length"): every result has its own files."""
    from gradio_client import handle_file

    _, _, client = stack
    results = Path(gradio_folder) / "satori-results"
    before = len(list(results.glob("*/*.png")))
    image = red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)])
    jobs = [client.submit(handle_file(str(image)), f"q{i}", 0.0, 64, api_name="/ask") for i in range(64)]
    answers = [job.result(timeout=300) for job in jobs]  # a broken download raises here
    assert all(
        mask_bbox(annotated["annotations"][0]["image"]) == CASES[(640, 480)] for annotated, _, _ in answers
    )
    assert len(list(results.glob("*/*.png"))) - before == 2 * 64  # a picture and a mask per answer
    assert not list(Path(gradio_folder).glob("*/image.png")), "a result went through Gradio's shared file"


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
    with FakeServer() as gone:
        url = gone.base_url
    port = free_port()
    demo = launch_demo(build_demo(url, timeout=5), port=port, block=False)
    try:
        client = connect(port)
        annotated, parsed, raw = ask(client, red_box_image(tmp_path / "in.png", (64, 64), (8, 8, 32, 32)))
        assert annotated["annotations"] == [] and raw == ""
        assert parsed.startswith("**Error:** cannot reach the server")
        assert "Traceback" not in parsed
    finally:
        demo.close()


def test_slow_server_shows_a_timeout_message(tmp_path):
    port = free_port()
    with FakeServer(delay=5.0) as slow:
        demo = launch_demo(build_demo(slow.base_url, timeout=1), port=port, block=False)
        try:
            client = connect(port)
            _, parsed, _ = ask(client, red_box_image(tmp_path / "in.png", (64, 64), (8, 8, 32, 32)))
        finally:
            demo.close()
    assert parsed.startswith("**Error:** the server at") and "did not answer within 1 s" in parsed


def test_demo_serves_no_file_outside_its_own(stack, tmp_path):
    import httpx

    _, port, client = stack
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    for path in (str(secret), "/etc/passwd", "pyproject.toml", "../../../etc/passwd"):
        url = f"http://127.0.0.1:{port}/gradio_api/file={path}"
        assert httpx.get(url, cookies=client.cookies).status_code in (403, 404), path  # logged in
        assert httpx.get(url).status_code in (401, 404), path
