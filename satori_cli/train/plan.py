"""Build the exact `swift rlhf --rlhf_type grpo` (or, for the SFT stage, `swift sft`) command(s)
a training run executes.

One builder, pure (no imports of swift, no file access beyond what the caller resolved), so
`--dry-run`, the real run, the benchmark and the tests all see the same argv. Multi-GPU and
multi-node use ms-swift's own launcher: with `NPROC_PER_NODE`/`NNODES` set, `swift rlhf` (and
`swift sft`) re-executes itself under `torch.distributed.run`, so every node runs the same argv and
only `NODE_RANK` differs. The training processes see exactly their own GPUs (`devices`, chosen by
`satori_cli.train.preflight`); in server mode the rollouts come from `swift rollout` servers
(`rollout_urls`) on other GPUs or machines, or from one satori starts (`RolloutSpec`: how wide).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from satori_cli.errors import SatoriError, install_hint
from satori_cli.gpus import Gpu, visible_env
from satori_cli.process import Command, flag_args
from satori_cli.train.recipe import Recipe

DEFAULT_MASTER_PORT = 29500
ROLLOUT_PORT = 8000  # swift rollout's default, and the trainer's default vllm_server_port
# `--report-to` choices, each with how to install the module transformers' callback imports
# (named as the tracker); `none` logs only to swift's logging.jsonl.
TRACKERS = {
    "tensorboard": install_hint("train"),
    "wandb": "pip install wandb",
    "swanlab": "pip install swanlab",
    "none": None,
}

if TYPE_CHECKING:
    from satori_cli.train.runfolder import Claim


@dataclass(frozen=True)
class Launch:
    """How many processes where: `gpus` per node (0 = one CPU process), `nodes` machines."""

    gpus: int = 1
    nodes: int = 1
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int = DEFAULT_MASTER_PORT
    # This node's GPUs for the training processes (empty: not chosen, e.g. a CPU run or a dry run
    # that shows no devices).
    devices: tuple[Gpu, ...] = ()

    def __post_init__(self) -> None:
        if self.gpus < 0:
            raise SatoriError("--gpus must be 0 (CPU) or more")
        if self.nodes < 1:
            raise SatoriError("--nodes must be at least 1")
        if self.nodes > 1:
            if self.gpus < 1:
                raise SatoriError("multi-node training needs --gpus of at least 1 per node")
            if not self.master_addr:
                raise SatoriError(
                    "--nodes > 1 needs --master-addr", hint="the address of node 0, reachable from every node"
                )
        if self.node_rank is not None and not 0 <= self.node_rank < self.nodes:
            raise SatoriError(f"--node-rank must be in 0..{self.nodes - 1}, got {self.node_rank}")

    @property
    def world_size(self) -> int:
        """Training processes in total (a CPU run is one process)."""
        return max(self.gpus, 1) * self.nodes

    @property
    def distributed(self) -> bool:
        return self.gpus > 1 or self.nodes > 1

    def ranks(self) -> list[int]:
        """The node ranks to build commands for: the one asked for, else all of them."""
        return [self.node_rank] if self.node_rank is not None else list(range(self.nodes))

    def env(self, node_rank: int) -> dict[str, str]:
        """ms-swift's launcher variables; a single-process run needs none.

        `gpus == 0` hides the GPUs: ms-swift would otherwise put a single process on cuda:0.
        """
        if self.gpus == 0:
            return {"CUDA_VISIBLE_DEVICES": ""}
        env = visible_env(self.devices) if self.devices else {}
        if not self.distributed:
            return env
        env.update({"NPROC_PER_NODE": str(self.gpus), "MASTER_PORT": str(self.master_port)})
        if self.nodes > 1:
            env.update(
                {"NNODES": str(self.nodes), "NODE_RANK": str(node_rank), "MASTER_ADDR": str(self.master_addr)}
            )
        return env


@dataclass(frozen=True)
class RolloutSpec:
    """Where and how wide the rollout server runs: `gpus` = data parallel x tensor parallel."""

    gpus: int
    tensor_parallel: int = 1
    host: str = "127.0.0.1"
    port: int = ROLLOUT_PORT

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise SatoriError("the rollout server needs at least one GPU (--gpus N, vLLM is CUDA-only)")
        if self.tensor_parallel < 1 or self.gpus % self.tensor_parallel:
            raise SatoriError(
                f"--tensor-parallel {self.tensor_parallel} does not divide --gpus {self.gpus}",
                hint="the rollout runs gpus / tensor_parallel vLLM engines of tensor_parallel GPUs each",
            )

    @property
    def data_parallel(self) -> int:
        return self.gpus // self.tensor_parallel


@dataclass
class TrainPlan:
    """Everything resolved: the recipe, concrete paths and the launch shape."""

    recipe: Recipe
    model: str
    train_path: Path
    output_dir: Path
    plugin: Path
    reward_funcs: tuple[str, ...]
    system_prompt: Path
    launch: Launch = field(default_factory=Launch)
    val_path: Path | None = None
    local_qwen2_5_vl: bool = False
    resume: Path | None = None
    # The data as given (before satori added row ids), for run.json's fingerprint.
    data_sources: tuple[Path | None, Path | None] = (None, None)
    # Server mode: the `swift rollout` servers that generate (http://host:port each).
    rollout_urls: tuple[str, ...] = ()
    # The rollout server `satori train` starts itself on this machine (one node, no --rollout-url).
    managed_rollout: RolloutSpec | None = None
    stage: str = "grpo"  # "grpo": swift rlhf with the rewards; "sft": swift sft on gold completions
    # The folder this invocation created (removed if it fails before training), and for
    # --overwrite the earlier run's entries to remove once the preflight has passed.
    made_dir: Path | None = None
    claim: Claim | None = None

    @property
    def stage_args(self) -> dict[str, Any]:
        """The recipe's ms-swift arguments for this stage."""
        return self.recipe.stage_args(self.stage)

    def swift_args(self) -> dict[str, Any]:
        """The ms-swift arguments in order: fixed plumbing first, then the recipe (which wins).

        Both stages get the same model, template, system prompt and output layout; only GRPO
        gets the reward plugin.
        """
        args: dict[str, Any] = {"rlhf_type": "grpo"} if self.stage == "grpo" else {}
        args["model"] = self.model
        if self.local_qwen2_5_vl:
            # A local folder's template is ambiguous to swift (qwen2_5_vl vs mimo_vl).
            args.update({"model_type": "qwen2_5_vl", "template": "qwen2_5_vl"})
        args.update(
            {
                "dataset": [str(self.train_path)],
                "val_dataset": [str(self.val_path)] if self.val_path else None,
            }
        )
        if self.stage == "grpo":
            args.update({"external_plugins": [str(self.plugin)], "reward_funcs": list(self.reward_funcs)})
        args.update(
            {
                "system": str(self.system_prompt),
                "output_dir": str(self.output_dir),
                # The run folder is the output folder: run.json, the log and the checkpoints sit together.
                "add_version": False,
                # TensorBoard needs no network and writes into the run folder (`runs/`); the
                # tracker's run is named after the run folder.
                "report_to": ["tensorboard"],
                "run_name": self.output_dir.name,
            }
        )
        args.update(self.stage_args)
        if self.rollout_urls and self.stage == "grpo":
            args.update({"use_vllm": True, "vllm_mode": "server"})
            args["vllm_server_base_url"] = list(self.rollout_urls)
        if self.resume is not None:
            args["resume_from_checkpoint"] = str(self.resume)
        return args

    def env(self, node_rank: int = 0) -> dict[str, str]:
        # Both bounds (and swift's token counts): the model's processor and the bbox reward must
        # resize images identically.
        return {**self.recipe.budget.env(), **self.launch.env(node_rank)}

    @property
    def report_to(self) -> list[str]:
        """The experiment trackers swift reports to (`none` = only its logging.jsonl)."""
        value = self.swift_args().get("report_to") or ["none"]
        return [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]

    @property
    def uses_vllm(self) -> bool:
        return str(self.swift_args().get("use_vllm", "false")).lower() == "true"

    @property
    def server_mode(self) -> bool:
        return self.uses_vllm and self.swift_args().get("vllm_mode") == "server"

    @property
    def evaluating(self) -> bool:
        """Whether swift will evaluate: a validation file, or a split of the training data."""
        ratio = float(self.stage_args.get("split_dataset_ratio", 0) or 0)
        return self.val_path is not None or ratio > 0


def build_commands(plan: TrainPlan, swift_bin: str = "swift") -> list[tuple[int, Command]]:
    """`[(node_rank, Command), ...]`: the same argv on every node, the environment per node."""
    argv = [swift_bin, "sft" if plan.stage == "sft" else "rlhf", *flag_args(plan.swift_args())]
    return [(rank, Command(list(argv), plan.env(rank))) for rank in plan.launch.ranks()]


def generation_batch_check(swift: dict[str, Any], world_size: int, evaluating: bool) -> str | None:
    """ms-swift's divisibility rules, checked before a model is loaded; the message, or None.

    The rollout batch is `per_device_train_batch_size x processes x steps_per_generation`
    (or `generation_batch_size`) completions, which must split into whole groups of
    `num_generations`; evaluation needs `per_device_eval_batch_size x processes` likewise.
    """

    def num(key: str, default: int | None) -> int | None:
        value = swift.get(key)
        return default if value is None else int(value)

    g = num("num_generations", 8)
    per_device = num("per_device_train_batch_size", 8)
    accumulation = num("gradient_accumulation_steps", 1)
    steps = num("steps_per_generation", accumulation)
    explicit = num("generation_batch_size", None)
    batch = explicit if explicit is not None else per_device * world_size * steps
    how = (
        f"generation_batch_size {explicit}"
        if explicit is not None
        else (
            f"per_device_train_batch_size {per_device} x {world_size} process(es)"
            f" x steps_per_generation {steps}"
        )
    )
    if g < 1 or batch % g:
        return f"{how} = {batch} completions is not divisible by num_generations {g}"
    if evaluating:
        g_eval = num("num_generations_eval", g)
        eval_batch = num("per_device_eval_batch_size", per_device) * world_size
        if g_eval < 1 or eval_batch % g_eval:
            return (
                f"per_device_eval_batch_size x {world_size} process(es) = {eval_batch} "
                f"is not divisible by num_generations_eval {g_eval}"
            )
    return None
