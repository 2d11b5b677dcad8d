from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("write report.html of a run: one self-contained page of its plots and tables (nothing is recomputed); "
        "with --markdown, print its result tables as GitHub markdown instead")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="run folder (OUT/NAME), holding results.sqlite")
    p.add_argument("--markdown", action="store_true",
                   help="print the run's result tables as GitHub markdown to stdout (what the README's tables "
                        "are: scripts/readme_results.py); writes no file")


def main(args: argparse.Namespace) -> int:
    if args.markdown:
        from bench.report.markdown import markdown_report

        print(markdown_report(args.run), end="")
        return 0
    from bench.report.html import write_report

    print(write_report(args.run))
    return 0
