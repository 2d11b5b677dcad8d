"""Bootstrap replicates of COCO box AP: pycocotools' matching done once, its accumulation
redone for many weightings of the images at once.

A bootstrap over images redraws the val set with replacement ~1000 times. How a detection
matches the objects of its image does not depend on which other images are drawn, so
``coco_matches`` runs ``COCOeval.evaluate()`` once and keeps what ``COCOeval.accumulate()``
reads of it, and ``weighted_coco_map`` recomputes ``coco_map``'s six metrics for a
``(B, n_images)`` array of per-image counts — replicate ``b`` is the dataset in which image
``i`` appears ``weights[b, i]`` times::

    matches = coco_matches(truth, detections, num_classes)
    replicates = resampled(len(truth), lambda w: weighted_coco_map(matches, w))  # bench.metrics.bootstrap
    low, high = interval(replicates["mAP"])

With all weights 1 the metrics are ``coco_map``'s (to rounding in the final mean, ~1e-16),
and weight 0 is the image left out. Integer weights give ``coco_map`` of the dataset with
each image repeated that many times in place, exactly when no two detections of one image
and class have the same score: the copies of a detection are ranked together here, where
the repeated dataset ranks tied detections of one image copy by copy (d e d e, not d d e e),
a TP/FP order COCO leaves to the input's order (1e-3 to 1e-2 of AP on 40 images with
scores on a 1/20 grid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from bench.metrics.bootstrap import ItemScores
from bench.metrics.detection import (COCO_METRICS, Detections, ImageBoxes, coco_gt_dict, detection_rows,
                                     early_result, evaluate_boxes, summarized)

#: The size range each metric of ``COCO_METRICS`` is over (``COCOeval.params.areaRngLbl``).
METRIC_AREAS: dict[str, str] = {"mAP": "all", "AP50": "all", "AP75": "all", "APs": "small", "APm": "medium",
                                "APl": "large"}
#: The single IoU threshold of AP50 and AP75; the others average over all ten.
METRIC_IOU: dict[str, float] = {"AP50": 0.5, "AP75": 0.75}


@dataclass(frozen=True)
class MatchTable:
    """The detections of one category in one size range as ``COCOeval.accumulate()`` reads
    them: up to 100 per image (the best scored), ranked by score with a stable mergesort
    of the images' lists in image order, so equal scores stay in image order.

    ``image`` ``(D,)`` index of each detection's image, ``score`` ``(D,)``; ``matched``
    ``(T, D)`` whether it matched an object at each IoU threshold, ``ignored`` ``(T, D)``
    whether it counts neither way (matched a crowd or out-of-range object, or unmatched and
    itself out of range); ``positives`` ``(n_images,)`` the objects per image to be found.
    """

    image: np.ndarray
    score: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    positives: np.ndarray

    @property
    def true_positive(self) -> np.ndarray:
        return self.matched & ~self.ignored

    @property
    def false_positive(self) -> np.ndarray:
        return ~self.matched & ~self.ignored


@dataclass(frozen=True)
class CocoMatches:
    """What ``COCOeval.evaluate()`` found, per category and size range (``tables[k][a]``),
    with what ``coco_map`` decides before it: ``objects`` ``(n_images,)`` non-crowd objects
    of any label (none at all: every metric NaN), ``detections`` ``(n_images,)`` detections
    of a known class (none at all: every metric 0)."""

    tables: tuple[tuple[MatchTable, ...], ...]
    area_ranges: tuple[str, ...]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    objects: np.ndarray
    detections: np.ndarray

    @property
    def n_images(self) -> int:
        return len(self.objects)

    @cached_property
    def _ranks(self) -> _Ranks:  # built on first use, then kept for every further call
        return _ranks(self)


def coco_matches(truth: Sequence[ImageBoxes], detections: Sequence[Detections], num_classes: int) -> CocoMatches:
    """Match ``detections`` to ``truth`` once, as ``coco_map`` does, for ``weighted_coco_map``."""
    return BoxScores(truth, detections, num_classes).matches


class BoxScores(ItemScores):
    """The detection task's per-image statistics: COCO's matching, run once; ``metrics`` are
    ``coco_map``'s (pycocotools' own accumulation of that matching), ``resample`` is
    ``weighted_coco_map``."""

    def __init__(self, truth: Sequence[ImageBoxes], detections: Sequence[Detections], num_classes: int) -> None:
        if len(truth) != len(detections):
            raise ValueError(f"{len(truth)} ground-truth images but {len(detections)} detection lists")
        gt_doc = coco_gt_dict(truth, num_classes)
        rows = detection_rows(detections, num_classes)
        self.n = len(truth)
        self._ev = evaluate_boxes(gt_doc, rows)
        self._early = early_result(gt_doc, rows)
        self.matches = _matches_of(self._ev, gt_doc, rows, self.n)

    def metrics(self) -> dict[str, float]:
        return self._early if self._early is not None else summarized(self._ev)

    def resample(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        return weighted_coco_map(self.matches, weights)


def _matches_of(ev: Any, gt_doc: dict, rows: np.ndarray, n: int) -> CocoMatches:
    p = ev.params
    n_areas, max_det = len(p.areaRng), p.maxDets[-1]
    assert list(p.imgIds) == list(range(1, n + 1)), "coco_gt_dict numbers images 1..n"
    tables = tuple(
        tuple(_table(ev.evalImgs[(k * n_areas + a) * n:(k * n_areas + a + 1) * n], len(p.iouThrs), max_det)
              for a in range(n_areas))
        for k in range(len(p.catIds)))
    image_ids = np.array([a["image_id"] for a in gt_doc["annotations"] if not a["iscrowd"]], np.int64)
    objects = np.bincount(image_ids - 1, minlength=n)
    per_image = np.bincount(rows[:, 0].astype(np.int64) - 1, minlength=n) if len(rows) else np.zeros(n, np.int64)
    return CocoMatches(tables, tuple(p.areaRngLbl), np.asarray(p.iouThrs, np.float64),
                       np.asarray(p.recThrs, np.float64), objects, per_image)


def _table(evals: list[dict | None], n_iou: int, max_det: int) -> MatchTable:
    """One category and size range of ``COCOeval.evalImgs`` (one entry per image, None
    where the image has neither objects nor detections of the category)."""
    positives = np.zeros(len(evals), np.int64)
    image, score = [np.zeros(0, np.int64)], [np.zeros(0)]
    matched, ignored = [np.zeros((n_iou, 0), bool)], [np.zeros((n_iou, 0), bool)]
    for i, e in enumerate(evals):
        if e is None:
            continue
        positives[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
        s = np.asarray(e["dtScores"][:max_det], np.float64)
        image.append(np.full(len(s), i, np.int64))
        score.append(s)
        matched.append(np.asarray(e["dtMatches"])[:, :max_det] != 0)
        ignored.append(np.asarray(e["dtIgnore"])[:, :max_det].astype(bool))
    score_all = np.concatenate(score)
    order = np.argsort(-score_all, kind="mergesort")  # accumulate()'s ranking, ties in image order
    return MatchTable(np.concatenate(image)[order], score_all[order], np.concatenate(matched, axis=1)[:, order],
                      np.concatenate(ignored, axis=1)[:, order], positives)


# How weighted_coco_map computes accumulate()'s precision. For one category, size range and
# IoU threshold ("curve"), accumulate() walks the ranked detections keeping cumulative TP and
# FP, makes precision non-increasing from the right and reads it at the first rank whose
# recall reaches each of the 101 recall thresholds: the value read at threshold r is the
# largest precision at any rank with recall >= r (0 if none). That largest precision is
# always reached at a true positive (after a false positive precision has only fallen since
# the last TP, at the same recall), so only the TP ranks are needed: cumulative TP there is
# a running sum of the TPs' image weights, cumulative FP the weighted count of FPs ranked
# above, weights @ (per-image counts). An image weighted k adds k at once where the repeated
# dataset adds 1 k times; the ranks in between are dominated (less recall and less precision
# after TPs, the same recall and less precision after FPs), so the values read are the same.
# A rank weighted 0 repeats the one above it and changes nothing. The sum over recall
# thresholds of the values read is sum_j envelope[j] * (thresholds first reached at rank j).
#
# The TP ranks of all curves lie in one array, rank-major from the last rank of each curve
# (block p holds each curve's p-th rank from its end, for the curves longer than p, longest
# curves first), so running sums and maxima along the ranks are one vector step per block.


@dataclass(frozen=True)
class _Ranks:
    """The TP ranks of every curve, ``P`` in all, in blocks (rows ``start[p]:start[p] + size[p]``
    are the p-th ranks from the end of the ``size[p]`` longest curves, in the same order in
    every block): ``image`` ``(P,)`` the TP's image, ``fp`` ``(P, n_images)`` FPs per image
    ranked above it, ``table`` ``(P,)`` its (category, size range) as ``k * A + a``; ``curves``
    ``(C,)`` the curve (``(k * A + a) * T + t``) of each position in a block."""

    image: np.ndarray
    fp: np.ndarray
    table: np.ndarray
    start: np.ndarray
    size: np.ndarray
    curves: np.ndarray


def _ranks(matches: CocoMatches) -> _Ranks:
    flat = [t for row in matches.tables for t in row]
    n_iou, n = len(matches.iou_thresholds), matches.n_images
    hits = [np.flatnonzero(t.true_positive[i]) for t in flat for i in range(n_iou)]
    lengths = np.array([len(h) for h in hits], np.int64)
    curves = np.argsort(-lengths, kind="stable")
    size = np.array([np.count_nonzero(lengths > p) for p in range(int(lengths.max(initial=0)))], np.int64)
    start = np.concatenate([[0], np.cumsum(size)])
    image, table = np.zeros(start[-1], np.int64), np.zeros(start[-1], np.int64)
    fp = np.zeros((start[-1], n))
    for q, c in enumerate(curves):
        t, at = flat[c // n_iou], hits[c]
        m = len(at)
        rows = start[m - 1 - np.arange(m)] + q  # rank j is m - 1 - j ranks from the end
        image[rows], table[rows] = t.image[at], c // n_iou
        false = np.flatnonzero(t.false_positive[c % n_iou])
        above = np.searchsorted(at, false)  # the TP ranks above each FP; it counts for the ones below
        counts = np.bincount(above * n + t.image[false], minlength=(m + 1) * n).reshape(m + 1, n)
        fp[rows] = np.cumsum(counts, axis=0)[:-1]
    return _Ranks(image, fp, table, start, size, curves)


def _thresholds_reached(rc: np.ndarray, recall_thresholds: np.ndarray) -> np.ndarray:
    """``np.searchsorted(recall_thresholds, rc, side="right")`` (how many thresholds are
    ``<= rc``) for COCO's 101 thresholds ``0:0.01:1`` and ``rc`` in ``[0, 1]``, several
    times faster: with ``k = floor(100 * rc)``, thresholds below ``k`` are ``<= rc`` and
    those from ``k + 2`` on are above it (rounding errors are ~1e-14, the spacing 0.01), so
    only thresholds ``k`` and ``k + 1`` are compared."""
    n_rec = len(recall_thresholds)
    below = np.minimum((rc * (n_rec - 1)).astype(np.int64), n_rec - 1)
    padded = np.append(recall_thresholds, np.inf)
    return below + (padded[below] <= rc) + (padded[below + 1] <= rc)


def _precision_sums(w: np.ndarray, ranks: _Ranks, positives: np.ndarray, recall_thresholds: np.ndarray) -> np.ndarray:
    """``(b, curves)`` sums over the recall thresholds of accumulate()'s precision, for the
    ``(b, n_images)`` weights ``w``."""
    start, size = ranks.start, ranks.size
    blocks = [slice(start[p], start[p] + size[p]) for p in range(len(size))]
    wt = np.ascontiguousarray(w.T)
    tp = wt[ranks.image]  # (P, b), then summed from each curve's first rank down
    for p in range(len(size) - 2, -1, -1):
        tp[start[p]:start[p] + size[p + 1]] += tp[blocks[p + 1]]
    fp = ranks.fp @ wt
    npig = positives.T @ wt
    rc = tp / np.where(npig > 0, npig, 1.0)[ranks.table]  # curves without objects are dropped by the caller
    pr = tp / (fp + tp + np.spacing(1))  # as accumulate() writes it, to the last bit
    del tp, fp
    first = _thresholds_reached(rc, recall_thresholds)
    del rc
    for p in range(len(size) - 1):  # minus those reached at the rank above: the ones first reached here
        first[start[p]:start[p] + size[p + 1]] -= first[blocks[p + 1]]
    sums = np.zeros((len(ranks.curves), len(w)))
    for p, rows in enumerate(blocks):
        if p:
            np.maximum(pr[rows], pr[start[p - 1]:start[p - 1] + size[p]], out=pr[rows])
        sums[:size[p]] += pr[rows] * first[rows]
    out = np.zeros((len(w), len(ranks.curves)))
    out[:, ranks.curves] = sums.T
    return out


def weighted_coco_map(matches: CocoMatches, weights: np.ndarray, *,
                      chunk_bytes: int = 128 * 2**20) -> dict[str, np.ndarray]:
    """``coco_map``'s metrics (names and order of ``COCO_METRICS``) for each row of
    ``weights`` ``(B, n_images)``: each a ``(B,)`` array, row ``b`` the metric of the dataset
    in which image ``i`` appears ``weights[b, i]`` times (non-negative; integer counts for a
    bootstrap, fractional ones weigh detections and objects alike). NaN where ``coco_map``
    gives NaN (no object in a size range), 0 where it gives 0 (no detection at all).

    Memory: a count matrix of ``8 * n_images * P`` bytes, where ``P`` is the number of true
    positives summed over categories, size ranges and the 10 IoU thresholds
    (each object is found at most once per threshold in "all" and in its own size range, so
    ``P <= 20 * objects``: at most 43 MB for 300 images of 3 objects), plus about
    ``chunk_bytes`` for the rows of ``weights`` processed at once.
    """
    w_all = np.asarray(weights, dtype=np.float64)
    if w_all.ndim != 2 or w_all.shape[1] != matches.n_images:
        raise ValueError(f"weights must be (B, {matches.n_images}) counts per image, not {w_all.shape}")
    if not np.all(np.isfinite(w_all)) or np.any(w_all < 0):
        raise ValueError("weights must be finite and non-negative")
    n_cat, n_area, n_iou = len(matches.tables), len(matches.area_ranges), len(matches.iou_thresholds)
    n_rec = len(matches.recall_thresholds)
    ranks = matches._ranks
    positives = np.stack([t.positives for row in matches.tables for t in row], axis=1).astype(np.float64)
    n_curves = n_cat * n_area * n_iou
    step = max(1, chunk_bytes // (8 * (6 * len(ranks.image) + 2 * n_curves)))  # 6 (P,) arrays live per replicate
    sums = np.concatenate([_precision_sums(w_all[s:s + step], ranks, positives, matches.recall_thresholds)
                           for s in range(0, len(w_all), step)] or [np.zeros((0, n_curves))])
    sums = sums.reshape(len(w_all), n_cat, n_area, n_iou)
    found = (w_all @ positives).reshape(len(w_all), n_cat, n_area) > 0  # accumulate()'s -1 where not
    anything = w_all @ matches.objects > 0
    detected = w_all @ matches.detections > 0
    out = {}
    for name in COCO_METRICS:
        a = matches.area_ranges.index(METRIC_AREAS[name])
        ious = (np.flatnonzero(matches.iou_thresholds == METRIC_IOU[name]) if name in METRIC_IOU
                else np.arange(n_iou))
        total = np.where(found[:, :, a], sums[:, :, a][:, :, ious].sum(axis=2), 0.0).sum(axis=1)
        count = found[:, :, a].sum(axis=1) * len(ious) * n_rec
        value = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        out[name] = np.where(anything, np.where(detected, value, 0.0), np.nan)
    return out
