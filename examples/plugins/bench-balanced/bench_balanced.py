"""Classification scored per class: balanced accuracy and macro-F1.

Top-1 accuracy hides what compression does to rare classes: a codec that blurs away the one
class with fine texture costs little top-1 when that class is rare. Balanced accuracy (the
mean recall over classes) and macro-F1 (the mean F1 over classes) weigh every class alike.

A complete third-party task: it reuses bench's classification model, training and references
(``bench.tasks.classification``) and changes only what it measures.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from bench.datasets.base import Dataset
from bench.models.base import Model
from bench.tasks.classification import ClassLabels, Classification


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the fraction of them predicted right."""
    classes = np.unique(labels)
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in classes]))


def macro_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean F1 over every class in ``labels`` or ``predicted`` (0 for a class never right)."""
    scores = []
    for c in np.union1d(labels, predicted):
        tp = np.sum((predicted == c) & (labels == c))
        fp, fn = np.sum((predicted == c) & (labels != c)), np.sum((predicted != c) & (labels == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


class BalancedClassification(Classification):
    """Classification's network, training and predictions; its own metrics."""

    name = "balanced-classification"
    version = "bench-balanced-0.1.0"  # in every cell key: bump it when the metrics change
    description = ("balanced accuracy and macro-F1 (every class weighs alike); "
                   "on unlabelled photos, against predictions on the originals")

    def metric_names(self, dataset: Dataset) -> tuple[str, ...]:
        names = ("balanced_accuracy", "macro_f1")
        return names if dataset.has_labels else tuple(f"{n}_agreement" for n in names)

    def problems(self, dataset: Dataset, model: Model) -> list[str]:
        # any classification model serves: the task differs from classification only in its metrics
        if model.task != Classification.name:
            return [f"model {model.name!r} is a {model.task} model; {self.name} needs a classification model"]
        if not model.pretrained and not dataset.has_labels:
            return [f"model {model.name!r} is trained from scratch and needs a labelled dataset, "
                    f"but {dataset.name!r} has no labels"]
        return []

    def score(self, predictions: Iterable[torch.Tensor], references: ClassLabels,
              model: Model | None = None) -> dict[str, float]:
        """The metrics of per-image predictions (classes, best first) against ``references``."""
        predicted = np.array([int(top[0]) for top in predictions])
        labels = np.asarray(references.labels)
        if len(predicted) != len(labels):
            raise ValueError(f"{len(predicted)} predictions for {len(labels)} labels")
        suffix = "_agreement" if references.agreement else ""
        return {f"balanced_accuracy{suffix}": balanced_accuracy(labels, predicted),
                f"macro_f1{suffix}": macro_f1(labels, predicted)}
