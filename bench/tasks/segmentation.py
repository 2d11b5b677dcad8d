"""Semantic segmentation: mean IoU and pixel accuracy (mmsegmentation's conventions).

The classes are the values of the label maps: ``targets["mask_classes"]`` names them
(index = value) and ``targets["ignore_index"]`` marks unlabelled pixels. A dataset that
gives neither follows the embedded shapes convention, 0 = background and ``c + 1`` =
class ``c``: background is then a class like any other and counts in the mean IoU.
A class absent from both the ground truth and the predictions has no IoU and is left out
of the mean (``bench.metrics.segmentation``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.config import Schedule
from bench.datasets.base import Dataset, ImageSet
from bench.errors import DatasetError
from bench.metrics.segmentation import confusion_matrix, segmentation_scores
from bench.models.base import Model
from bench.tasks.base import Task, optimizer_for
from bench.tasks.detection import class_maps, missing_targets

#: Images per forward pass when evaluating, unless the model says (``eval_batch``).
EVAL_BATCH = 32
#: Ignore index of label maps that do not say (mmseg's and Cityscapes' convention).
DEFAULT_IGNORE_INDEX = 255


@dataclass(frozen=True)
class MaskReferences:
    """Label maps per image, the names of their values, and the value that means unlabelled."""

    masks: Sequence[np.ndarray]
    classes: tuple[str, ...]
    ignore_index: int


def mask_classes(data: ImageSet) -> tuple[str, ...]:
    if "mask_classes" in data.targets:
        return tuple(data.targets["mask_classes"])
    if not data.classes:
        raise DatasetError(f"dataset {data.dataset!r} ({data.split}) does not name its mask classes")
    return ("background", *data.classes)  # shapes: 0 = background, c + 1 = class c


def mask_references(data: ImageSet) -> MaskReferences:
    """The label maps of ``data``: an ``(N, H, W)`` array or a list of ``(H, W)`` arrays."""
    masks = data.targets.get("masks")
    if masks is None:
        raise DatasetError(f"dataset {data.dataset!r} ({data.split}) has no label maps to segment")
    if len(masks) != len(data):
        raise DatasetError(f"dataset {data.dataset!r}: {len(masks)} label maps for {len(data)} images")
    ignore = int(data.targets.get("ignore_index", DEFAULT_IGNORE_INDEX))
    return MaskReferences(masks, mask_classes(data), ignore)


def _logits(net: nn.Module, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    out = net(x)
    if isinstance(out, dict):  # torchvision: {"out": ..., "aux": ...}
        out = out["out"]
    if tuple(out.shape[-2:]) != size:
        out = F.interpolate(out.float(), size=size, mode="bilinear", align_corners=False)
    return out


def _same_size_batches(images: Sequence[np.ndarray], limit: int) -> Iterator[list[int]]:
    """Runs of consecutive indices whose images share a size, at most ``limit`` long."""
    run: list[int] = []
    for i, im in enumerate(images):
        if run and (len(run) == limit or im.shape != images[run[0]].shape):
            yield run
            run = []
        run.append(i)
    if run:
        yield run


@torch.no_grad()
def segment(net: nn.Module, model: Model, images: Sequence[np.ndarray], device: str,
            to_data: np.ndarray | None = None) -> Iterator[tuple[list[int], np.ndarray]]:
    """(indices, predicted label maps ``(n, H, W)`` in dataset classes, -1 for none) per batch."""
    net.eval()
    for idx in _same_size_batches(images, getattr(model, "eval_batch", EVAL_BATCH)):
        batch = [images[i] for i in idx]
        pred = _logits(net, model.preprocess(batch).to(device), batch[0].shape[:2]).argmax(1).cpu().numpy()
        yield idx, (pred if to_data is None else to_data[pred])


class Segmentation(Task):
    name = "segmentation"
    description = "mean IoU over classes and pixel accuracy (mmseg conventions, ignore index honoured)"

    def metric_names(self, dataset: Dataset) -> tuple[str, ...]:
        return ("mIoU", "pixel_acc")

    def problems(self, dataset: Dataset, model: Model) -> list[str]:
        problems = super().problems(dataset, model)
        if missing_targets(dataset, ("masks",)):
            problems.append(f"dataset {dataset.name!r} has no masks: the segmentation task needs label maps")
        return problems

    def build(self, model: Model, dataset: ImageSet) -> nn.Module:
        return model.build(len(mask_classes(dataset)))

    def references(self, net: nn.Module, model: Model, originals: ImageSet, device: str) -> MaskReferences:
        refs = mask_references(originals)
        class_maps(model, refs.classes, f"dataset {originals.dataset!r}")  # fail early on no overlap
        return refs

    def evaluate(
        self, net: nn.Module, model: Model, images: Sequence[np.ndarray], references: MaskReferences, device: str
    ) -> dict[str, float]:
        if len(images) != len(references.masks):
            raise ValueError(f"{len(images)} images but {len(references.masks)} label maps")
        to_data, _ = class_maps(model, references.classes, "dataset")
        c = len(references.classes)
        confusion = np.zeros((c, c + 1), np.int64)
        for idx, pred in segment(net, model, images, device, to_data):
            for i, p in zip(idx, pred):
                mask = np.asarray(references.masks[i])
                if mask.shape != p.shape:
                    raise ValueError(f"image {i}: label map {mask.shape} but prediction {p.shape}")
                confusion += confusion_matrix(mask, p, c, references.ignore_index)
        return segmentation_scores(confusion)

    def train(
        self, net: nn.Module, model: Model, images: Sequence[np.ndarray], data: ImageSet,
        schedule: Schedule, seed: int, device: str,
    ) -> None:
        """Pixel-wise cross-entropy (ignored pixels left out), AdamW with a cosine decay,
        random horizontal flips. Images of different sizes in one batch are padded
        (image with zeros, label map with the ignore index)."""
        refs = mask_references(data)
        if len(refs.masks) != len(images):
            raise ValueError(f"{len(images)} images but {len(refs.masks)} label maps")
        _, to_model = class_maps(model, refs.classes, f"dataset {data.dataset!r}")
        gen = torch.Generator().manual_seed(seed)
        net.to(device).train()
        opt, sched = optimizer_for(net, schedule, len(images))
        for _ in range(schedule.epochs):
            order = torch.randperm(len(images), generator=gen).tolist()
            for i in range(0, len(order), schedule.batch_size):
                idx = order[i : i + schedule.batch_size]
                x, y = _train_batch(model, [images[j] for j in idx], [refs.masks[j] for j in idx],
                                    refs.ignore_index, to_model)
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
                y = y.to(device)
                loss = F.cross_entropy(_logits(net, x.to(device), tuple(y.shape[-2:])), y, ignore_index=-100)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        net.eval()


def _train_batch(model: Model, images: list[np.ndarray], masks: list[np.ndarray], ignore_index: int,
                 to_model: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input and class targets (-100 = ignored), padded to a common size."""
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    if any(im.shape[:2] != (h, w) for im in images):
        images = [np.pad(im, ((0, h - im.shape[0]), (0, w - im.shape[1]), (0, 0))) for im in images]
        masks = [np.pad(np.asarray(m), ((0, h - m.shape[0]), (0, w - m.shape[1])), constant_values=ignore_index)
                 for m in masks]
    y = torch.from_numpy(np.stack(masks).astype(np.int64))
    ignored = y == ignore_index
    if to_model is not None:
        y = torch.from_numpy(to_model)[y.clamp(0, len(to_model) - 1)]
    y[ignored] = -100
    y[y < 0] = -100
    return model.preprocess(images), y
