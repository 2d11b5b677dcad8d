from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

HELP = "run every cell of a grid (finished cells are skipped) and write the outputs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", required=True, help="grid YAML file")
    p.add_argument("--out", default="results", type=Path, help="output root (default: results/)")
    p.add_argument("--cache-dir", type=Path, default=None, help="transcode and weights cache (default: OUT/cache)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes for traditional codecs (default: number of cores)")
    p.add_argument("--force", action="store_true", help="recompute finished cells, transcodes and trainings")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    from bench.config import load_grid
    from bench.errors import BenchError
    from bench.grid import resolve
    from bench.runner import RunOptions, run, run_dir

    # a scheduler's SIGTERM stops a run like Ctrl-C: the stop is recorded, finished cells kept
    signal.signal(signal.SIGTERM, _stop)
    if args.workers < 1:
        raise BenchError(f"--workers {args.workers}: must be at least 1")
    plan = resolve(load_grid(args.grid), args.grid)
    summary = run(plan, RunOptions(out=args.out, cache_dir=args.cache_dir, device=args.device,
                                   workers=args.workers, force=args.force, quiet=args.quiet, argv=sys.argv))
    folder = run_dir(args.out, plan.grid.name)
    print(json.dumps(summary, indent=2))
    print(f"outputs: {folder}/report.html (the page: plots, ranking, leaderboard, settings), leaderboard.csv, "
          "ranking.csv (and .parquet), plots/, summary.json")
    return 0
