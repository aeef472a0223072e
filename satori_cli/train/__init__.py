"""GRPO and SFT training on ms-swift 4.x: recipes, the plan and its swift commands, preflight,
the runner and reports."""
