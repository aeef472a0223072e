"""Run every benchmark (`benchmarks/bench_*.py`) in turn; `make bench` calls this.

Each benchmark is a standalone script that prints its own report and exits non-zero when a
target is missed, so one can also run a single one: `python benchmarks/bench_help.py`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    selected = set(argv)
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        if selected and script.stem not in selected and script.stem.removeprefix("bench_") not in selected:
            continue
        print(f"\n=== {script.stem} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(
            f"--- {script.stem}: {'ok' if code == 0 else f'FAILED ({code})'} "
            f"in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        if code:
            failed.append(script.stem)
    if failed:
        print(f"\nmissed targets or failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
