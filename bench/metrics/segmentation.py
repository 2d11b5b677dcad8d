"""Semantic segmentation: mean IoU and pixel accuracy from an accumulated confusion matrix.

The conventions are mmsegmentation's (``IoUMetric``): intersections and unions are summed
over the whole dataset before dividing; a class whose union is empty (absent from both the
ground truth and the predictions) is left out of the mean (a ``nanmean``); a class that is
predicted but never present counts with IoU 0. Pixels labelled ``ignore_index`` count
nowhere. Pixel accuracy (mmseg's ``aAcc``) is correct pixels over all non-ignored pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.metrics.bootstrap import ItemScores


def confusion_matrix(truth: np.ndarray, prediction: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """``(C, C + 1)`` pixel counts of (true class, predicted class); the extra last column
    collects predictions outside ``0 .. C-1`` (a class the dataset does not have)."""
    truth = np.asarray(truth).ravel().astype(np.int64)
    prediction = np.asarray(prediction).ravel().astype(np.int64)
    if truth.shape != prediction.shape:
        raise ValueError(f"{truth.size} true pixels but {prediction.size} predicted")
    valid = truth != ignore_index if ignore_index is not None else np.ones(truth.shape, bool)
    bad = truth[valid & ((truth < 0) | (truth >= num_classes))]
    if bad.size:
        raise ValueError(f"true class {int(bad[0])} is outside 0..{num_classes - 1} (ignore index {ignore_index})")
    pred = prediction[valid]
    pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)
    counts = np.bincount(truth[valid] * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class; NaN for a class with an empty union."""
    c = confusion.shape[0]
    inter = np.diag(confusion[:, :c]).astype(np.float64)
    union = confusion.sum(axis=1) + confusion[:, :c].sum(axis=0) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def segmentation_scores(confusion: np.ndarray) -> dict[str, float]:
    """``mIoU`` (nanmean of ``class_iou``) and ``pixel_acc``; NaN when no pixel is labelled."""
    total = confusion.sum()
    if total == 0:
        return {"mIoU": math.nan, "pixel_acc": math.nan}
    c = confusion.shape[0]
    return {"mIoU": float(np.nanmean(class_iou(confusion))),
            "pixel_acc": float(np.trace(confusion[:, :c]) / total)}


def segmentation_scores_batch(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """``segmentation_scores`` of each of ``(b, C, C + 1)`` confusion matrices, as ``(b,)`` arrays."""
    confusions = np.asarray(confusions, dtype=np.float64)
    c = confusions.shape[1]
    inter = np.diagonal(confusions[:, :, :c], axis1=1, axis2=2)
    union = confusions.sum(axis=2) + confusions[:, :, :c].sum(axis=1) - inter
    total = confusions.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
        present = np.isfinite(iou).sum(axis=1)
        miou = np.where(present > 0, np.nansum(iou, axis=1) / np.maximum(present, 1), np.nan)
        acc = inter.sum(axis=1) / total
    return {"mIoU": np.where(total > 0, miou, np.nan), "pixel_acc": np.where(total > 0, acc, np.nan)}


class ImageConfusions(ItemScores):
    """Each image's confusion matrix (sparse: an image holds a few classes): the dataset's
    matrix is their sum, a resampled set's their weighted sum."""

    def __init__(self, rows: list[Any], num_classes: int) -> None:
        """``rows``: each image's ``row(confusion_matrix(...))``, in image order."""
        from scipy import sparse

        self.n, self.c = len(rows), num_classes
        width = num_classes * (num_classes + 1)
        self.matrix = sparse.vstack(rows, format="csr") if rows else sparse.csr_matrix((0, width))

    @staticmethod
    def row(confusion: np.ndarray) -> Any:
        """One image's confusion matrix as a sparse row (what is held per image)."""
        from scipy import sparse

        return sparse.csr_matrix(confusion.reshape(1, -1))

    def metrics(self) -> dict[str, float]:
        total = np.asarray(self.matrix.sum(axis=0)).reshape(self.c, self.c + 1).astype(np.int64)
        return segmentation_scores(total)

    def resample(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        summed = np.asarray(self.matrix.T.dot(weights.T.astype(np.float64)).T)
        return segmentation_scores_batch(summed.reshape(len(weights), self.c, self.c + 1))
