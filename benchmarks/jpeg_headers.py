"""How much of a grid's JPEG streams is container and tables, at each of its qualities.

For every JPEG codec of the grid, every quality, and the val split of every dataset the
grid runs it on, the streams are made as the run makes them (the grid's codec with its
parameters: byte for byte the run's streams) and split at the start-of-scan marker's
header: everything but the entropy-coded scan data (SOI, APP0, DQT, SOF, DHT, SOS, EOI)
counts as header. Printed as a markdown table: the mean per-image bpp, the header's bpp
and its share of all the bytes (sum of header bytes / sum of stream bytes).

    python benchmarks/jpeg_headers.py [--grid codecs.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.config import load_grid
from bench.grid import resolve

ROOT = Path(__file__).resolve().parent.parent
EOI = 2


def header_bytes(stream: bytes) -> int:
    """Bytes of a baseline JPEG stream outside its entropy-coded scan data."""
    if stream[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG stream (no SOI marker)")
    i = 2
    while i + 4 <= len(stream):
        if stream[i] != 0xFF:
            raise ValueError(f"no marker at byte {i}")
        marker, length = stream[i + 1], int.from_bytes(stream[i + 2 : i + 4], "big")
        i += 2 + length
        if marker == 0xDA:  # start of scan: its header ends here, the scan data follows
            return i + EOI
    raise ValueError("no start-of-scan marker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=ROOT / "codecs.yaml")
    args = parser.parse_args()
    plan = resolve(load_grid(args.grid), str(args.grid))
    done: set[tuple[str, str]] = set()
    print("| codec | quality | dataset (val) | images | bpp (mean per image) | header bpp | header share of the bytes |")
    print("|---|---|---|---|---|---|---|")
    for exp in plan.experiments:
        for rc in exp.codecs:
            if rc.codec.name != "jpeg" or (rc.label, exp.dataset.label()) in done:
                continue
            done.add((rc.label, exp.dataset.label()))
            images = exp.dataset.load("val").images
            pixels = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
            for point in rc.points:
                streams = rc.codec.encode(images, point)
                sizes = np.array([len(s) for s in streams], dtype=np.float64)
                headers = np.array([header_bytes(s) for s in streams], dtype=np.float64)
                print(f"| {rc.label} | {point.quality} | {exp.dataset.label()} | {len(images)} "
                      f"| {np.mean(8 * sizes / pixels):.3f} | {np.mean(8 * headers / pixels):.3f} "
                      f"| {headers.sum() / sizes.sum():.1%} |")


if __name__ == "__main__":
    main()
