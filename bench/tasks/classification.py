"""Image classification: top-1 / top-5 accuracy (or agreement, on unlabelled photos).

A pretrained model that names its outputs (``output_classes``: ImageNet's WordNet ids) is
scored in its own classes: each dataset label becomes the index of the model's class of the
same name (``bench.tasks.detection.class_maps``), so top-1 and top-5 are over all of the
model's classes, and finetuning (scenario C) trains those outputs. Every dataset class must
have a counterpart; a dataset renames its classes to the model's names where they differ
(``imagefolder``'s ``class_map``). A network trained here, and one scored without its pixel
model (``model`` None: scenario D's, trained on the dataset's own labels), is in the
dataset's classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from bench.config import Schedule

from bench.datasets.base import Dataset, ImageSet
from bench.errors import BenchError, DatasetError
from bench.metrics.bootstrap import ItemScores
from bench.models.base import Model
from bench.tasks.base import Task
from bench.tasks.detection import class_maps

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


def resized_crop(image: np.ndarray, target: Any, seed: int, scale: tuple[float, float],
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[np.ndarray, Any]:
    """A random crop of ``image`` (torchvision's ``RandomResizedCrop.get_params``, drawn
    from ``seed``) resized back to its size with bilinear interpolation; ``target`` unchanged."""
    from torchvision.transforms import RandomResizedCrop
    from torchvision.transforms import functional as TF

    pil = Image.fromarray(image)
    with torch.random.fork_rng(devices=[]):  # the item's seed, not the run's generator
        torch.manual_seed(seed)
        top, left, h, w = RandomResizedCrop.get_params(pil, list(scale), list(ratio))
    out = TF.resized_crop(pil, top, left, h, w, [image.shape[0], image.shape[1]],
                          interpolation=TF.InterpolationMode.BILINEAR)
    return np.asarray(out), target


def topk_hit_flags(top: torch.Tensor, labels: torch.Tensor, k: int) -> np.ndarray:
    """Per row of ``top`` (classes, best first), whether its label is among the first ``k``."""
    return (top[:, :k] == labels[:, None]).any(dim=1).numpy()


def topk_hits(top: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """How many rows of ``top`` (classes, best first) have ``labels`` among their first ``k``."""
    return int(topk_hit_flags(top, labels, k).sum())


class Hits(ItemScores):
    """Per image, whether each top-k metric counts it a hit: the metrics are hit rates."""

    def __init__(self, flags: dict[str, np.ndarray]) -> None:
        self.flags = flags
        self.n = len(next(iter(flags.values())))

    def metrics(self) -> dict[str, float]:
        return {name: int(f.sum()) / self.n for name, f in self.flags.items()}

    def resample(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        return {name: weights @ f.astype(np.float64) / self.n for name, f in self.flags.items()}


def model_labels(model: Model | None, classes: Sequence[str] | None, what: str) -> np.ndarray | None:
    """Dataset label → the index of ``model``'s output class of the same name, or None when
    the labels already are the network's indices: no model, a model trained here, a model
    that does not name its outputs, or one whose classes are the dataset's. A dataset class
    the model does not have is a ``BenchError`` naming it (``what`` names the dataset)."""
    if model is None or not model.pretrained or not classes or not hasattr(model, "output_classes"):
        return None
    own = tuple(model.output_classes())
    if own == tuple(classes):
        return None
    to_model = class_maps(model, classes, what)[1]
    if to_model is not None and (missing := [c for c, m in zip(classes, to_model) if m < 0]):
        more = f" (nor are {', '.join(missing[1:6])}{' ...' if len(missing) > 6 else ''})" if len(missing) > 1 else ""
        raise BenchError(f"{what}: class {missing[0]!r}{more} is not one of model {model.name!r}'s {len(own)} "
                         f"classes ({', '.join(own[:3])}, ...); classes are matched by name")
    return to_model


@dataclass(frozen=True)
class ClassLabels:
    """What predictions are compared against; ``agreement`` when they are the model's
    own top-1 predictions on the original images rather than dataset labels, which are
    labels into ``classes``."""

    labels: np.ndarray
    agreement: bool
    classes: tuple[str, ...] | None = None

    def for_model(self, model: Model | None, what: str = "dataset") -> np.ndarray:
        """The labels as indices into the outputs of ``model``'s network (``model_labels``);
        the model's own predictions as they are."""
        to_model = None if self.agreement else model_labels(model, self.classes, what)
        return self.labels if to_model is None else to_model[np.asarray(self.labels, dtype=np.int64)]


class Classification(Task):
    name = "classification"
    version = "2"  # 2: a pretrained model is scored in its own classes, matched by name
    description = "top-1/top-5 accuracy; on unlabelled photos, agreement with predictions on the originals"

    def metric_names(self, dataset: Dataset) -> tuple[str, ...]:
        return ("top1", "top5") if dataset.has_labels else ("top1_agreement", "top5_agreement")

    def problems(self, dataset: Dataset, model: Model) -> list[str]:
        problems = super().problems(dataset, model)
        if not model.pretrained and not dataset.has_labels:
            problems.append(f"model {model.name!r} is trained from scratch and needs a labelled dataset, "
                            f"but {dataset.name!r} has no labels")
        known = getattr(dataset, "known_classes", None)  # a dataset that can tell its classes before loading
        classes = known() if dataset.has_labels and callable(known) else None
        try:
            model_labels(model, classes, f"dataset {dataset.name!r}")
        except BenchError as exc:
            renames = "class_map" in type(dataset.params).model_fields
            problems.append(str(exc) + (" (or renamed by the dataset's class_map)" if renames else ""))
        return problems

    def build(self, model: Model, dataset: ImageSet) -> nn.Module:
        return model.build(len(dataset.classes) if dataset.classes else None)

    def references(self, net: nn.Module, model: Model, originals: ImageSet, device: str) -> ClassLabels:
        if originals.labels is not None:
            refs = ClassLabels(originals.labels, agreement=False, classes=originals.classes)
            refs.for_model(model, f"dataset {originals.dataset!r}")  # a class the model lacks fails here
            return refs
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
        return self.score_items(predictions, references, model).metrics()

    def score_items(self, predictions: Iterable[torch.Tensor], references: ClassLabels,
                    model: Model | None = None) -> Hits:
        top = list(predictions)
        labels = torch.as_tensor(references.for_model(model), dtype=torch.long)
        n = len(labels)
        if len(top) != n:
            raise ValueError(f"{len(top)} predictions for {n} labels")
        top_k = torch.stack(top) if top else torch.zeros((0, 1), dtype=torch.long)
        names = ("top1_agreement", "top5_agreement") if references.agreement else ("top1", "top5")
        return Hits({names[0]: topk_hit_flags(top_k, labels, 1), names[1]: topk_hit_flags(top_k, labels, 5)})

    # -- training: cross-entropy on the class labels -------------------------------------------

    def training_targets(self, data: ImageSet, model: Model | None = None) -> torch.Tensor:
        if data.labels is None:
            raise DatasetError(f"dataset {data.dataset!r} ({data.split}) has no class labels to train on")
        labels = ClassLabels(data.labels, agreement=False, classes=data.classes)
        return torch.as_tensor(labels.for_model(model, f"dataset {data.dataset!r}"), dtype=torch.long)

    def augmentation(self, schedule: Schedule) -> Callable[[np.ndarray, Any, int], tuple[np.ndarray, Any]] | None:
        """torchvision's random resized crop (``schedule.crop_scale``), resized back to the
        image's size; the label stays."""
        if schedule.crop_scale is None:
            return None
        return partial(resized_crop, scale=schedule.crop_scale)

    def collate_targets(self, targets: list[torch.Tensor], frame: tuple[int, int]) -> torch.Tensor:
        return torch.stack(targets)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)
