"""Load on the served API: 32 concurrent requests from a second process, the demo still answering.

`satori serve --backend fake --ui` (and `--backend transformers --model tiny`) runs in a child
process; this process fires 32 concurrent SATORI requests at it over loopback (each worker
sends several), checks every answer (boxes on the exact pixels for the fake server), and
meanwhile asks the demo through gradio_client. Prints throughput and latency percentiles.

Targets: zero failed requests; the demo page loads within PAGE_TARGET_S during the load and a
demo question completes (within DEMO_TARGET_S on the fake server; the tiny transformers backend
serves one request at a time, so there the demo's question waits its turn behind the load);
fake-server p95 latency under FAKE_P95_TARGET_S. Skip the transformers run with --fake-only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw  # noqa: E402

from satori_cli.serve.client import SatoriClient, interpret, prepare_image  # noqa: E402

CONCURRENCY = 32
DEMO_TARGET_S = 15.0
PAGE_TARGET_S = 5.0
FAKE_P95_TARGET_S = 5.0
BOX = (160, 120, 480, 360)


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, int, int]:
    """`satori serve ARGS --port 0 --ui --ui-port 0`; returns the process and the ports it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "satori_cli", "serve", *args, "--port", "0", "--ui", "--ui-port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    port = None
    for line in proc.stdout:
        if m := re.search(r"API ready: http://[^ ]+:(\d+)/v1", line):
            port = int(m.group(1))
        if (m := re.search(r"demo: http://[^ ]+:(\d+)", line)) and port:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining
            return proc, port, int(m.group(1))
    raise SystemExit(f"server did not start (exit {proc.wait()})")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def load(base_url: str, image: Image.Image, per_worker: int, max_tokens: int, check_box: bool) -> dict:
    client = SatoriClient(base_url, timeout=600)
    prepared = prepare_image(image)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for _ in range(per_worker):
            t = time.perf_counter()
            try:
                text = client.complete(prepared, f"where is the red box? ({i})", max_tokens=max_tokens)
                pred = interpret(text, prepared)
                if check_box and pred.boxes != (BOX,):
                    raise AssertionError(f"wrong box {pred.boxes}")
                with lock:
                    latencies.append(time.perf_counter() - t)
            except Exception as exc:
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")

    start_t = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(worker, range(CONCURRENCY)))
    wall = time.perf_counter() - start_t
    return {
        "requests": len(latencies) + len(failures),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "throughput_rps": round(len(latencies) / wall, 2),
        "p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "p95_s": round(percentile(latencies, 95), 3) if latencies else None,
        "p99_s": round(percentile(latencies, 99), 3) if latencies else None,
        "wall_s": round(wall, 2),
    }


def probe_demo(ui_url: str, image_path: Path, result: dict) -> None:
    """While the load runs, ask the demo once (page + one full /ask round trip)."""
    import httpx
    from gradio_client import Client, handle_file

    time.sleep(0.5)
    t = time.perf_counter()
    result["page_status"] = httpx.get(ui_url, timeout=60).status_code
    result["page_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    client = Client(ui_url, verbose=False)
    annotated, _, _ = client.predict(handle_file(str(image_path)), "where?", 0.0, 64, api_name="/ask")
    result["demo_s"] = round(time.perf_counter() - t, 2)
    result["demo_boxes"] = len(annotated["annotations"])


def run(
    name: str, args: list[str], per_worker: int, max_tokens: int, check_box: bool, image_path: Path
) -> dict:
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost")
    env["SATORI_HOME"] = env.get("SATORI_HOME") or tempfile.mkdtemp(prefix="satori-bench-")
    t = time.perf_counter()
    proc, port, ui_port = start(args, env)
    startup = round(time.perf_counter() - t, 1)
    demo: dict = {}
    try:
        prober = threading.Thread(
            target=lambda: probe_demo(f"http://127.0.0.1:{ui_port}/", image_path, demo), daemon=True
        )
        prober.start()
        stats = load(
            f"http://127.0.0.1:{port}/v1",
            Image.open(image_path).convert("RGB"),
            per_worker,
            max_tokens,
            check_box,
        )
        prober.join(timeout=120)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    return {"backend": name, "startup_s": startup, **stats, "demo": demo}


def main() -> int:
    fake_only = "--fake-only" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="satori-bench-img-"))
    image_path = tmp / "square.png"
    img = Image.new("RGB", (640, 480), "white")
    ImageDraw.Draw(img).rectangle((BOX[0], BOX[1], BOX[2] - 1, BOX[3] - 1), fill=(255, 0, 0))
    img.save(image_path)

    # 32 workers x 8 requests on the fake server; 32 x 1 short answers from the tiny model.
    reports = [run("fake", ["--backend", "fake"], 8, 512, True, image_path)]
    if not fake_only:
        reports.append(
            run(
                "transformers+tiny", ["--backend", "transformers", "--model", "tiny"], 1, 8, False, image_path
            )
        )

    ok = True
    header = ("backend", "req", "fail", "rps", "p50 s", "p95 s", "p99 s", "page s", "demo s")
    print(f"{header[0]:<18} " + " ".join(f"{h:>7}" for h in header[1:]))
    for r in reports:
        print(
            f"{r['backend']:<18} {r['requests']:>7} {r['failed']:>7} {r['throughput_rps']:>7} "
            f"{r['p50_s']!s:>7} {r['p95_s']!s:>7} {r['p99_s']!s:>7} "
            f"{r['demo'].get('page_s', 'n/a')!s:>7} {r['demo'].get('demo_s', 'n/a')!s:>7}"
        )
        if r["failed"]:
            print(f"  FAILED requests, first: {r['first_failure']}")
            ok = False
        demo = r["demo"]
        if demo.get("page_s") is None or demo["page_s"] > PAGE_TARGET_S or demo.get("demo_s") is None:
            print(f"  the demo was not responsive during the load: {demo}")
            ok = False
    if reports[0]["demo"].get("demo_s") is None or reports[0]["demo"]["demo_s"] > DEMO_TARGET_S:
        print(f"  the demo did not answer within {DEMO_TARGET_S} s on the fake server")
        ok = False
    fake = reports[0]
    if fake["demo"].get("demo_boxes") != 1:
        print("  the demo drew no box on the fake server's answer")
        ok = False
    if fake["p95_s"] is None or fake["p95_s"] > FAKE_P95_TARGET_S:
        print(f"  fake p95 {fake['p95_s']} s over the {FAKE_P95_TARGET_S} s target")
        ok = False
    print(json.dumps(reports))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
