"""Tasks: a metric, a training loop and an evaluation loop over (possibly compressed) images."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bench.config import Schedule
from bench.datasets.base import Dataset, ImageSet
from bench.models.base import Model


class Task(ABC):
    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def metric_names(self, dataset: Dataset) -> tuple[str, ...]:
        """The metrics this task reports on ``dataset``, the primary one first."""

    def problems(self, dataset: Dataset, model: Model) -> list[str]:
        """Why ``model`` cannot run this task on ``dataset`` (checked before any work)."""
        if model.task != self.name:
            return [f"model {model.name!r} is a {model.task} model, not a {self.name} model"]
        return []

    @abstractmethod
    def build(self, model: Model, dataset: ImageSet) -> nn.Module:
        """The untrained (or pretrained) network for ``dataset``."""

    @abstractmethod
    def references(self, net: nn.Module, model: Model, originals: ImageSet, device: str) -> Any:
        """The ground truth the metric compares against: the dataset's own targets, or the
        model's predictions on the originals for an unlabelled dataset."""

    @abstractmethod
    def evaluate(
        self, net: nn.Module, model: Model, images: Sequence[np.ndarray], references: Any, device: str
    ) -> dict[str, float]:
        """Metrics of ``net`` on ``images`` against ``references``."""

    @abstractmethod
    def train(
        self, net: nn.Module, model: Model, images: Sequence[np.ndarray], data: ImageSet,
        schedule: Schedule, seed: int, device: str,
    ) -> None:
        """Optimise ``net`` in place on ``images`` with the targets of ``data``."""


def validate_task_class(name: str, obj: object) -> None:
    """Registry check: a complete ``Task`` subclass called like one, registered under its ``name``."""
    from bench.registry import PluginKind

    PluginKind(Task, {"name": str, "description": str})(name, obj)


def optimizer_for(net: nn.Module, schedule: Schedule, n_images: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a cosine decay over the schedule's steps: the same for every task."""
    opt = torch.optim.AdamW(net.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    steps = schedule.epochs * math.ceil(n_images / schedule.batch_size)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
