"""Prove that the GPU install in the README resolves on PyPI: pip's resolver in dry-run, no CUDA.

`pip install --dry-run --ignore-installed --report FILE -e '.[gpu]'` resolves the whole GPU
environment (ms-swift, deepspeed, vLLM, VLMEvalKit, the rewards) for this Python on this platform
(Linux x86-64 in CI, where the CUDA wheels live) and installs nothing, so a pin change that breaks
it fails CI instead of a user's first GPU run.

Bandwidth: pip reads metadata only. pypi.org serves each wheel's METADATA as its own file
(PEP 658); where an index lacks those files, `--use-feature=fast-deps` reads it from inside the
wheel with HTTP range requests. Packages published only as sdists (deepspeed, jieba, openai-clip)
are downloaded to build their metadata. Measured on an index without PEP 658 files: pip
received 119 MB (index pages, range reads, 36 MB of sdists and build tools) in about 2 minutes
with fast-deps, against 5.2 GB of wheels (the CUDA torch, nvidia-* and vLLM) without it.

The environment is cleaned of pip configuration (`PIP_CONFIG_FILE=/dev/null`, and the PIP_*
variables that add indexes, wheel folders or constraints are dropped): a machine's constraint
file (e.g. one capping torch) or local wheel folder would make the answer differ from what a
user gets from PyPI. `--isolated` would do the same but also drop PIP_CERT and timeouts, which
a proxied CI may need. Exit code 0 when it resolves with the expected versions, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The README's GPU install, word for word: `pip install -e '.[gpu]'` from a clone.
GPU_INSTALL = ("-e", ".[gpu]")
README_COMMAND = shlex.join(["pip", "install", *GPU_INSTALL])
# What the environment must contain (name -> required version prefix, None = any) and must not.
EXPECTED = {
    "ms-swift": "4.6.",
    "vllm": "0.33.",
    "deepspeed": None,
    "ms-vlmeval": "0.0.20",
    "nltk": None,
    "msgspec": None,
    "qwen-vl-utils": None,
    "torch": None,
    "pillow": None,
    "transformers": None,
}
ABSENT = ("gradio",)  # pins pillow<13: the demo runs from the CPU environment (--base-url)
# pip settings that would add a source or a constraint beyond the index under test.
DROPPED_VARS = (
    "PIP_CONSTRAINT",
    "PIP_FIND_LINKS",
    "PIP_EXTRA_INDEX_URL",
    "PIP_INDEX_URL",
    "PIP_NO_INDEX",
    "PIP_REQUIREMENT",
    "PIP_BUILD_CONSTRAINT",
)
PYPI = "https://pypi.org/simple"


def pip_env(environ: dict[str, str]) -> dict[str, str]:
    """`environ` without pip's configuration files and the variables that add sources or constraints."""
    env = {k: v for k, v in environ.items() if k not in DROPPED_VARS}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def pip_argv(python: str, report: Path, index_url: str, fast_deps: bool) -> list[str]:
    argv = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    argv += ["--report", str(report), "--index-url", index_url]
    if fast_deps:
        argv.append("--use-feature=fast-deps")
    return [*argv, *GPU_INSTALL]


def has_fast_deps(python: str, env: dict[str, str]) -> bool:
    """Whether this pip still offers --use-feature=fast-deps (it is an experimental feature)."""
    out = subprocess.run(
        [python, "-m", "pip", "install", "--help"], capture_output=True, text=True, env=env, check=False
    )
    return "fast-deps" in out.stdout


def resolved_versions(report: dict) -> dict[str, str]:
    """{normalised name: version} of everything pip would install."""
    return {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in report.get("install", [])
    }


def problems(versions: dict[str, str]) -> list[str]:
    found = []
    for name, prefix in EXPECTED.items():
        if name not in versions:
            found.append(f"{name} is not in the resolved environment")
        elif prefix and not versions[name].startswith(prefix):
            found.append(f"{name} resolved to {versions[name]}, expected {prefix}*")
    found += [f"{name} is in the GPU environment" for name in ABSENT if name in versions]
    if "pillow" in versions and int(versions["pillow"].split(".")[0]) < 13:
        found.append(f"pillow resolved to {versions['pillow']}; vLLM needs pillow>=13")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-url", default=PYPI, help=f"the index to resolve against (default {PYPI})")
    parser.add_argument("--python", default=sys.executable, help="the Python whose pip resolves")
    args = parser.parse_args(argv)
    env = pip_env(dict(os.environ))
    fast = has_fast_deps(args.python, env)
    with tempfile.TemporaryDirectory(prefix="satori-resolve-gpu-") as tmp:
        report_path = Path(tmp) / "report.json"
        command = pip_argv(args.python, report_path, args.index_url, fast)
        print(f"resolving `{README_COMMAND}` against {args.index_url} (dry run, metadata only)", flush=True)
        start = time.monotonic()
        done = subprocess.run(command, cwd=REPO, env=env, check=False)
        seconds = time.monotonic() - start
        if done.returncode != 0 or not report_path.is_file():
            print(f"error: pip could not resolve the GPU environment ({done.returncode})", file=sys.stderr)
            return 1
        versions = resolved_versions(json.loads(report_path.read_text(encoding="utf-8")))
    wrong = problems(versions)
    for line in wrong:
        print(f"error: {line}", file=sys.stderr)
    shown = ", ".join(f"{name} {versions[name]}" for name in EXPECTED if name in versions)
    print(f"resolved {len(versions)} packages in {seconds:.0f} s: {shown}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
