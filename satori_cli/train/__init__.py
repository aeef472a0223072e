"""GRPO training on ms-swift 4.x: recipes, the command builder, preflight, the runner and reports."""
