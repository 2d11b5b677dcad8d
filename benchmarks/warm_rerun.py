"""Cold run against warm re-run of one grid: prints both wall times and their ratio.

    python benchmarks/warm_rerun.py [--grid codecs.yaml] [--workers N]

The cold run uses a fresh output folder (no store, no caches); the warm run repeats the
same command and must encode and train nothing; a third run writes a new store on the
first run's cache (`--cache-dir`): it evaluates every cell again and must encode and train
nothing either. Times are whole processes (imports,
plotting and all), as a user sees them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(grid: Path, out: Path, workers: int, cache: Path | None = None) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "bench", "run", "--grid", str(grid), "--out", str(out),
           "--workers", str(workers), "--quiet"] + (["--cache-dir", str(cache)] if cache else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench run failed ({proc.returncode}): {proc.stderr.strip()}")
    summary = json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])
    return wall, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=Path("codecs.yaml"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        cold, s1 = timed_run(args.grid, Path(tmp) / "a", args.workers)
        warm, s2 = timed_run(args.grid, Path(tmp) / "a", args.workers)
        # a new output folder on the same cache: every cell is evaluated again, nothing is
        # encoded or trained again
        fresh, s3 = timed_run(args.grid, Path(tmp) / "b", args.workers, cache=Path(tmp) / "a" / "cache")
    print(f"cold run: {cold:.1f} s  (encodes {s1['encodes']}, trainings {s1['trainings']}, cells {s1['cells_run']})")
    print(f"warm run: {warm:.1f} s  (encodes {s2['encodes']}, trainings {s2['trainings']}, cells {s2['cells_run']})")
    print(f"new store, warm cache: {fresh:.1f} s  (encodes {s3['encodes']}, trainings {s3['trainings']}, "
          f"cells {s3['cells_run']})")
    print(f"warm / cold: {warm / cold:.3f}; new store on the warm cache / cold: {fresh / cold:.3f}")


if __name__ == "__main__":
    main()
