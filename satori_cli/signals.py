"""Stop signals that mean the same as Ctrl-C.

`kill PID` (SIGTERM) and a closed terminal or SSH session (SIGHUP) end a Python process on the
spot by default: no `finally` runs, so a server child outlives `satori serve` and a download
leaves its half-written file behind. Raised as KeyboardInterrupt instead, they take the Ctrl-C
path: children are stopped, libraries clean up, and satori exits 130.
"""

from __future__ import annotations

import signal


def interrupt_on_stop_signals() -> None:
    """From now on SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):  # no SIGHUP on Windows
            signal.signal(getattr(signal, name), handler)
