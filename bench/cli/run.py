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
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: a process pool on this machine (default); ray: transcode chunks and cells as "
                        "Ray tasks (the cache must be on a path every node sees)")
    p.add_argument("--address", default=None,
                   help="the Ray cluster to join (--executor ray; default: start Ray here with --workers CPUs)")
    p.add_argument("--cell-threads", type=int, default=None,
                   help="torch threads per cell, and the CPUs a Ray cell task asks for (default: torch's default "
                        "here); results compare exactly between runs with the same value")
    p.add_argument("--pixels", default="auto", choices=("auto", "keep", "derive"),
                   help="which cache entries keep decoded pixels beside their bitstreams: auto (default: neural "
                        "codecs' only; traditional ones are decoded exactly from their streams when read), keep "
                        "(all; 10-40x the bytes), derive (none; neural images decoded again on their device)")
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
                                   workers=args.workers, force=args.force, quiet=args.quiet, argv=sys.argv,
                                   executor=args.executor, address=args.address,
                                   cell_threads=args.cell_threads, pixels=args.pixels))
    folder = run_dir(args.out, plan.grid.name)
    print(json.dumps(summary, indent=2))
    print(f"outputs: {folder}/report.html (the page: plots, ranking, leaderboard, settings), leaderboard.csv, "
          "ranking.csv (and .parquet), plots/, summary.json")
    return 0
