from __future__ import annotations

import argparse
import sys
from collections import Counter

HELP = ("download every weight file a grid needs (torchvision models, CompressAI zoo codecs) into the "
        "torch hub cache, once, before a run")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", required=True, help="grid YAML file")
    p.add_argument("--dry-run", action="store_true",
                   help="list the files and whether they are present; download nothing")


def main(args: argparse.Namespace) -> int:
    from bench.config import load_grid
    from bench.errors import BenchError
    from bench.weights import fetch_all, grid_weight_files

    files = grid_weight_files(load_grid(args.grid), args.grid)
    if not files:
        print(f"{args.grid}: no weight files: its models and codecs read none")
        return 0
    failures, counts = [], Counter()
    for f, state, error in fetch_all(files, dry_run=args.dry_run, progress=sys.stderr.isatty()):
        source = f" from {f.url}" if f.url is not None and state in ("missing", "fetched") else ""
        print(f"{state:8} {f.path}  ({f.what}{source})", flush=True)
        counts[state] += 1
        if error is not None:
            failures.append(error)
    tally = ", ".join(f"{n} {state}" for state, n in counts.items())
    print(f"{args.grid}: {len(files)} weight file{'' if len(files) == 1 else 's'}: {tally}")
    if failures:
        raise BenchError("\n".join(failures))
    return 0
