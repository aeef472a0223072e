"""Serving SATORI: an OpenAI-compatible server (vLLM, or ms-swift over transformers), a client
that keeps box coordinates honest, and a Gradio demo that draws the boxes where they belong.

Module map:
- `vllm_command` / `backends`: build and supervise the server child process.
- `client`: pre-resize to the pixel budget, call the API, parse, map boxes back, draw.
- `ui`: the Gradio demo on top of `client`.
- `fake_server`: a small OpenAI-compatible server that answers in SATORI format, for tests,
  benchmarks and trying the demo with no model.
"""
