"""The SATORI client against the fake server: pre-resize, streaming, box mapping, errors."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image, ImageChops

from satori_cli.errors import SatoriError
from satori_cli.grammar import format_completion
from satori_cli.http_client import http_ok
from satori_cli.pixels import PAPER_BUDGET, PixelBudget
from satori_cli.serve import client as client_mod
from satori_cli.serve.client import (
    BOX_COLORS,
    SatoriClient,
    draw_boxes,
    interpret,
    load_image,
    prepare_image,
)
from tests.serve_helpers import CASES, FakeServer, red_box_image


@pytest.fixture(scope="module")
def fake():
    with FakeServer() as server:
        yield server


@pytest.mark.parametrize(("size", "box"), list(CASES.items()))
def test_boxes_land_on_the_original_pixels(fake, tmp_path, size, box):
    image = load_image(red_box_image(tmp_path / "in.png", size, box))
    prepared, prediction = SatoriClient(fake.base_url).predict(image, "where is the red box?")
    assert prediction.boxes == (box,)
    assert prediction.completion.well_formed
    # The server saw the budget-resized image, so its own resize was the identity.
    seen = fake.last
    assert seen["received_size"] == seen["model_input_size"] == list(prepared.resized.size)
    assert tuple(seen["received_size"]) == PAPER_BUDGET.resized_wh(*size)
    assert seen["mm_processor_kwargs"] == PAPER_BUDGET.processor_kwargs()


def test_model_boxes_are_in_resized_pixels_not_original(fake, tmp_path):
    image = load_image(red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)]))
    prepared, prediction = SatoriClient(fake.base_url).predict(image, "q")
    # 640x480 -> 644x476: the model's numbers differ from the original ones, the mapping fixes them.
    assert prepared.resized.size == (644, 476)
    assert prediction.completion.boxes == ((161.0, 119.0, 483.0, 357.0),)


def test_stream_grows_and_ends_with_the_full_answer(fake, tmp_path):
    image = load_image(red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)]))
    client = SatoriClient(fake.base_url)
    prepared = prepare_image(image)
    parts = list(client.stream(prepared, "q", temperature=0.3, max_tokens=256))
    assert len(parts) > 3
    assert all(b.startswith(a) for a, b in itertools.pairwise(parts))
    assert parts[-1] == client.complete(prepared, "q")
    assert fake.last["temperature"] == 0.0


def test_other_budget_travels_to_the_server(tmp_path):
    budget = PixelBudget(min_pixels=3136, max_pixels=100352)
    with FakeServer(budget=budget) as server:
        image = load_image(red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)]))
        prepared, prediction = SatoriClient(server.base_url, budget=budget).predict(image, "q")
        assert prepared.resized.size == budget.resized_wh(640, 480) != (644, 476)
        assert prediction.boxes == (CASES[(640, 480)],)


def test_api_key_required_and_used(tmp_path):
    image = load_image(red_box_image(tmp_path / "in.png", (640, 480), CASES[(640, 480)]))
    with FakeServer(api_key="s3cret") as server:
        with pytest.raises(SatoriError, match="API key"):
            SatoriClient(server.base_url).predict(image, "q")
        with pytest.raises(SatoriError, match="API key"):
            SatoriClient(server.base_url, api_key="wrong").predict(image, "q")
        _, prediction = SatoriClient(server.base_url, api_key="s3cret").predict(image, "q")
        assert prediction.boxes == (CASES[(640, 480)],)
        # /health stays open for readiness checks, like vLLM's.
        assert http_ok(server.root + "/health")


def test_server_down_and_slow_give_one_line_errors(tmp_path):
    image = load_image(red_box_image(tmp_path / "in.png", (64, 64), (8, 8, 32, 32)))
    with FakeServer() as server:
        url = server.base_url
    with pytest.raises(SatoriError, match="cannot reach the server") as down:
        SatoriClient(url).predict(image, "q")
    assert "satori serve" in str(down.value)
    with FakeServer(delay=3.0) as slow, pytest.raises(SatoriError, match=r"did not answer within 0\.5 s"):
        SatoriClient(slow.base_url, timeout=0.5).predict(image, "q")


def test_empty_question_refused(fake, tmp_path):
    image = load_image(red_box_image(tmp_path / "in.png", (64, 64), (8, 8, 32, 32)))
    with pytest.raises(SatoriError, match="ask a question"):
        SatoriClient(fake.base_url).predict(image, "   ")


def test_load_image_refuses_non_images_and_big_files(tmp_path, monkeypatch):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(SatoriError, match="not an image"):
        load_image(text)
    with pytest.raises(SatoriError, match="not found"):
        load_image(tmp_path / "missing.png")
    big = red_box_image(tmp_path / "big.png", (64, 64), (8, 8, 32, 32))
    monkeypatch.setattr(client_mod, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(SatoriError, match="larger than"):
        load_image(big)


def test_load_image_flattens_alpha_and_palette(tmp_path):
    rgba = Image.new("RGBA", (50, 40), (255, 0, 0, 128))
    rgba.save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").mode == "RGB"
    assert load_image(tmp_path / "a.png").size == (50, 40)


def test_interpret_clamps_boxes_outside_the_image():
    image = Image.new("RGB", (640, 480), "white")
    prepared = prepare_image(image)
    text = format_completion("c", [[-20, -5, 700, 500], [483, 357, 161, 119]], "a")
    prediction = interpret(text, prepared)
    assert prediction.boxes == ((0, 0, 640, 480), (160, 120, 480, 360))
    assert all(isinstance(v, int) for b in prediction.boxes for v in b)


def test_interpret_survives_garbage():
    prepared = prepare_image(Image.new("RGB", (100, 100), "white"))
    prediction = interpret("<bbox>[[1, 2, oops]]</bbox>", prepared)
    assert prediction.boxes == ()
    assert not prediction.completion.well_formed


def test_draw_boxes_frames_the_exact_pixels():
    image = Image.new("RGB", (640, 480), "white")
    prepared = prepare_image(image)
    prediction = interpret(format_completion("c", [[161, 119, 483, 357]], "a"), prepared)
    drawn = draw_boxes(image, prediction)
    color = Image.new("RGB", (1, 1), BOX_COLORS[0]).getpixel((0, 0))
    # A dark line on the box edges (x2/y2 exclusive), the colour inside it, nothing outside,
    # the original untouched.
    assert drawn.getpixel((160, 240)) == (0, 0, 0)
    assert drawn.getpixel((479, 240)) == (0, 0, 0)
    assert drawn.getpixel((320, 359)) == (0, 0, 0)
    assert color in {drawn.getpixel((x, 240)) for x in range(161, 170)}
    assert drawn.getpixel((159, 240)) == (255, 255, 255)
    assert drawn.getpixel((480, 240)) == (255, 255, 255)
    assert drawn.getpixel((320, 360)) == (255, 255, 255)
    assert image.getpixel((160, 240)) == (255, 255, 255)


def _distance(a, b) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("index", range(len(BOX_COLORS)))
def test_a_box_stays_visible_on_an_object_of_its_own_colour(index):
    """A translucent fill (Gradio's look) vanished on a same-coloured object; the frame has a
    dark and a light line that differ from any colour, and the label says which box it is."""
    from PIL import ImageDraw

    from satori_cli.serve.client import box_line_width, draw_box

    color = BOX_COLORS[index]
    rgb = Image.new("RGB", (1, 1), color).getpixel((0, 0))
    box = (100, 80, 400, 300)
    image = Image.new("RGB", (640, 480), "white")
    ImageDraw.Draw(image).rectangle((90, 70, 410, 310), fill=rgb)  # the object, a bit bigger than the box
    before = image.copy()
    draw_box(ImageDraw.Draw(image), box, "box 1", color, box_line_width(image.size))
    for y in (150, 200, 250):  # across the left edge, each side of the frame contrasts with the object
        row = [image.getpixel((x, y)) for x in range(95, 125)]
        assert max(_distance(p, rgb) for p in row) > 150, row
        assert any(p == (0, 0, 0) for p in row) and any(p == (255, 255, 255) for p in row)
    assert image.getpixel((250, 250)) == rgb  # the object itself stays visible inside the box
    label = ImageChops.difference(image.crop((110, 90, 200, 130)), before.crop((110, 90, 200, 130)))
    assert label.getbbox() is not None  # the label's tab is drawn in the corner
    outside = ImageChops.difference(image, before)
    assert outside.getbbox() == box  # everything drawn lies inside the box


def test_loopback_never_goes_through_a_proxy_other_addresses_do(fake, monkeypatch):
    """One policy for every call: eval's urllib check used to send 127.0.0.1 to HTTP_PROXY."""
    import socket
    import threading

    from satori_cli.http_client import served_models

    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen()
    seen: list[bytes] = []

    def accept() -> None:
        conn, _ = proxy.accept()
        with conn:
            seen.append(conn.recv(100))
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, url)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert http_ok(fake.root + "/health") and http_ok(f"http://localhost:{fake.port}/health")
    assert served_models(fake.base_url) == ["satori"]
    assert [m["id"] for m in SatoriClient(fake.base_url).served()] == ["satori"]
    assert not seen
    assert not http_ok("http://satori.example/health")  # elsewhere: through the proxy, as curl does
    assert seen and seen[0].startswith(b"GET http://satori.example/health")
    proxy.close()
