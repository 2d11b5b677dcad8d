"""COCO box mAP through pycocotools, from ground truth and detections held in memory.

``AP`` is the COCO primary metric (mean over IoU 0.50:0.05:0.95 and over categories),
``AP50`` / ``AP75`` at one IoU threshold, ``APs`` / ``APm`` / ``APl`` over objects of area
below 32², between 32² and 96², and above 96² pixels, all at up to 100 detections per image.
A value COCO cannot define (no ground-truth object in a size range, as for "large" on 64×64
images) is NaN, never the -1 that ``COCOeval`` prints.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pycocotools.cocoeval import COCOeval

#: Our names for ``COCOeval.stats[0:6]``, in that order; the first is the primary metric.
COCO_METRICS: tuple[str, ...] = ("mAP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass(frozen=True)
class ImageBoxes:
    """Ground truth of one image: boxes ``(k, 4)`` x0, y0, x1, y1 in pixels, labels ``(k,)``.

    ``areas`` are what COCO sorts objects into size ranges by (the segment area in COCO
    files; the box area when omitted); ``crowd`` marks regions whose detections are ignored.
    """

    boxes: np.ndarray
    labels: np.ndarray
    areas: np.ndarray | None = None
    crowd: np.ndarray | None = None


@dataclass(frozen=True)
class Detections:
    """Detections on one image: boxes ``(k, 4)`` x0, y0, x1, y1, ``scores`` and ``labels``."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def coco_gt_dict(truth: Sequence[ImageBoxes], num_classes: int) -> dict:
    """A COCO instances document for ``truth``; image ``i`` gets id ``i + 1``, label ``c``
    category id ``c + 1`` (pycocotools treats id 0 as falsy in places)."""
    images, annotations = [], []
    for i, t in enumerate(truth):
        images.append({"id": i + 1})
        xywh = _xywh(t.boxes)
        areas = xywh[:, 2] * xywh[:, 3] if t.areas is None else np.asarray(t.areas, dtype=np.float64)
        crowd = np.zeros(len(xywh), bool) if t.crowd is None else np.asarray(t.crowd, bool)
        for box, label, area, iscrowd in zip(xywh, np.asarray(t.labels), areas, crowd):
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                "bbox": [float(v) for v in box], "area": float(area), "iscrowd": int(iscrowd),
            })
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def detection_rows(detections: Sequence[Detections], num_classes: int) -> np.ndarray:
    """``detections`` as the ``(n, 7)`` rows ``COCO.loadRes`` reads: image id, x, y, w, h, score,
    category id; detections of a class the dataset does not have are left out."""
    rows = []
    for i, d in enumerate(detections):
        labels = np.asarray(d.labels, dtype=np.int64)
        keep = (labels >= 0) & (labels < num_classes)
        for box, score, label in zip(_xywh(d.boxes)[keep], np.asarray(d.scores)[keep], labels[keep]):
            rows.append([i + 1, *box, float(score), int(label) + 1])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 7)


def evaluate_boxes(gt_doc: dict, rows: np.ndarray) -> COCOeval:
    """A ``COCOeval`` (iouType bbox, default parameters) of ``rows`` against ``gt_doc`` after
    its ``evaluate()``, which matches detections to objects image by image."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        gt = COCO()
        gt.dataset = gt_doc
        gt.createIndex()
        if len(rows):
            dt = gt.loadRes(rows)
        else:  # loadRes cannot take an empty list
            dt = COCO()
            dt.dataset = {"images": gt_doc["images"], "annotations": [], "categories": gt_doc["categories"]}
            dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
    return ev


def early_result(gt_doc: dict, rows: np.ndarray) -> dict[str, float] | None:
    """The metrics COCO needs no matching for: NaN with nothing to find, 0 with no detection."""
    if not any(not a["iscrowd"] for a in gt_doc["annotations"]):
        return {name: math.nan for name in COCO_METRICS}  # nothing to find: AP is undefined
    if not len(rows):  # no detection at all is AP 0
        return {name: 0.0 for name in COCO_METRICS}
    return None


def summarized(ev: COCOeval) -> dict[str, float]:
    """The six metrics of an evaluated ``COCOeval`` (its ``accumulate`` and ``summarize``)."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
        ev.summarize()
    return {name: (float(v) if v >= 0 else math.nan) for name, v in zip(COCO_METRICS, ev.stats[:6])}


def coco_map(truth: Sequence[ImageBoxes], detections: Sequence[Detections], num_classes: int) -> dict[str, float]:
    """COCO box AP of ``detections`` against ``truth`` (same order, one entry per image)."""
    if len(truth) != len(detections):
        raise ValueError(f"{len(truth)} ground-truth images but {len(detections)} detection lists")
    gt_doc = coco_gt_dict(truth, num_classes)
    rows = detection_rows(detections, num_classes)
    early = early_result(gt_doc, rows)
    return early if early is not None else summarized(evaluate_boxes(gt_doc, rows))
