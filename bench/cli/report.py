from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write report.html of a run: one self-contained page of its plots and tables (nothing is recomputed)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="run folder (OUT/NAME), holding results.sqlite")


def main(args: argparse.Namespace) -> int:
    from bench.report.html import write_report

    print(write_report(args.run))
    return 0
