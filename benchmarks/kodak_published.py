"""The Kodak rate–distortion grid against CompressAI's published curves.

Runs ``examples/kodak_rd.yaml`` (jpeg, webp, jpeg2000 and jpegxl on the 24 Kodak images, no
task model) with ``bench run`` — or reads a finished run with ``--run`` — and compares the
CompressAI-layout JSON bench wrote for jpeg and webp with CompressAI's published
``jpeg.json`` / ``webp.json`` point by point (same Pillow quality): the largest relative bpp
difference and the largest PSNR difference (goal: within 0.5 % and 0.15 dB at every point).
Then it prints the run's PSNR ranking: BD-rate against JPEG with its 95 % bootstrap
interval over the images, the published curves among the codecs.

    python benchmarks/kodak_published.py [--out results] [--run results/kodak-rd]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from bench.cli import main as bench

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "examples" / "kodak_rd.yaml"
REFERENCE = ROOT.parent / "shared" / "data" / "reference"
#: CompressAI's published Pillow curves are at qualities 5, 10, ..., 95.
PUBLISHED_QUALITIES = list(range(5, 100, 5))


def compare(run: Path, codec: str) -> tuple[int, float, float]:
    """(points compared, largest |bpp / published − 1|, largest |PSNR − published| in dB)."""
    ours = json.loads((run / "compressai" / "photos-kodak" / f"{codec}.json").read_text())["results"]
    published = json.loads((REFERENCE / f"{codec}.json").read_text())["results"]
    worst_bpp = worst_psnr = 0.0
    for i, q in enumerate(ours["quality"]):
        j = PUBLISHED_QUALITIES.index(q)
        worst_bpp = max(worst_bpp, abs(ours["bpp"][i] / published["bpp"][j] - 1))
        worst_psnr = max(worst_psnr, abs(ours["psnr-rgb"][i] - published["psnr-rgb"][j]))
    return len(ours["quality"]), worst_bpp, worst_psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results"), help="output root of the run")
    ap.add_argument("--run", type=Path, help="a finished run folder: compare it, run nothing")
    args = ap.parse_args()
    run = args.run
    if run is None:
        t0 = time.perf_counter()
        if bench(["run", "--grid", str(GRID), "--out", str(args.out), "--quiet"]) != 0:
            raise SystemExit("bench run failed")
        print(f"bench run --grid examples/kodak_rd.yaml: {time.perf_counter() - t0:.0f} s")
        run = args.out / "kodak-rd"
    print("bench's JSON against CompressAI's published Kodak points (same Pillow quality):")
    for codec in ("jpeg", "webp"):
        n, bpp, psnr = compare(run, codec)
        print(f"  {codec}: {n} points; largest bpp difference {bpp:.3%} (goal < 0.5 %), "
              f"largest PSNR difference {psnr:.3f} dB (goal < 0.15)")
    ranking = pd.read_csv(run / "ranking.csv")
    rows = ranking[(ranking.task == "fidelity") & (ranking.metric == "psnr")]
    print("\nBD-rate against jpeg on PSNR (PCHIP; 95 % bootstrap interval over the 24 images):")
    for r in rows.itertuples():
        ci = "" if pd.isna(r.bd_rate_ci_low) else f" [{r.bd_rate_ci_low:+.1f}, {r.bd_rate_ci_high:+.1f}]"
        mark = " *" if r.significant is True else ""
        print(f"  {r.codec:28s} {r.bd_rate:+7.1f} %{ci}{mark}   BD-PSNR {r.bd_metric:+.2f} dB   "
              f"overlap {r.overlap:.0%}")
    print("  (* : the interval excludes 0)")


if __name__ == "__main__":
    main()
