"""Serving SATORI: an OpenAI-compatible server (vLLM, or ms-swift over transformers), a client
that keeps box coordinates honest, and a Gradio demo that draws the boxes where they belong.

Module map:
- `backends`: build the server's command line (vLLM, `swift deploy`, the fake) and supervise its
  child process.
- `server`: `satori serve`'s options and addresses checked, the server planned, then printed
  (dry run) or run (and the demo) until stopped.
- `client`: pre-resize to the pixel budget, call the API (`satori_cli.http_client`), parse, map
  boxes back, draw.
- `demo`: the Gradio demo on top of `client`.
- `fake_server`: `--backend fake`, a small OpenAI-compatible server with canned SATORI answers,
  for trying the demo with no model (tests add their hooks in `tests/serve_helpers.py`).
"""
