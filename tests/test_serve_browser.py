"""The demo in a real headless browser (Debian's chromium driven by Playwright): upload, ask, see boxes.

CI installs chromium (`make browser`); a missing browser fails this test loudly, it does not skip.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from satori_cli.serve.demo import build_demo, launch_demo
from tests.serve_helpers import CASES, FakeServer, free_port, red_box_image

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_upload_ask_and_see_the_box(tmp_path):
    assert CHROMIUM.is_file(), "Debian chromium is missing: run `make browser` (apt-get install chromium)"
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    fake = FakeServer().start()
    demo = launch_demo(build_demo(fake.base_url, timeout=10), port=port, block=False)
    image = red_box_image(tmp_path / "square.png", (640, 480), CASES[(640, 480)])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            expect(page.locator("#status")).to_contain_text("Connected", timeout=30_000)
            page.locator("#inp input[type=file]").set_input_files(str(image))
            expect(page.locator("#inp img")).to_have_count(1, timeout=30_000)
            page.locator("#q textarea").fill("Where is the red box?")
            page.locator("#ask").click()
            expect(page.locator("#raw textarea")).to_have_value(re.compile("</answer>$"), timeout=30_000)
            # The base image plus one mask layer per box, with its legend.
            expect(page.locator("#out img")).to_have_count(2, timeout=30_000)
            expect(page.locator("#out")).to_contain_text("box 1")
            expect(page.locator("#parsed")).to_contain_text("Answer: red")
            expect(page.locator("#parsed")).to_contain_text("[160, 120, 480, 360]")
            # The caption survives (raw <caption> would be swallowed as an HTML element).
            expect(page.locator("#parsed")).to_contain_text("Caption: a 644x476 picture")
            shot = tmp_path / "page.png"
            page.locator("#out").screenshot(path=str(shot))
            assert Image.open(shot).size[0] > 100
            browser.close()
    finally:
        demo.close()
        fake.stop()
