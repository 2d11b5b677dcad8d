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

    jpeg = curves["jpeg"]
    print("\n| embedded family | monotone rate–PSNR | BD-rate vs JPEG (PSNR) | BD-PSNR vs JPEG | overlap |")
    print("|---|---|---|---|---|")
    for family in NEURAL:
        rows = curves[family]
        rate = bd_rate([r["bpp"] for r in jpeg], [r["psnr"] for r in jpeg],
                       [r["bpp"] for r in rows], [r["psnr"] for r in rows])
        dpsnr = bd_metric([r["bpp"] for r in jpeg], [r["psnr"] for r in jpeg],
                          [r["bpp"] for r in rows], [r["psnr"] for r in rows])
        warn = f" ({'; '.join(rate.warnings)})" if rate.warnings else ""
        print(f"| {family} | {'yes' if monotone(rows) else 'NO'} | {rate.value:+.1f} % | "
              f"{dpsnr.value:+.2f} dB | {rate.overlap:.0%}{warn} |")

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
