"""How close bench's rate control gets to target bitrates on Kodak.

For each codec and target bpp, every Kodak image gets its own quality
(``bench.ratecontrol.image_at_target``: bisection over the codec's qualities plus a scan
around the bracket, tolerance 10 %), or — with ``--per-dataset`` — one quality for all
images. Printed per (codec, target): the mean of the achieved per-image bpp (real bytes of
the chosen streams), the mean absolute relative error against the target, how many images
are within the tolerance, and encodes per image. A target below a codec's lowest rate (or
above its highest) is reported as missed, with the rate it did reach.

    python benchmarks/rate_control.py [--codecs jpeg webp heic hyperprior] [--targets 0.1 0.25 0.5 1.0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.codecs import CODECS
from bench.images import load_image
from bench.ratecontrol import image_at_target, set_at_target

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"
CODEC_ARGS = {"jpeg": ("jpeg", {}), "webp": ("webp", {}), "avif": ("avif", {}), "heic": ("heic", {}),
              "hyperprior": ("bmshj2018-hyperprior", {"weights": "embedded"}),
              "mean-scale": ("mbt2018-mean", {"weights": "embedded"})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--codecs", nargs="+", default=["jpeg", "webp", "heic", "hyperprior"], choices=sorted(CODEC_ARGS))
    p.add_argument("--targets", nargs="+", type=float, default=[0.1, 0.25, 0.5, 1.0])
    p.add_argument("--tolerance", type=float, default=0.1)
    p.add_argument("--per-dataset", action="store_true", help="one quality per codec and target for all images")
    args = p.parse_args()
    images = [load_image(f) for f in sorted(args.kodak.glob("*.png"))]
    mode = "per dataset" if args.per_dataset else "per image"
    print(f"{len(images)} Kodak images, rate control {mode}, tolerance {args.tolerance:.0%}; bpp = real bytes "
          "of the chosen streams, mean of per-image bpp\n")
    print("| codec | target bpp | achieved bpp | mean abs. error | images within | encodes / image | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    summary = []
    for label in args.codecs:
        name, params = CODEC_ARGS[label]
        codec = CODECS.get(name)(**params)
        for target in args.targets:
            t0 = time.perf_counter()
            if args.per_dataset:
                choice, streams = set_at_target(codec, images, target, args.tolerance)
                bpp = [8 * len(s) / (im.shape[0] * im.shape[1]) for s, im in zip(streams, images)]
                errors, within, encodes = [abs(choice.relative_error)], int(choice.within_tolerance), len(choice.tried)
            else:
                choices = [image_at_target(codec, im, target, args.tolerance)[0] for im in images]
                bpp = [c.bpp for c in choices]
                errors = [abs(c.relative_error) for c in choices]
                within, encodes = sum(c.within_tolerance for c in choices), np.mean([len(c.tried) for c in choices])
            achieved = float(np.mean(bpp))
            # "within 10 % on average": the mean of the per-image absolute errors
            summary.append((label, target, float(np.mean(errors))))
            print(f"| {label} | {target:.2f} | {achieved:.3f} | {np.mean(errors):.1%} | "
                  f"{within}/{1 if args.per_dataset else len(images)} | {encodes:.1f} | {time.perf_counter() - t0:.1f} |",
                  flush=True)
    missed = [f"{c}@{t}" for c, t, e in summary if e > args.tolerance]
    print(f"\nmean absolute error within {args.tolerance:.0%}: {len(summary) - len(missed)}/{len(summary)} (codec, target) "
          f"pairs; missed: {', '.join(missed) or 'none'}")


if __name__ == "__main__":
    main()
