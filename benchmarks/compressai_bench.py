"""bench's transcode stage against CompressAI's own `compressai.utils.bench` on Kodak.

Both code the 24 Kodak images with Pillow's JPEG and WebP at CompressAI's 19 qualities
(5, 10, …, 95) on the same number of processes, and both measure bpp (8 × the stream's
bytes / pixels), PSNR and MS-SSIM (RGB) per image. bench's side is a run's real transcode
stage (`Workbench` with its process pool, per-image fidelity, and every set written to
a fresh cache); CompressAI's side is its `collect()`, the function behind
`python -m compressai.utils.bench jpeg DIR -q 5,10,...`. Both are timed in this process,
imports excluded. Printed per codec: both wall times, their ratio (goal ≤ 0.7) and the
largest difference between the two tables (means over images, per quality).

    python benchmarks/compressai_bench.py [--kodak DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.cache import Cache
from bench.config import parse_grid
from bench.grid import resolve
from bench.progress import Progress
from bench.runner import _transcode_stage
from bench.workbench import Workbench

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"
QUALITIES = list(range(5, 100, 5))  # CompressAI's 19 points


def run_bench(codec: str, kodak: Path, workers: int) -> tuple[float, dict[int, dict[str, float]]]:
    grid = {"name": "compressai-bench", "codecs": [{"codec": codec, "qualities": QUALITIES}],
            "experiments": [{"task": "classification", "dataset": {"name": "photos", "path": str(kodak)},
                             "model": {"name": "efficientnet-lite0"}, "scenarios": ["B"]}]}
    plan = resolve(parse_grid(grid))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bench = Workbench(plan, Cache(tmp), "cpu", workers, False, Progress(quiet=True))
        try:
            cells = bench.key_cells(plan.cells)  # reads the 24 PNGs (part of the work)
            _transcode_stage(bench, cells)
        finally:
            bench.close()
        wall = time.perf_counter() - t0
        exp = plan.experiments[0]
        table = {q: bench.transcodes.get(exp, "val", codec, q).summary() for q in QUALITIES}
    return wall, table


def run_compressai(codec: str, kodak: Path, workers: int) -> tuple[float, dict[int, dict[str, float]]]:
    from compressai.utils.bench.__main__ import collect
    from compressai.utils.bench.codecs import JPEG, WebP

    cls = {"jpeg": JPEG, "webp": WebP}[codec]
    t0 = time.perf_counter()
    out = collect(cls(SimpleNamespace()), str(kodak), QUALITIES, ["psnr-rgb", "ms-ssim-rgb"], workers)
    wall = time.perf_counter() - t0
    table = {q: {"bpp": out["bpp"][i], "psnr": out["psnr-rgb"][i], "ms_ssim": out["ms-ssim-rgb"][i]}
             for i, q in enumerate(QUALITIES)}
    return wall, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--workers", type=int, default=2, help="processes on both sides (default 2)")
    ap.add_argument("--codecs", nargs="+", default=["jpeg", "webp"])
    args = ap.parse_args()
    print(f"{len(QUALITIES)} qualities × {len(list(args.kodak.glob('*.png')))} images, {args.workers} processes each")
    for codec in args.codecs:
        t_ca, ca = run_compressai(codec, args.kodak, args.workers)
        t_b, b = run_bench(codec, args.kodak, args.workers)
        diff = {m: max(abs(b[q][m] - ca[q][m]) for q in QUALITIES) for m in ("bpp", "psnr", "ms_ssim")}
        print(f"{codec:5s} compressai.utils.bench {t_ca:7.1f} s   bench {t_b:7.1f} s   ratio {t_b / t_ca:.2f} "
              f"(goal <= 0.70)   largest difference: bpp {diff['bpp']:.1e}, PSNR {diff['psnr']:.1e} dB, "
              f"MS-SSIM {diff['ms_ssim']:.1e}")
        mean_b = np.mean([b[q]["bpp"] for q in QUALITIES])
        print(f"      mean bpp over the 19 points: {mean_b:.4f} (mean of per-image bpp at each quality)")


if __name__ == "__main__":
    main()
