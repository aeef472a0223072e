"""Benchmark `satori data prepare`: rows per second and peak memory on embedded-image parquet.

Setup (not timed): 12,000 synthetic rows of 640x480 PNGs embedded in parquet, and the first
3,000 of them as a second file. Each `prepare` runs in a fresh process that reports its own
time, CPU time and peak RSS, so the two sizes can be compared: memory must stay flat in the number of
rows (the run streams), and the speed must reach the target. The small file is also run on
one thread, to show what the image-check threads bring. Rows per CPU second (the CPU time of
all the run's threads) do not depend on what else the machine runs.

Then the price of checking an image, per image in CPU milliseconds (load-independent): a PNG
checked through its chunk CRCs only (PIL `verify()`, what satori did before) against the full
decode `prepare` now does (pixel data that does not inflate is caught only so), for the
synthetic shapes and for a photo-like PNG; and a photo-like JPEG decoded at 1/8 scale.

    python benchmarks/bench_data.py [--rows 12000]

Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_ROWS_PER_S = 500
MAX_RSS_GROWTH_MB = 64  # peak RSS of the big run minus the small one

CHILD = """
import json, resource, sys, time
from satori_cli.data.prepare import prepare_dataset
start, cpu = time.perf_counter(), time.process_time()
result = prepare_dataset(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]) or None)
seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": result.rows_in, "written": result.written, "seconds": seconds, "rss_mb": rss_mb,
                  "cpu_s": cpu_s}))
"""


def run_prepare(src: Path, out: Path, workers: int = 0) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(out), str(workers)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12_000)
    args = parser.parse_args()
    import pyarrow.parquet as pq

    from satori_cli.data.sample import write_sample

    small_rows = max(1, args.rows // 4)
    with tempfile.TemporaryDirectory(prefix="satori-bench-data-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        big = write_sample(tmp / "big", n=args.rows, seed=0, form="parquet", size=(640, 480))
        small = tmp / "small" / "data.parquet"
        small.parent.mkdir()
        pq.write_table(pq.read_table(big).slice(0, small_rows), small, row_group_size=256)
        size_mb = big.stat().st_size / 2**20
        print(
            f"setup: {args.rows} rows of 640x480 PNG in parquet ({size_mb:.0f} MiB) "
            f"in {time.perf_counter() - start:.0f} s"
        )
        results = {}
        from satori_cli.data.prepare import default_workers

        runs = (("small", small, 0), ("big", big, 0), ("small, 1 thread", small, 1))
        for name, src, workers in runs:
            results[name] = r = run_prepare(src, tmp / f"out-{name}", workers)
            assert r["written"] == r["rows"], r
            print(
                f"prepare {r['rows']:>6} rows, {workers or default_workers()} threads: "
                f"{r['seconds']:6.1f} s  "
                f"{r['rows'] / r['seconds']:7.0f} rows/s  "
                f"({r['rows'] / r['cpu_s']:5.0f} rows per CPU second)  "
                f"peak RSS {r['rss_mb']:6.0f} MiB"
            )
    check_costs()
    big_r, small_r = results["big"], results["small"]
    rate = big_r["rows"] / big_r["seconds"]
    growth = big_r["rss_mb"] - small_r["rss_mb"]
    ok_rate, ok_mem = rate >= TARGET_ROWS_PER_S, growth <= MAX_RSS_GROWTH_MB
    print(f"speed:  {rate:.0f} rows/s (target >= {TARGET_ROWS_PER_S}) {'ok' if ok_rate else 'MISSED'}")
    print(
        f"memory: +{growth:.0f} MiB peak RSS from {small_r['rows']} to {big_r['rows']} rows "
        f"(target <= {MAX_RSS_GROWTH_MB}) {'ok' if ok_mem else 'MISSED'}"
    )
    return 0 if ok_rate and ok_mem else 1


def check_costs(repeat: int = 100) -> None:
    """CPU ms per image: CRC-only verify() against the full decode `prepare` does."""
    import io
    import random

    from PIL import Image, ImageFilter

    from satori_cli.data.images import decode_size
    from satori_cli.data.sample import make_row

    _, shapes = make_row(0, random.Random(0), (640, 480))
    photo = Image.effect_noise((640, 480), 40).convert("RGB").filter(ImageFilter.GaussianBlur(1))

    def encoded(fmt: str) -> bytes:
        buf = io.BytesIO()
        photo.save(buf, fmt)
        return buf.getvalue()

    def cpu_ms(fn, data: bytes) -> float:
        start = time.process_time()
        for _ in range(repeat):
            fn(data)
        return (time.process_time() - start) / repeat * 1000

    def verify(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()

    print("image check, CPU ms per 640x480 image (CRC-only verify -> full decode as prepare does):")
    for name, data in (("synthetic PNG", shapes), ("photo-like PNG", encoded("PNG"))):
        crc, full = cpu_ms(verify, data), cpu_ms(lambda d: decode_size(data=d), data)
        print(f"  {name:15s} {len(data) >> 10:5d} KiB  {crc:6.2f} -> {full:6.2f} ms  ({full / crc:.0f}x)")
    jpeg = encoded("JPEG")
    jpeg_ms = cpu_ms(lambda d: decode_size(data=d), jpeg)
    print(f"  {'photo-like JPEG':15s} {len(jpeg) >> 10:5d} KiB  1/8-scale decode {jpeg_ms:6.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
