"""Semantic segmentation: mean IoU and pixel accuracy (mmsegmentation's conventions).

The classes are the values of the label maps: ``targets["mask_classes"]`` names them
(index = value) and ``targets["ignore_index"]`` marks unlabelled pixels. A dataset that
gives neither follows the embedded shapes convention, 0 = background and ``c + 1`` =
class ``c``: background is then a class like any other and counts in the mean IoU.
A class absent from both the ground truth and the predictions has no IoU and is left out
of the mean (``bench.metrics.segmentation``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.datasets.base import Dataset, ImageSet
from bench.errors import DatasetError
from bench.metrics.segmentation import ImageConfusions, confusion_matrix
from bench.models.base import Model
from bench.tasks.base import Task
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


#: The target value of pixels the loss leaves out (``F.cross_entropy``'s default).
IGNORED = -100


def _resized(out: Any, size: tuple[int, int]) -> torch.Tensor:
    """A segmenter's logits (torchvision's ``{"out": ..., "aux": ...}``: the ``out``) at ``size``."""
    if isinstance(out, dict):
        out = out["out"]
    if tuple(out.shape[-2:]) != tuple(size):
        out = F.interpolate(out.float(), size=tuple(size), mode="bilinear", align_corners=False)
    return out


class MaskTargets(Sequence):
    """Training targets per image, made when indexed: the label map as class indices of
    the network (``to_model``; None: the dataset's own), ignored pixels ``IGNORED``."""

    def __init__(self, refs: MaskReferences, to_model: np.ndarray | None) -> None:
        self.refs, self.to_model = refs, to_model

    def __len__(self) -> int:
        return len(self.refs.masks)

    def __getitem__(self, i: int) -> torch.Tensor:  # type: ignore[override]
        y = torch.from_numpy(np.asarray(self.refs.masks[i]).astype(np.int64))
        ignored = y == self.refs.ignore_index
        if self.to_model is not None:
            y = torch.from_numpy(self.to_model)[y.clamp(0, len(self.to_model) - 1)]
        y[ignored] = IGNORED
        y[y < 0] = IGNORED
        return y


class Segmentation(Task):
    name = "segmentation"
    version = "1"
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

    # -- evaluation: a confusion matrix over every pixel ---------------------------------------

    def predictions(self, outputs: Any, sizes: Sequence[tuple[int, int]], frame: tuple[int, int]) -> list[np.ndarray]:
        """Label maps: the logits at the frame (resized when they are not), each cropped to
        its image."""
        pred = _resized(outputs, frame).argmax(1).cpu().numpy()
        return [p[:h, :w] for p, (h, w) in zip(pred, sizes)]

    def latent_problem(self, model: Model, arch: str) -> str | None:
        from bench.domain.nets import backbone_problem

        return backbone_problem("segmentation", model, "tiny-fcn", arch)

    def latent_network(self, pixel: nn.Module, arch: str, splits: Sequence[int], drop_stages: int) -> nn.Module:
        """The tiny FCN with its backbone adapted; logits at the latent grid × 16."""
        from bench.domain.nets import LatentFCN, backbone_network
        from bench.models.segmenters import TinyFCNNet

        return backbone_network(pixel, TinyFCNNet, LatentFCN, "segmentation is built for tiny-fcn",
                                arch, splits, drop_stages)

    def score(self, predictions: Iterable[np.ndarray], references: MaskReferences,
              model: Model | None = None) -> dict[str, float]:
        return self.score_items(predictions, references, model).metrics()

    def score_items(self, predictions: Iterable[np.ndarray], references: MaskReferences,
                    model: Model | None = None) -> ImageConfusions:
        """Each image's confusion matrix (the predictions are streamed, never held)."""
        to_data = class_maps(model, references.classes, "dataset")[0] if model is not None else None
        c = len(references.classes)
        per_image = []
        for i, p in enumerate(predictions):
            if i >= len(references.masks):
                raise ValueError(f"more predictions than the {len(references.masks)} label maps")
            mask = np.asarray(references.masks[i])
            if mask.shape != p.shape:
                raise ValueError(f"image {i}: label map {mask.shape} but prediction {p.shape}")
            per_image.append(ImageConfusions.row(
                confusion_matrix(mask, p if to_data is None else to_data[p], c, references.ignore_index)))
        if len(per_image) != len(references.masks):
            raise ValueError(f"{len(per_image)} predictions but {len(references.masks)} label maps")
        return ImageConfusions(per_image, c)

    # -- training: pixel-wise cross-entropy, ignored pixels left out ---------------------------

    def training_targets(self, data: ImageSet, model: Model | None = None) -> MaskTargets:
        refs = mask_references(data)
        to_model = class_maps(model, refs.classes, f"dataset {data.dataset!r}")[1] if model is not None else None
        return MaskTargets(refs, to_model)

    def flip_target(self, target: torch.Tensor, width: int) -> torch.Tensor:
        """The label map right-padded (ignored) to ``width``, mirrored."""
        if width > target.shape[-1]:
            target = F.pad(target, (0, width - target.shape[-1]), value=IGNORED)
        return target.flip(-1)

    def collate_targets(self, targets: list[torch.Tensor], frame: tuple[int, int]) -> torch.Tensor:
        """``(N, H, W)``: each map at the top left, the rest ignored."""
        y = torch.full((len(targets), *frame), IGNORED, dtype=torch.long)
        for k, t in enumerate(targets):
            y[k, : t.shape[0], : t.shape[1]] = t
        return y

    def batch_inputs(self, model: Model, images: list[np.ndarray], flips: list[bool]) -> tuple[Any, ...]:
        """One batch; images of different sizes are mirrored, zero-padded right and bottom
        to a common size, then preprocessed."""
        h = max(im.shape[0] for im in images)
        w = max(im.shape[1] for im in images)
        if all(im.shape[:2] == (h, w) for im in images):
            return super().batch_inputs(model, images, flips)
        padded = [np.pad(im[:, ::-1] if flip else im, ((0, h - im.shape[0]), (0, w - im.shape[1]), (0, 0)))
                  for im, flip in zip(images, flips)]
        return (model.preprocess(padded),)

    def loss(self, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(_resized(outputs, tuple(targets.shape[-2:])), targets, ignore_index=IGNORED)


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
