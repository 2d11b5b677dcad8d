"""bench's transcode stage against a bare Pillow loop doing the same work.

The loop: every Kodak image read once, then for each codec and quality encoded with
`Image.save` into memory, decoded with `Image.open`, and measured (PSNR in NumPy,
MS-SSIM with pytorch-msssim on float32, as bench does). bench: a run's transcode stage
(`Workbench`, one process like the loop: the split read and fingerprinted, every set
transcoded and written to a fresh cache). Each side is timed in a fresh process of its own
after a warm-up of that side (imports and grid resolution excluded): run after the other in
one process, a side inherits the other's heap, and the same MS-SSIM convolutions were
measured 30-50 % slower that way. Twice each, in turn; the best of each is compared.
Printed: both wall times and the overhead ratio (goal ≤ 1.10), the loop's time without
MS-SSIM (what the metrics cost), and bench's time on every core.

    python benchmarks/pillow_overhead.py [--kodak DIR] [--qualities 10 50 90]
"""

from __future__ import annotations

import argparse
import io
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_msssim import ms_ssim

from bench.cache import Cache
from bench.config import parse_grid
from bench.grid import Plan, resolve
from bench.progress import Progress
from bench.runner import _transcode_stage
from bench.workbench import Workbench

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"
FORMATS = {"jpeg": "JPEG", "webp": "WEBP"}


def pillow_loop(paths: list[Path], qualities: list[int], with_ms_ssim: bool = True) -> tuple[float, float]:
    """The loop's wall time and its mean PSNR (a check that it did the work)."""
    t0 = time.perf_counter()
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    psnrs = []
    for fmt in FORMATS.values():
        for q in qualities:
            for im in images:
                buf = io.BytesIO()
                Image.fromarray(im).save(buf, fmt, quality=q)
                rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
                mse = np.mean((im.astype(np.float64) - rec.astype(np.float64)) ** 2)
                psnrs.append(10 * math.log10(255**2 / mse))
                if with_ms_ssim:
                    a = torch.tensor(im, dtype=torch.float32).permute(2, 0, 1)[None]
                    b = torch.tensor(rec, dtype=torch.float32).permute(2, 0, 1)[None]
                    with torch.no_grad():
                        ms_ssim(a, b, data_range=255.0)
    return time.perf_counter() - t0, float(np.mean(psnrs))


def plan_of(kodak: Path, qualities: list[int]) -> Plan:
    grid = {"name": "pillow-overhead", "codecs": [{"codec": c, "qualities": qualities} for c in FORMATS],
            "experiments": [{"task": "classification", "dataset": {"name": "photos", "path": str(kodak)},
                             "model": {"name": "efficientnet-lite0"}, "scenarios": ["B"]}]}
    return resolve(parse_grid(grid))


def bench_stage(plan: Plan, qualities: list[int], workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bench = Workbench(plan, Cache(tmp), "cpu", workers, False, Progress(quiet=True))
        try:
            cells = bench.key_cells(plan.cells)  # reads and fingerprints the split
            _transcode_stage(bench, cells)
        finally:
            bench.close()
        wall = time.perf_counter() - t0
        exp = plan.experiments[0]
        mean_psnr = float(np.mean([bench.transcodes.get(exp, "val", c, q).psnr for c in FORMATS for q in qualities]))
    return wall, mean_psnr


def measure(side: str, kodak: Path, qualities: list[int]) -> tuple[float, float]:
    """One side's wall time and mean PSNR, in this (fresh) process after a warm-up of the
    same side: the loop and bench each start from an interpreter and an allocator of their own."""
    paths = sorted(kodak.glob("*.png"))
    torch.set_num_threads(1)  # one process, one thread: the same budget on both sides
    if side == "loop":
        pillow_loop(paths, qualities[:1])
        return pillow_loop(paths, qualities)
    if side == "bare":
        return pillow_loop(paths, qualities, with_ms_ssim=False)
    plan = plan_of(kodak, qualities)
    workers = 1 if side == "bench" else os.cpu_count() or 1
    bench_stage(plan_of(kodak, qualities[:1]), qualities[:1], workers)
    return bench_stage(plan, qualities, workers)


def in_fresh_process(side: str, kodak: Path, qualities: list[int]) -> tuple[float, float]:
    out = subprocess.run([sys.executable, __file__, "--side", side, "--kodak", str(kodak), "--qualities",
                          *map(str, qualities)], check=True, capture_output=True, text=True).stdout
    wall, psnr = out.split()[-2:]
    return float(wall), float(psnr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--qualities", type=int, nargs="+", default=[10, 50, 90])
    ap.add_argument("--side", choices=["loop", "bench", "bare", "wide"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:  # one measurement, in a process of its own
        wall, psnr = measure(args.side, args.kodak, args.qualities)
        print(f"{wall} {psnr}")
        return
    loops, stages = [], []
    for _ in range(2):  # in turn, so that a drift of the machine's speed hits both sides alike
        loops.append(in_fresh_process("loop", args.kodak, args.qualities))
        stages.append(in_fresh_process("bench", args.kodak, args.qualities))
    (loop, loop_psnr), (stage, stage_psnr) = min(loops), min(stages)
    bare, _ = in_fresh_process("bare", args.kodak, args.qualities)
    cores = os.cpu_count() or 1
    wide, _ = in_fresh_process("wide", args.kodak, args.qualities)
    n = len(sorted(args.kodak.glob("*.png"))) * len(args.qualities) * len(FORMATS)
    print(f"{n} transcodes (jpeg, webp × qualities {args.qualities} × Kodak), one process each side, "
          "each run in a fresh process after a warm-up:")
    print(f"  runs: loop {', '.join(f'{t:.1f}' for t, _ in loops)} s; bench {', '.join(f'{t:.1f}' for t, _ in stages)} s")
    print(f"  Pillow loop {loop:6.1f} s   bench {stage:6.1f} s   overhead {stage / loop:.2f}x (goal <= 1.10)"
          f"   mean PSNR {loop_psnr:.3f} / {stage_psnr:.3f} dB")
    print(f"  the loop without MS-SSIM: {bare:.1f} s; bench with {cores} workers: {wide:.1f} s "
          f"({loop / wide:.2f}x the one-process loop's speed)")


if __name__ == "__main__":
    main()
