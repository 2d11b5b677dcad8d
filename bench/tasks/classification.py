"""Image classification: top-1 / top-5 accuracy (or agreement, on unlabelled photos)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.config import Schedule
from bench.datasets.base import Dataset, ImageSet
from bench.models.base import Model
from bench.tasks.base import Task, optimizer_for

EVAL_BATCH = 64


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """How many rows of ``logits`` have ``labels`` among their ``k`` largest entries."""
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


@torch.no_grad()
def predict_topk(net: nn.Module, model: Model, images: Sequence[np.ndarray], device: str, k: int = 5) -> torch.Tensor:
    """The ``k`` highest-scoring classes per image, best first (N × k): batch by batch, so
    a set of any size keeps k indices per image, not its logits."""
    net.eval()
    out = []
    for i in range(0, len(images), EVAL_BATCH):
        x = model.preprocess(images[i : i + EVAL_BATCH]).to(device)
        logits = net(x).float()
        out.append(logits.topk(min(k, logits.shape[1]), dim=1).indices.cpu())
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

    def evaluate(
        self, net: nn.Module, model: Model, images: Sequence[np.ndarray], references: ClassLabels, device: str
    ) -> dict[str, float]:
        top = predict_topk(net, model, images, device)
        labels = torch.as_tensor(references.labels, dtype=torch.long)
        n = len(labels)
        names = ("top1_agreement", "top5_agreement") if references.agreement else ("top1", "top5")
        return {names[0]: topk_hits(top, labels, 1) / n, names[1]: topk_hits(top, labels, 5) / n}

    def train(
        self, net: nn.Module, model: Model, images: Sequence[np.ndarray], data: ImageSet,
        schedule: Schedule, seed: int, device: str,
    ) -> None:
        """AdamW with a cosine learning-rate decay, random horizontal flips, cross-entropy."""
        assert data.labels is not None
        x_all = model.preprocess(images)
        y_all = torch.as_tensor(data.labels, dtype=torch.long)
        gen = torch.Generator().manual_seed(seed)
        net.to(device).train()
        opt, sched = optimizer_for(net, schedule, len(x_all))
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(schedule.epochs):
            order = torch.randperm(len(x_all), generator=gen)
            for i in range(0, len(order), schedule.batch_size):
                idx = order[i : i + schedule.batch_size]
                x = x_all[idx]
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x[flip] = x[flip].flip(-1)
                loss = loss_fn(net(x.to(device)), y_all[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        net.eval()
