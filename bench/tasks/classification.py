"""Image classification: top-1 / top-5 accuracy (or agreement, on unlabelled photos)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.datasets.base import Dataset, ImageSet
from bench.errors import DatasetError
from bench.models.base import Model
from bench.tasks.base import Task

EVAL_BATCH = 64


def _top(logits: torch.Tensor, k: int) -> torch.Tensor:
    return logits.float().topk(min(k, logits.shape[1]), dim=1).indices.cpu()


@torch.no_grad()
def predict_topk(net: nn.Module, model: Model, images: Sequence[np.ndarray], device: str, k: int = 5) -> torch.Tensor:
    """The ``k`` highest-scoring classes per image, best first (N × k): batch by batch, so
    a set of any size keeps k indices per image, not its logits."""
    net.eval()
    out = []
    for i in range(0, len(images), EVAL_BATCH):
        x = model.preprocess(images[i : i + EVAL_BATCH]).to(device)
        out.append(_top(net(x), k))
    return torch.cat(out)


def topk_hits(top: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """How many rows of ``top`` (classes, best first) have ``labels`` among their first ``k``."""
    return int((top[:, :k] == labels[:, None]).any(dim=1).sum())


@dataclass(frozen=True)
class ClassLabels:
    """What predictions are compared against; ``agreement`` when they are the model's
    own top-1 predictions on the original images rather than dataset labels."""

    labels: np.ndarray
    agreement: bool


class Classification(Task):
    name = "classification"
    version = "1"
    description = "top-1/top-5 accuracy; on unlabelled photos, agreement with predictions on the originals"

    def metric_names(self, dataset: Dataset) -> tuple[str, ...]:
        return ("top1", "top5") if dataset.has_labels else ("top1_agreement", "top5_agreement")

    def problems(self, dataset: Dataset, model: Model) -> list[str]:
        problems = super().problems(dataset, model)
        if not model.pretrained and not dataset.has_labels:
            problems.append(f"model {model.name!r} is trained from scratch and needs a labelled dataset, "
                            f"but {dataset.name!r} has no labels")
        return problems

    def build(self, model: Model, dataset: ImageSet) -> nn.Module:
        return model.build(len(dataset.classes) if dataset.classes else None)

    def references(self, net: nn.Module, model: Model, originals: ImageSet, device: str) -> ClassLabels:
        if originals.labels is not None:
            return ClassLabels(originals.labels, agreement=False)
        own = predict_topk(net, model, originals.images, device, k=1)[:, 0].numpy()
        return ClassLabels(own, agreement=True)

    # -- evaluation -------------------------------------------------------------------------

    def predictions(self, outputs: torch.Tensor, sizes: Sequence[tuple[int, int]],
                    frame: tuple[int, int]) -> list[torch.Tensor]:
        """The five highest-scoring classes per image, best first."""
        return list(_top(outputs, 5).unbind(0))

    def predict(self, net: nn.Module, model: Model, images: Sequence[np.ndarray], device: str) -> Iterator[torch.Tensor]:
        yield from predict_topk(net, model, images, device)

    def score(self, predictions: Iterable[torch.Tensor], references: ClassLabels,
              model: Model | None = None) -> dict[str, float]:
        top = list(predictions)
        labels = torch.as_tensor(references.labels, dtype=torch.long)
        n = len(labels)
        if len(top) != n:
            raise ValueError(f"{len(top)} predictions for {n} labels")
        top_k = torch.stack(top) if top else torch.zeros((0, 1), dtype=torch.long)
        names = ("top1_agreement", "top5_agreement") if references.agreement else ("top1", "top5")
        return {names[0]: topk_hits(top_k, labels, 1) / n, names[1]: topk_hits(top_k, labels, 5) / n}

    # -- training: cross-entropy on the class labels -------------------------------------------

    def training_targets(self, data: ImageSet, model: Model | None = None) -> torch.Tensor:
        if data.labels is None:
            raise DatasetError(f"dataset {data.dataset!r} ({data.split}) has no class labels to train on")
        return torch.as_tensor(data.labels, dtype=torch.long)

    def collate_targets(self, targets: list[torch.Tensor], frame: tuple[int, int]) -> torch.Tensor:
        return torch.stack(targets)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)
