"""bench's transcode stage against a bare Pillow loop doing the same work.

The loop: every Kodak image read once, then for each codec and quality encoded with
`Image.save` into memory, decoded with `Image.open`, and measured (PSNR in NumPy,
MS-SSIM with pytorch-msssim on float32, as bench does). bench: a run's transcode stage
(`Workbench`, one process like the loop: the split read and fingerprinted, every set
transcoded and written to a fresh cache). Both are timed in this process after a warm-up,
imports and grid resolution excluded, twice each in turn; the best of each is compared.
Printed: both wall times and the overhead ratio (goal ≤ 1.10), the loop's time without
MS-SSIM (what the metrics cost), and bench's time on every core.

    python benchmarks/pillow_overhead.py [--kodak DIR] [--qualities 10 50 90]
"""

from __future__ import annotations

import argparse
import io
import math
import os
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--qualities", type=int, nargs="+", default=[10, 50, 90])
    args = ap.parse_args()
    paths = sorted(args.kodak.glob("*.png"))
    plan = plan_of(args.kodak, args.qualities)
    torch.set_num_threads(1)  # one process, one thread: the same budget on both sides
    pillow_loop(paths[:2], [50])  # warm-up: first calls into Pillow and torch
    loops, stages = [], []
    for _ in range(2):
        loops.append(pillow_loop(paths, args.qualities))
        stages.append(bench_stage(plan, args.qualities, workers=1))
    (loop, loop_psnr), (stage, stage_psnr) = min(loops), min(stages)
    bare, _ = pillow_loop(paths, args.qualities, with_ms_ssim=False)
    cores = os.cpu_count() or 1
    wide, _ = bench_stage(plan, args.qualities, workers=cores)
    n = len(paths) * len(args.qualities) * len(FORMATS)
    print(f"{n} transcodes (jpeg, webp × qualities {args.qualities} × {len(paths)} Kodak images), one process:")
    print(f"  runs: loop {', '.join(f'{t:.1f}' for t, _ in loops)} s; bench {', '.join(f'{t:.1f}' for t, _ in stages)} s")
    print(f"  Pillow loop {loop:6.1f} s   bench {stage:6.1f} s   overhead {stage / loop:.2f}x (goal <= 1.10)"
          f"   mean PSNR {loop_psnr:.3f} / {stage_psnr:.3f} dB")
    print(f"  the loop without MS-SSIM: {bare:.1f} s; bench with {cores} workers: {wide:.1f} s "
          f"({loop / wide:.2f}x the one-process loop's speed)")


if __name__ == "__main__":
    main()
