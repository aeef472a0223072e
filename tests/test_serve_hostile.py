"""Hostile and careless input to `satori predict` and `satori serve`, through the CLI as a user runs it.

Every case: the exit code, one line on stderr, no traceback. Servers that answer badly are a
loopback stub (`Hostile`); the fake backend and the demo run as `satori serve` subprocesses,
and the kill tests use a real `kill -9` / SIGHUP of that process.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from satori_cli.grammar import format_completion
from satori_cli.process import wait_until
from tests.serve_helpers import CASES, listening, red_box_image, serving

BOX = CASES[(640, 480)]


def one_line_error(result, code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def chat(content: str) -> bytes:
    return json.dumps(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    ).encode()


# path segment -> (status, content type, body, bytes declared in Content-Length or None)
ANSWERS = {
    "html": (200, "text/html", b"<html><body>Welcome to nginx!</body></html>", None),
    "sse": (
        200,
        "text/event-stream",
        b'data: {"choices": [{"delta": {"content": "x"}}]}\n\ndata: [DONE]\n\n',
        None,
    ),
    "no-choices": (200, "application/json", b'{"id": "chatcmpl-1", "object": "chat.completion"}', None),
    "empty-choices": (200, "application/json", b'{"choices": []}', None),
    "truncated": (200, "application/json", chat("<caption>a")[:12], 4096),
    "deep": (200, "application/json", b"[" * 100_000 + b"]" * 100_000, None),
    "huge": (200, "application/json", b"{}", 64 * 1024 * 1024),
    "error-html": (502, "text/html", b"<html>\n<h1>502 Bad Gateway</h1>\n</html>", None),
    "nan-boxes": (
        200,
        "application/json",
        chat("<caption>c</caption> <bbox>[[nan, 1, 2, 3]]</bbox> <answer>a</answer>"),
        None,
    ),
    "many-boxes": (200, "application/json", chat(format_completion("c", [[1, 2, 3, 4]] * 5_000, "a")), None),
    "ansi": (
        200,
        "application/json",
        chat(
            "<caption>\x1b]0;owned\x07\x1b[2J\x1b[31mred\x9b1m</caption> <bbox>[[1,2,3,4]]</bbox> "
            "<answer>\x1b[5mok</answer>"
        ),
        None,
    ),
}


class Hostile:
    """A loopback server answering `ANSWERS[case]` at http://127.0.0.1:PORT/CASE/v1/chat/completions."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, kind, body, declared = ANSWERS[self.path.split("/")[1]]
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(declared or len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, case: str) -> str:
        return f"{self.root}/{case}/v1"


@pytest.fixture(scope="module")
def hostile():
    server = Hostile()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    return red_box_image(tmp_path_factory.mktemp("img") / "in.png", (640, 480), BOX)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("html", "did not answer JSON (it sent text/html"),
        ("sse", "did not answer JSON (it sent text/event-stream"),
        ("no-choices", "answered no `choices`"),
        ("empty-choices", "answered an empty `choices` list"),
        ("truncated", "broke before the answer was complete"),
        ("deep", "nested too deeply"),
        ("huge", "larger than 32 MB"),
        ("error-html", "answered 502: <html> <h1>502 Bad Gateway</h1> </html>"),
    ],
)
def test_predict_against_a_server_that_answers_badly_is_one_line(satori, hostile, image, case, message):
    line = one_line_error(satori("predict", str(image), "q", "--base-url", hostile.url(case)), 1)
    assert message in line


@pytest.mark.parametrize("case", ["nan-boxes", "many-boxes"])
def test_unusable_boxes_are_reported_not_well_formed(satori, hostile, image, case):
    human = satori("predict", str(image), "q", "--base-url", hostile.url(case))
    assert human.returncode == 0, human.stderr
    assert "not in SATORI format: boxes unreadable" in human.stdout
    result = satori("predict", str(image), "q", "--base-url", hostile.url(case), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["well_formed"] is False and payload["boxes"] == []
    assert payload["problem"].startswith("boxes unreadable")


def test_control_characters_from_the_server_never_reach_the_terminal(satori, hostile, image):
    for extra in ((), ("--json",)):
        result = satori("predict", str(image), "q", "--base-url", hostile.url("ansi"), *extra)
        assert result.returncode == 0, result.stderr
        assert not any(c in result.stdout for c in "\x1b\x07\x9b"), repr(result.stdout)
    assert "caption: ]0;owned[2J[31mred1m" in satori(
        "predict", str(image), "q", "--base-url", hostile.url("ansi")
    ).stdout.replace("\n", " ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "IMG", "q", "--timeout", "-1"], "--timeout must be a positive number"),
        (["predict", "IMG", "q", "--timeout", "0"], "--timeout must be a positive number"),
        (["predict", "IMG", "q", "--timeout", "nan"], "--timeout must be a positive number"),
        (["predict", "IMG", "q", "--wait", "-5"], "--wait must be a number >= 0"),
        (["predict", "IMG", "q", "--max-new-tokens", "0"], "--max-new-tokens must be a positive number"),
        (["predict", "IMG", "q", "--temperature", "-1"], "--temperature must be a number >= 0"),
        (["predict", "IMG", "q", "--base-url", "ftp://x/v1"], "not an http(s) address"),
        (["predict", "IMG", "q", "--base-url", "http://exa mple/v1"], "not an http(s) address"),
        (["predict", "IMG", "q", "--base-url", "http://[::1/v1"], "not an http(s) address"),
        (["predict", "IMG", "q", "--base-url", "http://127.0.0.1:abc/v1"], "not an http(s) address"),
        (["predict", "IMG", "q", "--base-url", "http://127.0.0.1:99999/v1"], "not an http(s) address"),
        (["predict", "IMG", "q", "--base-url", "http://" + "a" * 70000 + "/v1"], "not an http(s) address"),
        (["predict", "IMG", "q", "--api-key", "ключ"], "API key must be printable ASCII"),
        (["predict", "IMG", "q", "--api-key", "a\r\nX-Injected: 1"], "API key must be printable ASCII"),
        (["serve", "--backend", "fake", "--api-key", "ключ"], "API key must be printable ASCII"),
        (["serve", "--backend", "fake", "--port", "70000"], "--port 70000 is not a port number"),
        (["serve", "--backend", "fake", "--port", "-1"], "--port -1 is not a port number"),
        (["serve", "--backend", "fake", "--host", "256.1.1.1"], "--host '256.1.1.1' is not an address"),
        (["serve", "--backend", "fake", "--host", "256.1.1.1", "--dry-run"], "is not an address"),
        (["serve", "--backend", "fake", "--host", "192.0.2.1"], "--host 192.0.2.1 is not an address of this"),
        (["serve", "--backend", "fake", "--ui", "--ui-port", "70000"], "--ui-port 70000 is not a port"),
        (["serve", "--backend", "fake", "--startup-timeout", "-1"], "--startup-timeout must be a positive"),
        (["serve", "--ui", "--base-url", "http://127.0.0.1:abc/v1", "--dry-run"], "not an http(s) address"),
        (["serve", "--ui", "--base-url", "http://[::1", "--dry-run"], "not an http(s) address"),
        (["serve", "--ui", "--base-url", "", "--dry-run"], "not an http(s) address"),
    ],
)
def test_bad_flags_are_one_line_before_any_work(satori, image, args, message):
    args = [str(image) if a == "IMG" else a for a in args]
    line = one_line_error(satori(*args), 2)
    assert message in line


@pytest.fixture(scope="module")
def fake_backend():
    """`satori serve --backend fake --port 0 --api-key k`: the product's canned backend, as users run it."""
    with serving("--backend", "fake", "--api-key", "k") as (proc, port):
        yield proc, f"http://127.0.0.1:{port}"


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height (a decompression bomb needs no more than this header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def with_image(data: bytes, **extra) -> dict:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
    return {"model": "satori", "messages": [message], **extra}


def small_png(size: tuple[int, int] = (64, 64)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "the body: Input should be an object"),
        (json.dumps({"model": 5, "messages": []}).encode(), "model"),
        (json.dumps({"model": "satori", "messages": "hi"}).encode(), "messages"),
        (json.dumps({"model": "satori", "messages": [1, "x"]}).encode(), "messages.0"),
        (json.dumps({"model": "satori", "messages": [{"role": "user", "content": 5}]}).encode(), "content"),
        (json.dumps(with_image(small_png(), max_tokens="abc")).encode(), "max_tokens"),
        (json.dumps(with_image(small_png(), stream=[1])).encode(), "stream"),
        (json.dumps(with_image(png_header(100_000, 100_000))).encode(), "more than 50,000,000 pixels"),
        (json.dumps(with_image(png_header(8_000, 8_000))).encode(), "more than 50,000,000 pixels"),
        (json.dumps(with_image(small_png((4000, 10)))).encode(), "cannot use this image"),
        (json.dumps(with_image(b"GIF89a garbage")).encode(), "cannot decode the image"),
        (json.dumps(with_image(small_png()[:40])).encode(), "cannot decode the image"),
        (
            json.dumps({"model": "satori", "messages": [{"role": "user", "content": "no image"}]}).encode(),
            "no image",
        ),
        (json.dumps(with_image(small_png())).encode()[:-1] + b', "n": ' + b"9" * 5000 + b"}", ""),
    ],
)
def test_the_fake_backend_refuses_bad_requests_with_400_and_a_message(fake_backend, body, message):
    _, root = fake_backend
    response = httpx.post(
        root + "/v1/chat/completions",
        content=body,
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]["message"]
    assert message in error and "Traceback" not in error and "\n" not in error


def test_the_fake_backend_still_answers_after_bad_requests(fake_backend, satori, image):
    _, root = fake_backend
    result = satori("predict", str(image), "q", "--base-url", root + "/v1", "--api-key", "k", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["boxes"] == [list(BOX)]
    assert (
        httpx.get(root + "/v1/models").status_code == 401 and httpx.get(root + "/health").status_code == 200
    )


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def gone(pid: int) -> bool:
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()  # a zombie is dead
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_killing_satori_serve_stops_its_server_and_frees_the_port(sig):
    """kill -9 (no cleanup can run) and SIGHUP (a closed SSH session) used to orphan the server child."""
    with serving("--backend", "fake") as (proc, port):
        (child,) = children(proc.pid)
        assert listening(port)
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        assert proc.returncode == (-9 if sig == signal.SIGKILL else 130)
        assert wait_until(lambda: gone(child), timeout=20, interval=0.1), (
            "the server child outlived satori serve"
        )
        assert wait_until(lambda: not listening(port), timeout=10, interval=0.1)
        with socket.socket() as sock:  # and a new server can take the port at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


class Recorder:
    """A stand-in HTTP(S) proxy that records every connection: where the demo phones home."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(200))
                except OSError:
                    self.seen.append(b"")


@pytest.mark.slow
@pytest.mark.parametrize("analytics", [None, "True"], ids=["default", "asked-for"])
def test_the_demo_sends_no_analytics_unless_asked(tmp_path, monkeypatch, analytics):
    """GRADIO_ANALYTICS_ENABLED was set after the Blocks were built: the demo phoned home at launch.

    Every outside request of the demo process goes to a recording proxy; with analytics asked
    for (the control case) the proxy sees Gradio's requests, by default it sees nothing.
    """
    proxy = Recorder()
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)  # conftest turns them off for tests
    env = {"HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url, "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    if analytics:
        env["GRADIO_ANALYTICS_ENABLED"] = analytics
    with serving("--backend", "fake", "--ui", "--ui-port", "0", env=env, timeout=180) as (proc, _):
        page = httpx.get(f"http://127.0.0.1:{proc.ui_port}/", timeout=60)
        assert page.status_code == 200
        if analytics:
            assert wait_until(lambda: proxy.seen, timeout=30, interval=0.1), "the control case saw nothing"
        else:
            wait_until(lambda: proxy.seen, timeout=3, interval=0.1)  # give a phone-home time to show
            assert proxy.seen == [], proxy.seen
    proxy.sock.close()
