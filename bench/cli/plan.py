from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

HELP = "the bill before a run: images to encode, decode and train on, cache bytes and hours expected here"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", required=True, help="grid YAML file")
    p.add_argument("--out", default="results", type=Path, help="output root the run will use (default: results/)")
    p.add_argument("--cache-dir", type=Path, default=None, help="the run's cache (default: OUT/cache)")
    p.add_argument("--device", default="auto", help="the run's device: cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the run's worker processes")
    p.add_argument("--sample", type=int, default=8, help="val images each codec and setting is probed on (default 8)")
    p.add_argument("--json", type=Path, default=None, help="also write the bill as JSON to this file")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def _time(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str, Any]]) -> list[str]:
    cells = [[head for head, _, _ in cols]] + [[fmt(r[key]) for _, key, fmt in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return ["  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in cells]


def render(bill: Any) -> str:
    n = "{:,}".format
    lines = [f"plan for {bill.grid}: {bill.cells} cells, {bill.pending} to compute; device {bill.device}, "
             f"{bill.workers} workers; codecs probed on {bill.sample} val images each", "", "splits (read and fingerprinted)"]
    lines += _table(bill.splits, [("dataset", "dataset", str), ("split", "split", str), ("images", "images", n),
                                  ("Mpixels", "pixels", lambda v: f"{v / 1e6:,.1f}")])
    t = bill.transcode
    lines += ["", f"transcode: {len(t.rows) and int(t.total('sets'))} sets, {n(int(t.total('images')))} images to "
                  f"encode and decode; cache {_size(t.total('cache_bytes'))}, {_time(t.total('wall_s'))}"]
    if t.rows:
        lines += _table(t.rows, [("codec", "codec", str), ("setting", "setting", str), ("sets", "sets", n),
                                 ("images", "images", n), ("bpp", "bpp", lambda v: f"{v:.3f}"),
                                 ("from", "rate_from", str), ("cache", "cache_bytes", _size),
                                 ("CPU", "cpu_s", _time), ("wall", "wall_s", _time)])
    tr = bill.training
    lines += ["", f"training: {int(tr.total('trainings'))} trainings, {n(int(tr.total('image_epochs')))} images × "
                  f"epochs, {_time(tr.total('wall_s'))}"]
    if tr.rows:
        lines += _table(tr.rows, [("experiment", "experiment", str), ("model", "model", str),
                                  ("scenario", "scenario", str), ("trainings", "trainings", n),
                                  ("images", "images", n), ("epochs", "epochs", n),
                                  ("ms/image", "s_per_image", lambda v: f"{1000 * v:.2f}"), ("wall", "wall_s", _time)])
    ev, dec = bill.evaluation, bill.decoding
    lines += ["", f"evaluation: {int(ev.total('cells'))} cells, {n(int(ev.total('images')))} images, "
                  f"{_time(ev.total('wall_s'))}",
              f"decoding on read: {n(int(dec.total('images')))} images decoded again from cached streams, "
              f"{_time(dec.total('wall_s'))}", "",
              f"expected: cache {_size(bill.cache_bytes())}, about {_time(bill.hours() * 3600)} on this machine "
              "(estimates from the probes; D training timed as its pixel network's, an upper bound)"]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from bench.config import load_grid
    from bench.errors import BenchError
    from bench.grid import resolve
    from bench.plan import make_bill
    from bench.runner import resolve_device

    if args.workers < 1:
        raise BenchError(f"--workers {args.workers}: must be at least 1")
    if args.sample < 1:
        raise BenchError(f"--sample {args.sample}: must be at least 1")
    plan = resolve(load_grid(args.grid), args.grid)
    bill = make_bill(plan, args.out, args.cache_dir, resolve_device(args.device), args.workers, args.sample)
    print(render(bill))
    if args.json is not None:
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps(bill.as_dict(), indent=2, default=float))
        os.replace(tmp, args.json)
    return 0
