"""The Gradio demo: upload an image, ask, watch the answer stream, see the boxes on the image.

All model work goes through `SatoriClient` against an OpenAI-compatible server, so the demo
runs unchanged against vLLM on a GPU box, `swift deploy` on a laptop, or the fake server.
Element ids (`inp`, `q`, `ask`, `out`, `parsed`, `raw`, `status`) are a stable contract for
the browser tests.

With an API key the demo asks for it (any user name, the key as password): otherwise it would
be an open door to a server that the key protects. Gradio's usage analytics are off unless
GRADIO_ANALYTICS_ENABLED says otherwise.
"""

from __future__ import annotations

import html
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from satori_cli.errors import SatoriError, require
from satori_cli.grammar import Grammar, get_grammar
from satori_cli.pixels import PAPER_BUDGET, PixelBudget
from satori_cli.serve.client import (
    BOX_COLORS,
    CANNED_NOTICE,
    CANNED_OWNER,
    MAX_UPLOAD_BYTES,
    Prediction,
    SatoriClient,
    box_line_width,
    draw_box,
    interpret,
    load_image,
    prepare_image,
)

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
EXAMPLES = (
    ("red_box.png", "What color is the box on the grass?"),
    ("red_ball.png", "Where is the red ball?"),
)
CSS = "#raw textarea { font-family: monospace; }"


def parsed_markdown(prediction: Prediction) -> str:
    """The parts of the answer's grammar (caption, thinking, answer, boxes) as Markdown.
    Escaped: raw `<caption>` would vanish as HTML."""
    c = prediction.completion
    g = get_grammar(c.grammar)

    def field(value: str | None) -> str:
        return html.escape(value) if value else "_(missing)_"

    lines = [f"**Caption:** {field(c.caption)}", ""] if g.has_caption else []
    if g.thinking_tag:
        lines += [f"**Thinking:** {field(c.thinking)}", ""]
    lines += [f"**Answer:** {field(c.answer)}", ""]
    if prediction.boxes:
        boxes = ", ".join(
            f"{label} {list(b)}" for label, b in zip(prediction.labels(), prediction.boxes, strict=True)
        )
        lines.append(f"**Boxes** (original-image pixels): {boxes}")
    elif g.has_boxes:
        lines.append(f"**Boxes:** none ({html.escape(c.box_error or 'empty list')})")
    if prediction.problem:
        lines += ["", f"_Not in {g.title} format: {html.escape(prediction.problem)}_"]
    return "\n".join(lines).strip()


def intro(grammar: Grammar) -> str:
    """What the model does, in the demo's grammar."""
    steps = {
        "caption": "describes the image",
        "bbox": "picks the regions that matter",
        "thinking": "thinks it through",
        "think": "thinks it through",
        "answer": "answers",
    }
    said = [steps[t] for t in grammar.tags]
    text = f"# SATORI\nThe model ({grammar.name}) {', then '.join(said)}."
    if grammar.has_boxes:
        text += " Boxes are mapped from the model's resized input back onto your image."
    return text


def annotations(prediction: Prediction) -> list[tuple[tuple[int, int, int, int], str]]:
    """AnnotatedImage wants int boxes inside the image (floats raise; negatives wrap): clamped already."""
    return [
        (b, label)
        for b, label in zip(prediction.boxes, prediction.labels(), strict=True)
        if b[2] > b[0] and b[3] > b[1]
    ]


def error_markdown(message: str) -> str:
    return f"**Error:** {html.escape(message)}"


def canned_markdown() -> str:
    return f"**⚠ {html.escape(CANNED_NOTICE)}**"


def server_status(client: SatoriClient) -> str:
    """Connected to where, which models; and, for the fake backend, that its answers are canned."""
    try:
        served = client.served()
    except SatoriError as exc:
        return error_markdown(str(exc))
    names = ", ".join(str(m["id"])[:80] for m in served) or "(none)"
    text = f"Connected to `{client.base_url}`; models: {html.escape(names)}"
    if any(m.get("owned_by") == CANNED_OWNER for m in served):
        text += "\n\n" + canned_markdown()
    return text


def make_handler(client: SatoriClient, save_image: Callable[[Any], str]):
    """The streaming `ask` handler: yields (annotated image, parsed panel, raw text).

    `save_image` writes the picture shown with the answer to a file of its own (ResultFiles).
    """

    def ask(image_path: str | None, question: str, temperature: float, max_tokens: float) -> Iterator[Any]:
        if not image_path:
            yield None, error_markdown("upload an image (or pick an example) first"), ""
            return
        try:
            image = load_image(image_path)
            prepared = prepare_image(image, client.budget)
        except SatoriError as exc:
            yield None, error_markdown(str(exc)), ""
            return
        text = ""
        picture = save_image(image)
        try:
            # The picture comes with the boxes, once, at the end. Not gr.skip() meanwhile: Gradio
            # answers a skip by rebuilding the component from its constructor, which would drop
            # ResultFiles.postprocess for the rest of the session; and not the picture with
            # every chunk: gradio_client downloads it again for each one.
            for text in client.stream(prepared, question or "", float(temperature), int(max_tokens)):
                yield None, "_answering..._", text
        except SatoriError as exc:
            yield (picture, []), error_markdown(str(exc)), text
            return
        prediction = interpret(text, prepared, client.budget, client.grammar)
        yield (picture, annotations(prediction)), parsed_markdown(prediction), text

    return ask


def _refuse_non_images(component: Any, gr: Any) -> None:
    """Make an upload that is not an image end in a message, not a traceback.

    Wrapping the instance's preprocess (not subclassing: gradio writes a .pyi file next to
    the module of every component subclass).
    """
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except Exception:
            raise gr.Error("The upload is not an image that can be read (PNG, JPEG, WebP, ...).") from None

    component.preprocess = preprocess


class ResultFiles:
    """Each answer's picture and box masks in files of its own, in the demo's cache folder.

    Gradio's AnnotatedImage saves images under a hash of their bytes and rewrites that file for
    every answer: with many users asking about the same picture, one answer rewrote a file that
    another browser was still downloading ("Too little data for declared Content-Length", 1-6
    of 64 concurrent jobs). Here every file is new, written once, and never touched again;
    the Blocks' `delete_cache` setting removes them after a while.
    """

    def __init__(self, component: Any, colors: dict[str, str]) -> None:
        self.root = Path(component.GRADIO_CACHE) / "satori-results"
        self.colors = colors

    def _new(self, name: str) -> Path:
        folder = self.root / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder / name

    def save_image(self, image: Any) -> str:
        path = self._new("image.png")
        image.save(path, format="PNG")
        return str(path)

    def postprocess(self, value: Any) -> Any:
        """AnnotatedImage's postprocess, writing fresh files: (image path, [(box, label), ...])."""
        from gradio.components.annotated_image import AnnotatedImageData, Annotation
        from gradio.data_classes import FileData
        from PIL import Image, ImageDraw

        if value is None:
            return None
        path, boxes = value
        with Image.open(path) as img:
            size = img.size
        sections = []
        width = box_line_width(size)
        for box, label in boxes:
            # The frame and label `predict --out` draws (no fill: a translucent fill hid an
            # object of the box's own colour), on a transparent layer Gradio lays over the image.
            mask = Image.new("RGBA", size, (0, 0, 0, 0))
            draw_box(ImageDraw.Draw(mask), box, label, self.colors.get(label, BOX_COLORS[0]), width)
            mask_path = self._new("box.png")
            mask.save(mask_path, format="PNG")
            sections.append(Annotation(image=FileData(path=str(mask_path)), label=label))
        return AnnotatedImageData(image=FileData(path=str(path)), annotations=sections)


def build_demo(
    base_url: str,
    api_key: str | None = None,
    budget: PixelBudget = PAPER_BUDGET,
    timeout: float = 120.0,
    grammar: str | Grammar | None = None,
    canned: bool = False,
):
    """The Blocks app (not launched; `launch_demo` starts it, with a login when there is a key),
    asking and reading in `grammar` (default satori). `canned`: the server is the fake backend,
    said in a banner from the start (the status line also says so once it sees the server)."""
    # Before gradio is imported: its analytics read the variable at import and at Blocks().
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    gr = require("gradio", "serve", "The demo")

    client = SatoriClient(base_url, api_key=api_key, budget=budget, timeout=timeout, grammar=grammar)
    colors = {f"box {i + 1}": BOX_COLORS[i % len(BOX_COLORS)] for i in range(50)}
    # Result files older than an hour are deleted every hour: a long-running demo stays bounded.
    with gr.Blocks(title="SATORI", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(intro(client.grammar))
        if canned:
            gr.Markdown(canned_markdown(), elem_id="canned")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="filepath", label="Image", elem_id="inp", sources=["upload", "clipboard"]
                )
                _refuse_non_images(image, gr)
                question = gr.Textbox(label="Question", elem_id="q", lines=2)
                with gr.Accordion("Sampling", open=False):
                    temperature = gr.Slider(
                        0.0, 1.5, value=0.0, step=0.05, label="Temperature", elem_id="temp"
                    )
                    max_tokens = gr.Slider(16, 1024, value=512, step=16, label="Max tokens", elem_id="maxtok")
                button = gr.Button("Ask", variant="primary", elem_id="ask")
                gr.Examples(
                    examples=[[str(EXAMPLES_DIR / name), q] for name, q in EXAMPLES],
                    inputs=[image, question],
                )
            with gr.Column():
                out = gr.AnnotatedImage(label="Regions", elem_id="out", format="png", color_map=colors)
                files = ResultFiles(out, colors)
                out.postprocess = files.postprocess  # on the instance: see _refuse_non_images
                ask = make_handler(client, files.save_image)
                parsed = gr.Markdown(elem_id="parsed")
                raw = gr.Textbox(label="Raw output", elem_id="raw", lines=4, interactive=False)
        inputs = [image, question, temperature, max_tokens]
        button.click(ask, inputs, [out, parsed, raw], api_name="ask")
        question.submit(ask, inputs, [out, parsed, raw], api_visibility="private")
        demo.load(lambda: server_status(client), None, status, api_visibility="private")
    demo.satori_api_key = api_key  # launch_demo puts the demo behind it
    return demo


def launch_demo(demo: Any, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Start the demo on host:port. Loopback only unless asked; never a public share link."""
    # Gradio requests its own startup route; a proxy in the environment would swallow it.
    no_proxy = {p for p in os.environ.get("NO_PROXY", "").split(",") if p} | {"127.0.0.1", "localhost"}
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(sorted(no_proxy))
    api_key = getattr(demo, "satori_api_key", None)
    demo.queue(default_concurrency_limit=8, max_size=64)
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            ssr_mode=False,
            show_error=True,
            quiet=True,
            css=CSS,
            max_file_size=MAX_UPLOAD_BYTES,
            prevent_thread_lock=not block,
            auth=(lambda _user, password: secrets.compare_digest(password.encode(), api_key.encode()))
            if api_key
            else None,
            auth_message="This demo uses the server's API key: log in with any user name and the key "
            "as password."
            if api_key
            else None,
        )
    except OSError as exc:
        raise SatoriError(
            f"cannot start the demo on {host}:{port}: {exc}", hint="choose another --ui-port"
        ) from exc
    return demo
