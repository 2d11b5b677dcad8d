from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("rebuild leaderboard.csv/.parquet, ranking.csv/.parquet (Bjøntegaard deltas against the anchor) and "
        "scenario D's costs.csv of a run from its results store (nothing is recomputed)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="run folder (OUT/NAME), holding results.sqlite")


def main(args: argparse.Namespace) -> int:
    from bench.report import write_costs, write_leaderboard, write_ranking

    print(write_leaderboard(args.run))
    print(write_ranking(args.run))
    if (costs := write_costs(args.run)) is not None:
        print(costs)
    return 0
