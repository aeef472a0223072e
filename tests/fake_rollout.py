"""A stand-in for `swift rollout` in tests (vLLM is CUDA-only): the routes satori reads, nothing else.

It mimics ms-swift 4.6's rollout server (swift/pipelines/infer/rollout.py): `GET /health` ->
`{"status": "ok"}`; `GET /get_world_size/` -> `{"world_size": tp x dp}`; `GET
/get_model_state_keys/` -> `{"keys": [...]}` in vLLM's parameter naming for Qwen2.5-VL
(`language_model.model.layers.N...`, `visual.blocks.N...`); `POST /get_engine_type/`. With an
API key, every route but /health answers 401 without the Bearer token, as swift's does.

Two uses:
- in-process: `with FakeRollout(world_size=2, layers=2, blocks=2) as server: server.url`;
- as the `swift` executable (`satori rollout --swift-bin`, via `fake_swift(tmp_path)`): it parses
  the `swift rollout` argv, reads the model's config.json for the layer counts, appends its argv
  and environment to $FAKE_ROLLOUT_LOG, and serves until stopped. $FAKE_ROLLOUT_EXIT=N makes it
  print two lines and exit with N before it is healthy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def state_keys(layers: int, blocks: int) -> list[str]:
    """Parameter names as vLLM's Qwen2_5_VLForConditionalGeneration lists them (a few per layer)."""
    keys = ["language_model.model.embed_tokens.weight", "language_model.model.norm.weight"]
    for i in range(layers):
        keys += [
            f"language_model.model.layers.{i}.self_attn.qkv_proj.weight",
            f"language_model.model.layers.{i}.mlp.gate_up_proj.weight",
        ]
    keys.append("visual.patch_embed.proj.weight")
    for i in range(blocks):
        keys += [f"visual.blocks.{i}.attn.qkv.weight", f"visual.blocks.{i}.mlp.gate_up_proj.weight"]
    return [*keys, "visual.merger.mlp.0.weight"]


def make_handler(world_size: int, keys: list[str], api_key: str | None = None, swift: bool = True):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> None:
            path = self.path
            if path in ("/health", "/health/"):
                return self._send(200, {"status": "ok"})
            if not swift:
                return self._send(404, {"detail": "Not Found"})
            if api_key and self.headers.get("Authorization") != f"Bearer {api_key}":
                return self._send(401, {"detail": "Missing bearer token"})
            if path == "/get_world_size/" and self.command == "GET":
                return self._send(200, {"world_size": world_size})
            if path == "/get_model_state_keys/" and self.command == "GET":
                return self._send(200, {"keys": keys})
            if path == "/get_engine_type/" and self.command == "POST":
                return self._send(200, {"engine_type": "LLMEngine", "enable_multi_turn": False})
            return self._send(404, {"detail": "Not Found"})

        do_GET = do_POST = _route

    return Handler


class FakeRollout:
    """The fake server in a thread on 127.0.0.1 (a free port); a context manager."""

    def __init__(
        self, world_size: int = 2, layers: int = 2, blocks: int = 2, api_key: str | None = None, swift=True
    ) -> None:
        handler = make_handler(world_size, state_keys(layers, blocks), api_key, swift)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeRollout:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def fake_swift(folder: Path) -> Path:
    """An executable `swift` in `folder` that runs this module with this interpreter."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "swift"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    script.chmod(0o755)
    return script


def fake_nvidia_smi(folder: Path, count: int = 8, mib: int = 81559) -> Path:
    """An `nvidia-smi` in `folder` that lists `count` H100s (put `folder` first on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(
        f"{i}, GPU-{i:08d}-aaaa-bbbb-cccc-dddddddddddd, NVIDIA H100 80GB HBM3, {mib}" for i in range(count)
    )
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{rows}\nEOF\n")
    script.chmod(0o755)
    return script


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "rollout":
        print(f"fake swift: only `swift rollout` is faked, got {argv[:1]}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser()
    for name in ("model", "host", "port", "vllm_data_parallel_size", "vllm_tensor_parallel_size"):
        parser.add_argument(f"--{name}")
    args, _ = parser.parse_known_args(argv[1:])
    log = os.environ.get("FAKE_ROLLOUT_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"argv": argv, "env": dict(os.environ), "pid": os.getpid()}) + "\n")
    code = os.environ.get("FAKE_ROLLOUT_EXIT")
    if code:
        print("loading the model into vLLM", flush=True)
        print("torch.OutOfMemoryError: CUDA out of memory", flush=True)
        return int(code)
    config_path = Path(args.model or "") / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    text = {**config, **(config.get("text_config") or {})}
    layers = int(text.get("num_hidden_layers", 36))
    blocks = int((config.get("vision_config") or {}).get("depth", 32))
    world = int(args.vllm_data_parallel_size or 1) * int(args.vllm_tensor_parallel_size or 1)
    handler = make_handler(world, state_keys(layers, blocks))
    server = ThreadingHTTPServer((args.host or "0.0.0.0", int(args.port or 8000)), handler)
    print(f"fake rollout of {args.model} on {args.host}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
