"""HEIC (libheif + x265) against CompressAI's published BPG curve on Kodak.

The published curve (``shared/data/reference/bpg_444_x265_ycbcr.json``: libbpg 0.9.8,
``bpgenc -f 444 -e x265 -c ycbcr -b 8``, QP 47..12) is the mean of per-image bpp and of
per-image RGB PSNR over the 24 Kodak images. Each candidate setting of bench's ``heic``
codec codes the same images through bench's own codec class and transcode path (real
streams, the HEIF container counted) at a sweep of qualities; per quality it prints the
mean of per-image bpp (8 * len(stream) / (h * w)) and of per-image PSNR, and per candidate
the Bjøntegaard deltas against the BPG curve (PCHIP over log-rate, the JVET convention):
BD-rate (negative: fewer bits than BPG at equal PSNR) and BD-PSNR, with the share of the
joint range both curves cover. A delta against the published curve is only meaningful on
all 24 images; with ``--images N`` (fewer, for a quick look) the table also gives each
candidate's BD-rate against the first candidate on the same images.

    python benchmarks/heic_vs_bpg.py [--kodak DIR] [--images 24] [--workers 2]
        [--candidates today-444,bpg-like-444,...] [--qualities 6,20,34,48,62,76]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.codecs import CODECS, OperatingPoint
from bench.images import load_image
from bench.metrics.bd import bd_metric, bd_rate
from bench.train_codec import folder_images
from bench.transcode import transcode_chunk

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KODAK = SHARED / "kodak"
BPG = SHARED / "reference" / "bpg_444_x265_ycbcr.json"
#: quality q is x265 CRF (100 - q) / 2; with aq_mode 0 a constant QP, so 6..76 spans
#: QP 47..12 like the published BPG sweep
QUALITIES = [6, 20, 34, 48, 62, 76]

PSY_OFF = {"psy_rd": 0, "psy_rdoq": 0}
#: name -> heic parameters
CANDIDATES: dict[str, dict[str, Any]] = {
    "today-444": {"chroma": 444},
    "psy-off-444": {"chroma": 444, **PSY_OFF},
    "psnr-444": {"chroma": 444, **PSY_OFF, "aq_mode": 0},
    "bpg-like-444": {"chroma": 444, **PSY_OFF, "aq_mode": 0, "preset": "veryslow", "tu_intra_depth": 3},
    "today-420": {"chroma": 420},
    "psnr-420": {"chroma": 420, **PSY_OFF, "aq_mode": 0},
}
DEFAULT_CANDIDATES = ["today-444", "psnr-444", "psnr-420"]  # about 8 min on 2 shared cores

_images: list[np.ndarray] = []


def _load(files: list[Path]) -> None:
    global _images
    _images = [load_image(f) for f in files]


def _code(params: dict[str, Any], quality: int, index: int) -> tuple[float, float, float]:
    """(bpp, PSNR, encode seconds) of one Kodak image through bench's heic codec."""
    codec = CODECS.get("heic")(**params)
    image = _images[index]
    r = transcode_chunk(codec, OperatingPoint(quality), [image])
    h, w = image.shape[:2]
    return 8 * len(r.streams[0]) / (h * w), r.psnr[0], r.encode_s[0]


def measure(pool: ProcessPoolExecutor, params: dict[str, Any], qualities: list[int], n: int) -> list[dict]:
    rows = []
    for q in qualities:
        t0 = time.perf_counter()
        out = list(pool.map(_code, [params] * n, [q] * n, range(n)))
        bpp, psnr, enc = (np.array(col) for col in zip(*out))
        rows.append({"quality": q, "bpp": float(bpp.mean()), "psnr": float(psnr.mean()),
                     "enc_s": float(enc.mean()), "wall_s": time.perf_counter() - t0})
    return rows


def deltas(anchor: tuple[list[float], list[float]], rows: list[dict]) -> tuple[Any, Any]:
    rate, psnr = [r["bpp"] for r in rows], [r["psnr"] for r in rows]
    return (bd_rate(*anchor, rate, psnr, method="pchip"), bd_metric(*anchor, rate, psnr, method="pchip"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--reference", type=Path, default=BPG)
    p.add_argument("--images", type=int, default=24, help="the first N Kodak images (default: all 24)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES),
                   help=f"comma-separated, from: {', '.join(CANDIDATES)}")
    p.add_argument("--qualities", default=",".join(map(str, QUALITIES)))
    args = p.parse_args()
    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    if unknown := [c for c in names if c not in CANDIDATES]:
        p.error(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")
    qualities = [int(q) for q in args.qualities.split(",")]

    files = folder_images(args.kodak)[: args.images]
    reference = json.loads(args.reference.read_text())
    bpg = (reference["results"]["bpp"], reference["results"]["psnr-rgb"])
    codec = CODECS.get("heic")()
    print(f"{len(files)} images from {args.kodak}; heic {codec.version}; {args.workers} worker(s), "
          f"{os.cpu_count()} CPU(s)")
    print(f"anchor: {reference['name']} ({args.reference.name}), {len(bpg[0])} points, "
          f"{min(bpg[0]):.3f}..{max(bpg[0]):.3f} bpp")
    print("bpp: mean of per-image bpp from the stream bytes; PSNR: mean of per-image RGB PSNR\n")

    curves: dict[str, list[dict]] = {}
    t_start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_load, initargs=(files,)) as pool:
        for name in names:
            curves[name] = measure(pool, CANDIDATES[name], qualities, len(files))
            print(f"{name}: {sum(r['wall_s'] for r in curves[name]):.0f} s", flush=True)

    print("\n| candidate | quality | bpp | PSNR (dB) | encode s/img |")
    print("|---|---|---|---|---|")
    for name, rows in curves.items():
        for r in rows:
            print(f"| {name} | {r['quality']} | {r['bpp']:.4f} | {r['psnr']:.3f} | {r['enc_s']:.2f} |")

    first = names[0]
    own = (([r["bpp"] for r in curves[first]], [r["psnr"] for r in curves[first]]))
    print(f"\n| candidate | heic parameters | BD-rate vs BPG | BD-PSNR vs BPG | overlap (PSNR / rate) "
          f"| BD-rate vs {first} |")
    print("|---|---|---|---|---|---|")
    for name, rows in curves.items():
        rate, psnr = deltas(bpg, rows)
        vs_first = deltas(own, rows)[0]
        params = ", ".join(f"{k}={v}" for k, v in CANDIDATES[name].items())
        print(f"| {name} | {params} | {rate.value:+.1f} % | {psnr.value:+.2f} dB | {rate.overlap:.0%} / "
              f"{psnr.overlap:.0%} | {vs_first.value:+.1f} % |")
    if len(files) != 24:
        print(f"(on {len(files)} images the BPG columns compare with a curve measured on all 24: "
              "read only the last column)")
    print(f"\n{len(files)} images, {len(qualities)} qualities, {time.perf_counter() - t_start:.0f} s in all")


if __name__ == "__main__":
    main()
