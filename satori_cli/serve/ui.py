"""The Gradio demo: upload an image, ask, watch the answer stream, see the boxes on the image.

All model work goes through `SatoriClient` against an OpenAI-compatible server, so the demo
runs unchanged against vLLM on a GPU box, `swift deploy` on a laptop, or the fake server.
Element ids (`inp`, `q`, `ask`, `out`, `parsed`, `raw`, `status`) are a stable contract for
the browser tests.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from satori_cli.errors import SatoriError, require
from satori_cli.grammar import Grammar, get_grammar
from satori_cli.pixels import PAPER_BUDGET, PixelBudget
from satori_cli.serve.client import (
    BOX_COLORS,
    MAX_UPLOAD_BYTES,
    Prediction,
    SatoriClient,
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
    if not c.well_formed:
        lines += ["", f"_Not in the {g.name} format: {html.escape(c.reason or '')}_"]
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


def server_status(client: SatoriClient) -> str:
    try:
        models = client.models()
    except SatoriError as exc:
        return error_markdown(str(exc))
    return f"Connected to `{client.base_url}`; models: {', '.join(models) or '(none)'}"


def make_handler(client: SatoriClient, budget: PixelBudget):
    """The streaming `ask` handler: yields (annotated image, parsed panel, raw text)."""

    def ask(image_path: str | None, question: str, temperature: float, max_tokens: float) -> Iterator[Any]:
        if not image_path:
            yield None, error_markdown("upload an image (or pick an example) first"), ""
            return
        try:
            image = load_image(image_path)
            prepared = prepare_image(image, budget)
        except SatoriError as exc:
            yield None, error_markdown(str(exc)), ""
            return
        import gradio as gr

        text = ""
        try:
            # The image goes out once; later chunks leave it alone (gr.skip). Re-sending it each
            # chunk made Gradio rewrite the same cached file while a browser was still reading it.
            shown = (image, [])
            for text in client.stream(prepared, question or "", float(temperature), int(max_tokens)):
                yield shown, "_answering..._", text
                shown = gr.skip()
        except SatoriError as exc:
            yield (image, []), error_markdown(str(exc)), text
            return
        prediction = interpret(text, prepared, budget, client.grammar)
        yield (image, annotations(prediction)), parsed_markdown(prediction), text

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


def build_demo(
    base_url: str,
    api_key: str | None = None,
    budget: PixelBudget = PAPER_BUDGET,
    timeout: float = 120.0,
    grammar: str | Grammar | None = None,
):
    """The Blocks app (not launched), asking and reading in `grammar` (default satori)."""
    gr = require("gradio", "serve", "The demo")

    client = SatoriClient(base_url, api_key=api_key, budget=budget, timeout=timeout, grammar=grammar)
    ask = make_handler(client, budget)
    colors = {f"box {i + 1}": BOX_COLORS[i % len(BOX_COLORS)] for i in range(50)}
    with gr.Blocks(title="SATORI") as demo:
        gr.Markdown(intro(client.grammar))
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
                parsed = gr.Markdown(elem_id="parsed")
                raw = gr.Textbox(label="Raw output", elem_id="raw", lines=4, interactive=False)
        inputs = [image, question, temperature, max_tokens]
        button.click(ask, inputs, [out, parsed, raw], api_name="ask")
        question.submit(ask, inputs, [out, parsed, raw], api_visibility="private")
        demo.load(lambda: server_status(client), None, status, api_visibility="private")
    return demo


def launch_demo(demo: Any, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Start the demo on host:port. Loopback only unless asked; never a public share link."""
    # Gradio requests its own startup route; a proxy in the environment would swallow it.
    no_proxy = {p for p in os.environ.get("NO_PROXY", "").split(",") if p} | {"127.0.0.1", "localhost"}
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(sorted(no_proxy))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
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
        )
    except OSError as exc:
        raise SatoriError(
            f"cannot start the demo on {host}:{port}: {exc}", hint="choose another --ui-port"
        ) from exc
    return demo
