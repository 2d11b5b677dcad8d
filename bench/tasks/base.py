"""Tasks: what a network is trained and scored on, in small pieces.

A task supplies its targets, how a horizontal flip mirrors them, how a batch of them is
made, its loss and its metric; ``bench.train`` supplies the one training loop, for pixel
networks (``Task.train``: scenarios A and C) and for compressed-domain networks reading a
codec's latents (``bench.domain``: scenario D, with or without an encoder trained jointly).
Evaluation is the task's ``predict`` (pixel networks) or ``predictions`` (any network's
outputs, batch by batch), then its ``score``: scenario D scores latents with the same method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bench.config import Schedule
from bench.datasets.base import Dataset, ImageSet, image_shapes
from bench.metrics.bootstrap import ItemScores, Scores
from bench.models.base import Model
from bench.train import to_device, train_on_images

#: Images per forward pass when evaluating, unless the model says (``eval_batch``).
EVAL_BATCH = 32


class Task(ABC):
    name: ClassVar[str]
    #: Part of every key of the task's cells and weights: bump it when what the task
    #: computes (its targets, loss, augmentation or metric) changes.
    version: ClassVar[str]
    description: ClassVar[str] = ""
    #: Probability of a random horizontal flip of each training item (0: no flips).
    hflip: ClassVar[float] = 0.5

    def identity(self) -> dict[str, str]:
        return {"task": self.name, "version": self.version}

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

    # -- evaluation: predictions, then their score ------------------------------------------

    @abstractmethod
    def predictions(self, outputs: Any, sizes: Sequence[tuple[int, int]], frame: tuple[int, int]) -> list[Any]:
        """Per-image predictions, in the network's classes, from one batch of a network's
        outputs in eval mode: ``sizes`` are the images' ``(H, W)``, ``frame`` the ``(H, W)``
        in image pixels that the batch's (padded) input covers."""

    @abstractmethod
    def score(self, predictions: Iterable[Any], references: Any, model: Model | None = None) -> dict[str, float]:
        """Metrics of per-image ``predictions`` (in image order) against ``references``;
        ``model`` is the pixel model whose classes the predictions are in (None: the
        dataset's own classes, as a network built for the dataset has)."""

    def score_items(self, predictions: Iterable[Any], references: Any,
                    model: Model | None = None) -> ItemScores | None:
        """The per-image statistics behind ``score`` (``bench.metrics.bootstrap``): its
        metrics on the whole set and on resampled sets, for bootstrap intervals. None (the
        default): the task's metrics get no intervals."""
        return None

    def scores(self, predictions: Iterable[Any], references: Any, model: Model | None = None) -> Scores:
        """``score``'s metrics with their bootstrap replicates, where the task has ``score_items``
        (and no subclass below the one that defines it has a ``score`` of its own: a plugin
        that derives from a built-in task and scores differently keeps its own metrics)."""
        owner = {name: next(k for k in type(self).__mro__ if name in k.__dict__) for name in ("score", "score_items")}
        if owner["score_items"] is Task or not issubclass(owner["score_items"], owner["score"]):
            return Scores(self.score(predictions, references, model))
        items = self.score_items(predictions, references, model)
        return Scores.of(items) if items is not None else Scores(self.score(predictions, references, model))

    @torch.no_grad()
    def predict(self, net: nn.Module, model: Model, images: Sequence[np.ndarray], device: str) -> Iterator[Any]:
        """Per-image predictions of the pixel network ``net`` on ``images``: runs of
        same-size images, ``eval_batch`` at a time (the model's, or 32)."""
        net.eval()
        for idx in same_size_batches(images, getattr(model, "eval_batch", EVAL_BATCH)):
            batch = [images[i] for i in idx]
            inputs = to_device(self.batch_inputs(model, batch, [False] * len(batch)), device)
            sizes = [(int(im.shape[0]), int(im.shape[1])) for im in batch]
            yield from self.predictions(net(*inputs), sizes, sizes[0])

    def evaluate(
        self, net: nn.Module, model: Model, images: Sequence[np.ndarray], references: Any, device: str
    ) -> Scores:
        """Metrics of ``net`` on ``images`` against ``references``, with their bootstrap replicates."""
        return self.scores(self.predict(net, model, images, device), references, model)

    # -- training: targets, their mirror and batches, the loss --------------------------------

    @abstractmethod
    def training_targets(self, data: ImageSet, model: Model | None = None) -> Sequence[Any]:
        """One training target per image of ``data``, in the classes of ``model``'s network
        (None: the dataset's own). May compute each item when it is indexed."""

    def augmentation(self, schedule: Schedule) -> Callable[[np.ndarray, Any, int], tuple[np.ndarray, Any]] | None:
        """What a pixel training does to each image and its target besides the flip, as
        ``(image, target, seed) → (image, target)`` with a seed of the item's own (drawn
        with the epoch's order, so any loader worker gives the same result); None: nothing.
        A grid whose schedule asks for an augmentation the task lacks (``crop_scale``) is
        refused before any work. Here: flips only."""
        return None

    def flip_target(self, target: Any, width: int) -> Any:
        """``target`` mirrored about a frame ``width`` image pixels wide (an image's width,
        or the latent grid's that covers it). A label is left as it is."""
        return target

    @abstractmethod
    def collate_targets(self, targets: list[Any], frame: tuple[int, int]) -> Any:
        """One batch of targets, for inputs that cover ``frame`` ``(H, W)`` image pixels."""

    def batch_inputs(self, model: Model, images: list[np.ndarray], flips: list[bool]) -> tuple[Any, ...]:
        """The pixel network's positional inputs for ``images``, each mirrored where
        ``flips`` says: one ``model.preprocess`` batch, mirrored after preprocessing."""
        x = model.preprocess(images)
        flip = torch.tensor(flips, dtype=torch.bool)
        x[flip] = x[flip].flip(-1)
        return (x,)

    def training_outputs(self, net: nn.Module, inputs: tuple[Any, ...], targets: Any) -> Any:
        """What ``net`` gives in train mode for ``loss``: ``net(*inputs)``; a network that
        computes its own loss (torchvision's detectors) is given the targets too."""
        return net(*inputs)

    @abstractmethod
    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """The training loss of a batch's ``outputs`` against its ``targets``."""

    def train(
        self, net: nn.Module, model: Model, images: Sequence[np.ndarray], data: ImageSet,
        schedule: Schedule, seed: int, device: str, **options: Any,
    ) -> None:
        """Optimise ``net`` in place on ``images`` with the targets of ``data``: the one
        training loop (``bench.train``) with this task's pieces; ``options`` go to
        ``bench.train.fit`` (``num_workers``, ``checkpoint``)."""
        train_on_images(self, net, model, images, data, schedule, seed, device, **options)

    # -- scenario D: the task's network on latents ------------------------------------
    def latent_problem(self, model: Model, arch: str) -> str | None:
        """Why scenario D cannot build ``arch`` from ``model``'s network (checked before any
        work), or None. The default network is the whole pixel network adapted."""
        return None

    def latent_network(self, pixel: nn.Module, arch: str, splits: Sequence[int], drop_stages: int) -> nn.Module:
        """Scenario D's network from the trained ``pixel`` network (a copy), reading latents
        made of parts with ``splits`` channels; called as ``net(latents, sizes)``. By default
        the whole network is adapted (``bench.domain.nets.adapt``), as a classifier is; a task
        whose network takes more than an image, or adapts only its backbone, overrides this."""
        from bench.domain.nets import LatentClassifier, adapt

        return LatentClassifier(adapt(pixel, arch, splits, drop_stages))

    def forward(self, net: nn.Module, model: Model, images: Sequence[np.ndarray], device: str) -> Any:
        """``net`` on ``images`` in eval mode, outputs as they come (the cost table times it)."""
        return net(*to_device(self.batch_inputs(model, list(images), [False] * len(images)), device))


def same_size_batches(images: Sequence[np.ndarray], limit: int) -> Iterator[list[int]]:
    """Runs of consecutive indices whose images share a size, at most ``limit`` long."""
    run: list[int] = []
    shapes = image_shapes(images)  # a lazy set's sizes, without reading it
    for i, shape in enumerate(shapes):
        if run and (len(run) == limit or shape != shapes[run[0]]):
            yield run
            run = []
        run.append(i)
    if run:
        yield run


def validate_task_class(name: str, obj: object) -> None:
    """Registry check: a complete ``Task`` subclass called like one, registered under its ``name``."""
    from bench.registry import PluginKind

    PluginKind(Task, {"name": str, "version": str, "description": str})(name, obj)
