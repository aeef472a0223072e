"""GRPO rollouts on dedicated GPUs: the `swift rollout` command, the server a one-node train run
starts itself, and what a running one reports.

In server mode (`--vllm_mode server`) ms-swift's trainer sends every prompt to a `swift rollout`
server (vLLM, data and/or tensor parallel over its own GPUs) and pushes the policy's weights to
it over NCCL before each generation, starting at step 0. So the server must run the same
*architecture* as the training model; its weights are replaced before the first rollout.

The server does not report which model it loaded (its routes are `/health`, `/get_world_size/`,
`/get_model_state_keys/`, `/get_engine_type/` and the weight-sync and `/infer/` calls;
swift/pipelines/infer/rollout.py). satori therefore compares the parameter names vLLM loaded
(`/get_model_state_keys/`) with the training model's `config.json`: the number of language
layers (`...layers.N...`) and of vision blocks (`visual...blocks.N...`). Qwen2.5-VL 3B/7B/32B/72B
differ in layers (36/28/64/80), and a text-only model has no vision blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from satori_cli.errors import SatoriError, one_line
from satori_cli.gpus import Gpu, visible_env
from satori_cli.http_client import HTTPStatusError, request_json
from satori_cli.pixels import PixelBudget
from satori_cli.process import Command, flag_args
from satori_cli.train.plan import ROLLOUT_PORT, RolloutSpec, TrainPlan
from satori_cli.train.recipe import Recipe

PLACEHOLDER_URL = f"http://ROLLOUT_HOST:{ROLLOUT_PORT}"  # a multi-node dry run without --rollout-url
START_HINT = "start one with `satori rollout --model MODEL --gpus N --host 0.0.0.0` on the rollout machine"
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def max_model_len(swift: dict[str, Any]) -> int:
    """vLLM's context: the recipe's own `vllm_max_model_len`, else prompt + completion lengths."""
    explicit = swift.get("vllm_max_model_len")
    if explicit:
        return int(explicit)
    return int(swift.get("max_length") or 2048) + int(swift.get("max_completion_length") or 512)


def rollout_args(
    model: str,
    recipe: Recipe,
    spec: RolloutSpec,
    *,
    local_qwen2_5_vl: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`swift rollout`'s arguments (ms-swift 4.6 RolloutArguments): the recipe's model, dtype and
    lengths, one image per prompt, vLLM data x tensor parallel; `extra` (after `--`) wins."""
    args: dict[str, Any] = {"model": model}
    if local_qwen2_5_vl:
        args.update({"model_type": "qwen2_5_vl", "template": "qwen2_5_vl"})
    args.update(
        {
            "infer_backend": "vllm",
            "host": spec.host,
            "port": spec.port,
            "vllm_data_parallel_size": spec.data_parallel,
            "vllm_tensor_parallel_size": spec.tensor_parallel,
            "vllm_limit_mm_per_prompt": {"image": 1},
            "vllm_max_model_len": max_model_len(recipe.swift),
            "torch_dtype": recipe.swift.get("torch_dtype"),
            "use_hf": recipe.swift.get("use_hf"),
        }
    )
    args.update(extra or {})
    return args


def rollout_command(
    args: dict[str, Any], budget: PixelBudget, devices: Iterable[Gpu], swift_bin: str = "swift"
) -> Command:
    """The `swift rollout` command: the shared pixel budget and exactly its own GPUs."""
    return Command([swift_bin, "rollout", *flag_args(args)], {**budget.env(), **visible_env(list(devices))})


def base_url(url: str) -> str:
    """A rollout URL as ms-swift's client wants it: `http://host:port`, no trailing slash."""
    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        parts, port = urlsplit(""), None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path:
        raise SatoriError(
            f"--rollout-url {one_line(url, 100)} is not http://HOST:PORT",
            hint="the address `satori rollout` printed, e.g. http://10.0.0.5:8000",
        )
    return text


@dataclass(frozen=True)
class RolloutServer:
    """What a running `swift rollout` told us."""

    url: str
    world_size: int  # vLLM GPUs: data parallel x tensor parallel
    keys: tuple[str, ...] = field(default=(), repr=False)

    @property
    def layers(self) -> int | None:
        return _count(_LAYER, [k for k in self.keys if not k.startswith("visual")])

    @property
    def vision_blocks(self) -> int | None:
        return _count(_BLOCK, [k for k in self.keys if "visual" in k])


def _count(pattern: re.Pattern[str], keys: list[str]) -> int | None:
    found = [int(m.group(1)) for k in keys if (m := pattern.search(k))]
    return max(found) + 1 if found else None


def probe_rollout(url: str, timeout: float = 10.0) -> RolloutServer:
    """Ask the server at `url` what it is; one-line errors (exit 2) when it is down or not swift rollout."""
    try:
        request_json("GET", f"{url}/health", timeout=timeout)
    except SatoriError as exc:
        raise SatoriError(f"no rollout server answers at {url} ({exc.message})", hint=START_HINT) from None
    try:
        world = request_json("GET", f"{url}/get_world_size/", timeout=timeout)
    except SatoriError as exc:
        if isinstance(exc, HTTPStatusError) and exc.status in (401, 403):
            raise SatoriError(
                f"the rollout server at {url} requires an API key, which ms-swift's trainer cannot send",
                hint="restart it without --api_key, on a network only the training nodes reach",
            ) from None
        raise SatoriError(
            f"the server at {url} is not a `swift rollout` server ({exc.message})",
            hint="`satori serve` and `vllm serve` cannot serve GRPO rollouts; " + START_HINT,
        ) from None
    size = world.get("world_size") if isinstance(world, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise SatoriError(
            f"the server at {url} is not a `swift rollout` server (no world size)", hint=START_HINT
        )
    try:
        answer = request_json("GET", f"{url}/get_model_state_keys/", timeout=timeout)
    except SatoriError as exc:
        raise SatoriError(exc.message, hint=exc.hint) from None  # a preflight failure: exit 2
    keys = answer.get("keys") if isinstance(answer, dict) else None
    names = tuple(k for k in keys if isinstance(k, str)) if isinstance(keys, list) else ()
    return RolloutServer(url, size, names)


def expected_architecture(config: dict[str, Any]) -> tuple[int | None, int | None]:
    """(language layers, vision blocks) from a Qwen2/2.5-VL `config.json`; None where absent."""
    text = {**config, **(config.get("text_config") or {})}
    layers = text.get("num_hidden_layers")
    depth = (config.get("vision_config") or {}).get("depth")
    return (layers if isinstance(layers, int) else None, depth if isinstance(depth, int) else None)


def check_same_model(server: RolloutServer, model: str, config: dict[str, Any]) -> str:
    """Refuse a server whose loaded model cannot take the training model's weights; say what matched."""
    want_layers, want_blocks = expected_architecture(config)
    have_layers, have_blocks = server.layers, server.vision_blocks
    if not server.keys or want_layers is None:
        why = "it listed no parameters" if not server.keys else f"no config.json readable for {model}"
        return f"model not compared ({why})"
    if have_layers != want_layers or (want_blocks is not None and have_blocks != want_blocks):

        def shape(layers: int | None, blocks: int | None) -> str:
            vision = f"{blocks} vision blocks" if blocks else "no vision tower"
            return f"{layers or 'no'} language layers and {vision}"

        raise SatoriError(
            f"the rollout server at {server.url} serves another model: {shape(have_layers, have_blocks)}, "
            f"while {model} has {shape(want_layers, want_blocks)}",
            hint=f"restart it with `satori rollout --model {model}`: the trainer pushes its weights into it",
        )
    blocks = f" + {want_blocks} vision blocks" if want_blocks else ""
    return f"same architecture as {model} ({want_layers} layers{blocks})"


# -- the rollout server of a one-node train run -----------------------------------------------------
def plan_managed_rollout(plan: TrainPlan, dry_run: bool = False) -> None:
    """Server mode without --rollout-url: on one node, satori starts `swift rollout` itself.

    Across nodes the rollout server runs on a machine of its own, which only the user can name;
    a dry run shows the commands with ROLLOUT_HOST in its place.
    """
    if plan.launch.nodes > 1 and dry_run:
        plan.rollout_urls = (PLACEHOLDER_URL,)
        return
    if plan.launch.nodes > 1:
        raise SatoriError(
            "server mode across nodes needs --rollout-url http://ROLLOUT_HOST:PORT",
            hint="start it on a machine of its own with `satori rollout --host 0.0.0.0`; --dry-run shows how",
        )
    if plan.recipe.rollout_gpus < 1:
        raise SatoriError(
            "server mode (vllm_mode server) needs a rollout server",
            hint="pass --rollout-url http://HOST:PORT of a running `satori rollout`, or --rollout-gpus N to "
            "start one on this machine",
        )
    if plan.launch.gpus < 1:
        raise SatoriError("server mode trains on GPUs: --gpus 0 (CPU) cannot use a vLLM rollout server")
    spec = RolloutSpec(gpus=plan.recipe.rollout_gpus, host="127.0.0.1", port=ROLLOUT_PORT)
    plan.managed_rollout = spec
    plan.rollout_urls = (f"http://{spec.host}:{spec.port}",)


STARTUP_TIMEOUT = 1800.0  # vLLM loads the model, profiles memory and captures CUDA graphs first


def start_rollout(plan: TrainPlan, devices: Sequence[Gpu], swift_bin: str, timeout: float = STARTUP_TIMEOUT):
    """Start the rollout server of a one-node server-mode run on its GPUs; return it once healthy.

    The same managed child as `satori serve`'s server (its own process group, told to stop when
    satori dies, log in the run folder as `rollout.log`); the caller stops it after training.
    """
    from satori_cli.serve.server import ServerDied, ServerPlan, check_ports, print_tail, start_server

    spec = plan.managed_rollout
    assert spec is not None
    url = f"http://{spec.host}:{spec.port}"
    try:
        check_ports(spec.host, [(spec.port, "rollout port")])
    except SatoriError as exc:
        raise SatoriError(
            exc.message,
            hint=f"a rollout server already running there? train against it with --rollout-url {url}",
        ) from None
    args = rollout_args(plan.model, plan.recipe, spec, local_qwen2_5_vl=plan.local_qwen2_5_vl)
    command = rollout_command(args, plan.recipe.budget, devices, swift_bin)
    server_plan = ServerPlan(
        backend="rollout",
        model=plan.model,
        command=command,
        host=spec.host,
        port=spec.port,
        log_file=plan.output_dir / "rollout.log",
    )
    try:
        return start_server(server_plan, timeout)
    except ServerDied as exc:
        print_tail(exc)
        raise
