"""Bootstrap replicates of COCO box AP (``weighted_coco_map``) against one ``coco_map`` call.

    python benchmarks/coco_bootstrap.py [--images 300] [--classes 3] [--objects 3]
                                        [--detections 100] [--replicates 1000] [--repeat 3]

Synthetic val set of the size a detection cell evaluates: ``--images`` 512×512 images with
Poisson(``--objects``) objects of ``--classes`` classes (sides 8 to 250 px, so every size
range is populated) and ``--detections`` detections each: a fifth jittered from the
objects with high scores, the rest random boxes with low ones. Printed: one ``coco_map``,
the one-off ``coco_matches`` (pycocotools' matching), ``weighted_coco_map`` for
``--replicates`` bootstrap draws (best of ``--repeat``, wall and process CPU time, each
call building its TP ranks afresh, with its peak traced memory), the ratio of the last to the first, and the 95% percentile
intervals of the six metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import tracemalloc

import numpy as np

from bench.metrics.bootstrap import replicate_weights
from bench.metrics.coco_bootstrap import coco_matches, weighted_coco_map
from bench.metrics.detection import COCO_METRICS, Detections, ImageBoxes, coco_map


def synthetic(rng: np.random.Generator, n_images: int, n_classes: int, objects: float, per_image: int,
              size: float = 512.0) -> tuple[list[ImageBoxes], list[Detections]]:
    def boxes(k: int) -> np.ndarray:
        xy = rng.uniform(0, 0.8 * size, (k, 2))
        return np.concatenate([xy, xy + np.exp(rng.uniform(np.log(8), np.log(250), (k, 2)))], axis=1)

    truth, dets = [], []
    for _ in range(n_images):
        k = int(rng.poisson(objects))
        gt, labels = boxes(k), rng.integers(0, n_classes, k)
        truth.append(ImageBoxes(gt, labels))
        src = rng.integers(0, k, per_image // 5 if k else 0)
        near = gt[src] + rng.normal(0, 0.1, (len(src), 4)) * np.tile(gt[src, 2:] - gt[src, :2], 2)
        far = per_image - len(src)
        dets.append(Detections(np.concatenate([near, boxes(far)]),
                               np.concatenate([rng.beta(4, 2, len(src)), rng.beta(1, 4, far)]),
                               np.concatenate([labels[src], rng.integers(0, n_classes, far)])))
    return truth, dets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--objects", type=float, default=3.0)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    truth, dets = synthetic(np.random.default_rng(0), args.images, args.classes, args.objects, args.detections)
    print(f"{args.images} images, {sum(len(t.labels) for t in truth)} objects, "
          f"{sum(len(d.scores) for d in dets)} detections, {args.classes} classes")

    t0 = time.perf_counter()
    full = coco_map(truth, dets, args.classes)
    t_map = time.perf_counter() - t0
    t0 = time.perf_counter()
    matches = coco_matches(truth, dets, args.classes)
    t_match = time.perf_counter() - t0
    weights = np.concatenate(list(replicate_weights(args.images, args.replicates)))
    walls, cpus = [], []
    for _ in range(args.repeat):
        fresh = dataclasses.replace(matches)  # without the TP ranks the previous call kept
        w0, c0 = time.perf_counter(), time.process_time()
        replicates = weighted_coco_map(fresh, weights)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    tracemalloc.start()
    weighted_coco_map(dataclasses.replace(matches), weights)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    print(f"coco_map, once:                      {t_map:6.2f} s")
    print(f"coco_matches, once:                  {t_match:6.2f} s")
    print(f"weighted_coco_map, B={args.replicates}:          {min(walls):6.2f} s wall, {min(cpus):.2f} s CPU "
          f"(best of {args.repeat}), peak {peak / 2**20:.0f} MB")
    print(f"B={args.replicates} replicates / one coco_map: {min(walls) / t_map:.3f}")
    for name in COCO_METRICS:
        low, high = np.nanpercentile(replicates[name], [2.5, 97.5])
        print(f"  {name:5s} {full[name]:.4f}  95% [{low:.4f}, {high:.4f}]")


if __name__ == "__main__":
    main()
