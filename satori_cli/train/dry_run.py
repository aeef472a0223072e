"""`satori train --dry-run`: the exact command and environment each node would run.

Nothing is prepared or started; the argv is built by the same builder as a real run, so a
dry run can be pasted on each machine of a multi-node job.
"""

from __future__ import annotations

from satori_cli.errors import SatoriError
from satori_cli.grammar import get_grammar
from satori_cli.train.command import build_commands
from satori_cli.train.preflight import check_batch, check_budget
from satori_cli.train.runner import TrainOptions, build_plan, swift_program


def dry_run_text(opts: TrainOptions) -> str:
    plan = build_plan(opts, prepare_data=False)
    check_batch(plan)
    check_budget(plan.recipe.budget)
    try:
        program = swift_program()
    except SatoriError:
        program = "swift"
    launch = plan.launch
    shape = (
        "1 CPU process"
        if launch.gpus == 0
        else f"{launch.nodes} node(s) x {launch.gpus} GPU(s) = {launch.world_size} process(es)"
    )
    lines = [
        f"# satori train --preset {plan.recipe.preset}: {plan.recipe.description}",
        f"# {shape}; run folder {plan.output_dir}",
    ]
    if plan.resume is not None:
        lines.append(f"# resuming from {plan.resume}")
    grammar = get_grammar(plan.recipe.grammar)
    lines.append(
        f"# grammar {grammar.name}: {grammar.shape()}; rewards {' '.join(plan.reward_funcs)}; "
        f"system prompt {plan.system_prompt} ({grammar.prompt_source})"
    )
    source = plan.recipe.data or "the generated sample set"
    lines.append(f"# data: {source} -> {plan.train_path} (rows get solution=<id> for the report)")
    for rank, command in build_commands(plan, program):
        if launch.nodes > 1:
            lines.append(f"# node {rank} of {launch.nodes}:")
        lines.append(command.display())
    return "\n".join(lines)
