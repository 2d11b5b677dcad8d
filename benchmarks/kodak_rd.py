"""Rate–distortion of the embedded neural codecs on Kodak, against JPEG.

Every embedded model (hyperprior, mean-scale and gmm families, qualities 1–3) and Pillow's
JPEG at a sweep of qualities code the 24 Kodak images through bench's own codecs and
transcode path (real bitstreams; the neural headers are counted). Per operating point it
prints the mean of per-image bpp, the mean of per-image PSNR (RGB, 8-bit) and MS-SSIM,
whether each embedded curve is monotone (more bits, more PSNR), and the Bjøntegaard deltas
against JPEG on the PSNR curve (PCHIP over log-rate on the overlapping PSNR range, the JVET
convention): BD-rate (negative: fewer bits than JPEG at equal PSNR) and BD-PSNR.

    python benchmarks/kodak_rd.py [--kodak DIR] [--plot docs/kodak_rd.png] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.codecs import CODECS, OperatingPoint
from bench.images import load_image
from bench.metrics.bd import bd_metric, bd_rate
from bench.train_codec import folder_images
from bench.transcode import transcode_chunk

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"
JPEG_QUALITIES = [3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 75, 90]
NEURAL = {"hyperprior": "bmshj2018-hyperprior", "mean-scale": "mbt2018-mean", "gmm": "gmm-hyperprior"}


def measure(codec_name: str, qualities: list[int], images: list[np.ndarray], **params) -> list[dict]:
    codec = CODECS.get(codec_name)(**params)
    rows = []
    for q in qualities:
        t0 = time.perf_counter()
        r = transcode_chunk(codec, OperatingPoint(q), images)
        bpp = [8 * len(s) / (im.shape[0] * im.shape[1]) for s, im in zip(r.streams, images)]
        rows.append({"quality": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(r.psnr)),
                     "ms_ssim": float(np.mean(r.ms_ssim)), "enc_ms": 1000 * float(np.mean(r.encode_s)),
                     "dec_ms": 1000 * float(np.mean(r.decode_s)), "wall_s": time.perf_counter() - t0})
    return rows


def monotone(rows: list[dict]) -> bool:
    rows = sorted(rows, key=lambda r: r["quality"])
    return all(b["bpp"] > a["bpp"] and b["psnr"] > a["psnr"] for a, b in zip(rows, rows[1:]))


def bracket(anchor: list[dict], test: list[dict], key: str) -> list[dict]:
    """The anchor's points from the last one at or below the test curve's lowest ``key``
    to the first one at or above its highest: the anchor over the test's own range."""
    lo, hi = min(r[key] for r in test), max(r[key] for r in test)
    rows = sorted(anchor, key=lambda r: r[key])
    first = max([i for i, r in enumerate(rows) if r[key] <= lo], default=0)
    last = min([i for i, r in enumerate(rows) if r[key] >= hi], default=len(rows) - 1)
    return rows[first : last + 1]


def print_deltas(curves: dict[str, list[dict]]) -> None:
    """Monotonicity and Bjøntegaard deltas of each embedded family against JPEG: on PSNR
    against the whole JPEG sweep and against the JPEG points that bracket the family's PSNR
    range, and on MS-SSIM against the whole sweep."""
    jpeg = curves["jpeg"]
    print("\n| embedded family | monotone rate–PSNR | BD-rate (PSNR) vs JPEG sweep | BD-PSNR | overlap "
          "| BD-rate (PSNR) vs bracketing JPEG points | overlap | BD-rate (MS-SSIM) vs JPEG sweep | overlap |")
    print("|---|---|---|---|---|---|---|---|---|")
    for family in NEURAL:
        rows = curves[family]

        def delta(fn, anchor, key):
            return fn([r["bpp"] for r in anchor], [r[key] for r in anchor], [r["bpp"] for r in rows],
                      [r[key] for r in rows])

        full, dpsnr = delta(bd_rate, jpeg, "psnr"), delta(bd_metric, jpeg, "psnr")
        near = delta(bd_rate, bracket(jpeg, rows, "psnr"), "psnr")
        ssim = delta(bd_rate, jpeg, "ms_ssim")
        print(f"| {family} | {'yes' if monotone(rows) else 'NO'} | {full.value:+.1f} % | {dpsnr.value:+.2f} dB "
              f"| {full.overlap:.0%} | {near.value:+.1f} % | {near.overlap:.0%} | {ssim.value:+.1f} % | {ssim.overlap:.0%} |")
    print("(overlap: the share of the two curves' joint metric range that both cover; below 75 % the JPEG "
          "sweep reaches far beyond the family's few points)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--plot", type=Path, help="write the rate–PSNR figure here (PNG)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = [load_image(f) for f in folder_images(args.kodak)]
    print(f"{len(images)} images from {args.kodak}; torch {torch.__version__}, {args.threads} thread(s)")
    print("bpp: mean of per-image bpp from the stream bytes; PSNR, MS-SSIM: means of per-image values\n")

    curves = {"jpeg": measure("jpeg", JPEG_QUALITIES, images)}
    for family, name in NEURAL.items():
        curves[family] = measure(name, [1, 2, 3], images, weights="embedded")

    print(f"| codec | quality | bpp | PSNR (dB) | MS-SSIM | encode ms/img | decode ms/img |")
    print("|---|---|---|---|---|---|---|")
    for codec, rows in curves.items():
        for r in rows:
            print(f"| {codec} | {r['quality']} | {r['bpp']:.3f} | {r['psnr']:.2f} | {r['ms_ssim']:.4f} "
                  f"| {r['enc_ms']:.1f} | {r['dec_ms']:.1f} |")

    print_deltas(curves)

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4.2))
        for codec, rows in curves.items():
            ax.plot([r["bpp"] for r in rows], [r["psnr"] for r in rows], "o-" if codec != "jpeg" else "s--",
                    ms=4, label=codec if codec == "jpeg" else f"{codec} (embedded)")
        ax.set_xlabel("bpp (mean of per-image bpp, real bytes)")
        ax.set_ylabel("PSNR (dB, mean of per-image PSNR)")
        ax.set_title(f"Kodak ({len(images)} images)")
        ax.set_xlim(0, 2.0)
        ax.grid(alpha=0.3)
        ax.legend()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110, bbox_inches="tight")
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
