"""The ``bench`` command. Library code raises; only this module turns errors into exits."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from bench.errors import BenchError

SUBCOMMANDS = ("run", "validate", "plan", "fetch", "ls", "plot", "leaderboard", "report", "train-codec")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__

    parser = argparse.ArgumentParser(prog="bench", description="What image compression costs machine vision.")
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"bench.cli.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(handler=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        # a process started in the background by a shell inherits SIGINT ignored; `kill -INT`
        # must still stop a run cleanly (finished cells kept, the resume hint printed)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BenchError as exc:
        for line in str(exc).splitlines() or [exc.__class__.__name__]:
            print(f"bench: error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("bench: interrupted; finished cells are stored. Run the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
