"""Put a run's result tables into the README: every block between the markers becomes exactly
the text ``bench report --markdown RUN`` prints (with a blank line on either side).

    python scripts/readme_results.py results/default                # rewrite README.md's blocks
    python scripts/readme_results.py results/default --check        # exit 1 if they differ

The markers are the lines ``<!-- bench report --markdown: BEGIN -->`` and
``<!-- bench report --markdown: END -->``. Exit status: 0 written or up to date, 1 a block
differs (``--check``), 2 an error (no store, no markers, a marker without its pair).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bench.errors import BenchError
from bench.report import atomic_write_text
from bench.report.markdown import markdown_report

BEGIN = "<!-- bench report --markdown: BEGIN -->"
END = "<!-- bench report --markdown: END -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def replace_blocks(text: str, block: str, name: str) -> tuple[str, int]:
    """``text`` with the body of every BEGIN … END pair replaced by ``block``, and the number
    of pairs. The markers must alternate, BEGIN first: a lone or nested marker is an error.
    A blank line separates the block from each marker: a table runs on to the next line
    that is not blank, the END marker's included."""
    markers = list(re.finditer(re.escape(BEGIN) + "|" + re.escape(END), text))
    if not markers:
        raise BenchError(f"{name}: no '{BEGIN}' … '{END}' markers to put the results between")
    for i, m in enumerate(markers):
        expected = BEGIN if i % 2 == 0 else END
        if m.group() != expected:
            line = text.count("\n", 0, m.start()) + 1
            raise BenchError(f"{name}:{line}: '{m.group()}' where '{expected}' was expected "
                             "(each BEGIN needs its END, and blocks do not nest)")
    if len(markers) % 2:
        line = text.count("\n", 0, markers[-1].start()) + 1
        raise BenchError(f"{name}:{line}: '{BEGIN}' without its '{END}'")
    out, pos = [], 0
    for begin, end in zip(markers[::2], markers[1::2]):
        out += [text[pos:begin.end()], "\n\n", block, "\n"]
        pos = end.start()
    out.append(text[pos:])
    return "".join(out), len(markers) // 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder (OUT/NAME), holding results.sqlite")
    parser.add_argument("--readme", type=Path, default=README, help=f"the file to update (default {README})")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a block differs from what the run's store gives")
    args = parser.parse_args(argv)
    try:
        if not args.readme.is_file():
            raise BenchError(f"{args.readme}: no such file")
        old = args.readme.read_text()
        new, blocks = replace_blocks(old, markdown_report(args.run), str(args.readme))
    except BenchError as exc:
        print(f"readme_results: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != old:
            print(f"{args.readme}: the results block differs from `bench report --markdown {args.run}`; "
                  f"run `python scripts/readme_results.py {args.run}` to update it", file=sys.stderr)
            return 1
        print(f"{args.readme}: {blocks} block(s) up to date with {args.run}")
        return 0
    if new != old:
        atomic_write_text(args.readme, new)
    print(f"{args.readme}: {blocks} block(s) from {args.run}{'' if new != old else ' (unchanged)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
