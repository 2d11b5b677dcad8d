from __future__ import annotations

import argparse

HELP = "check a grid file (names, parameters, files, programs) without running anything"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", required=True, help="grid YAML file")


def main(args: argparse.Namespace) -> int:
    from bench.config import load_grid
    from bench.grid import resolve

    plan = resolve(load_grid(args.grid), args.grid)
    print(f"{args.grid}: ok ({len(plan.experiments)} experiments, {len(plan.cells)} cells)")
    return 0
