"""Serving SATORI: an OpenAI-compatible server (vLLM, or ms-swift over transformers), a client
that keeps box coordinates honest, and a Gradio demo that draws the boxes where they belong.

Module map:
- `server`: `satori serve`'s options and addresses checked, the server planned (its command line:
  vLLM, `swift deploy` or the fake), then printed (dry run) or run as a supervised child process
  (and the demo) until stopped; `satori rollout` and `satori train` start theirs with it too.
- `client`: pre-resize to the pixel budget, call the API (`satori_cli.http_client`), parse, map
  boxes back, draw.
- `demo`: the Gradio demo on top of `client`.
- `fake_server`: `--backend fake`, a small OpenAI-compatible server with canned SATORI answers,
  for trying the demo with no model (tests add their hooks in `tests/serve_helpers.py`).
"""
