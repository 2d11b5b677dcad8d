from __future__ import annotations

import argparse
from pathlib import Path

HELP = "rebuild leaderboard.csv of a run from its results store (nothing is recomputed)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="run folder (OUT/NAME), holding results.sqlite")


def main(args: argparse.Namespace) -> int:
    from bench.report import write_leaderboard

    print(write_leaderboard(args.run))
    return 0
