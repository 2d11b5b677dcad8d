"""Object detection: COCO box mAP (AP, AP50, AP75 and by object size) through pycocotools."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.datasets.base import Dataset, ImageSet
from bench.errors import BenchError, DatasetError
from bench.metrics.coco_bootstrap import BoxScores
from bench.metrics.detection import COCO_METRICS, Detections, ImageBoxes
from bench.models.base import Model
from bench.tasks.base import Task

#: Images per forward pass when evaluating, unless the model says (``eval_batch``).
EVAL_BATCH = 32


# --- shared with segmentation --------------------------------------------------------


def missing_targets(dataset: Dataset, needed: Sequence[str]) -> list[str]:
    """The ``needed`` targets that ``dataset`` is known not to have (checked before loading).

    A dataset declares what it provides in ``target_names``; one that does not say is
    trusted when it is labelled (its loaded targets are checked later) and has nothing
    when it is unlabelled.
    """
    declared = getattr(dataset, "target_names", None)
    if declared is None:
        declared = None if dataset.has_labels else ()
    return [] if declared is None else [t for t in needed if t not in declared]


def _norm(name: str) -> str:
    return name.strip().strip("_").lower()


def match_classes(model_classes: Sequence[str], dataset_classes: Sequence[str]) -> np.ndarray:
    """For each of a pretrained model's output classes, the dataset class of the same name
    (case-insensitive; ``__background__`` matches ``background``), or -1."""
    index = {_norm(c): i for i, c in enumerate(dataset_classes)}
    return np.array([index.get(_norm(c), -1) for c in model_classes], dtype=np.int64)


def class_maps(model: Model, dataset_classes: Sequence[str], what: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(model label → dataset label, dataset label → model label), both None when the
    model is built for the dataset's own classes; -1 where a class has no counterpart."""
    own = model.output_classes() if hasattr(model, "output_classes") else None
    if own is None:
        return None, None
    to_data = match_classes(own, dataset_classes)
    if not (to_data >= 0).any():
        raise BenchError(f"none of model {model.name!r}'s {len(own)} classes is among the {what} classes "
                         f"({', '.join(list(dataset_classes)[:5])}, ...); classes are matched by name")
    to_model = np.full(len(dataset_classes), -1, dtype=np.int64)
    for m, d in enumerate(to_data):
        if d >= 0 and to_model[d] < 0:
            to_model[d] = m
    return to_data, to_model


def image_tensors(model: Model, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """``model.preprocess`` per image, in one call when all images share a size."""
    if len({im.shape for im in images}) == 1:
        return list(model.preprocess(images).unbind(0))
    return [model.preprocess([im])[0] for im in images]


# --- detection -----------------------------------------------------------------------


@dataclass(frozen=True)
class BoxReferences:
    """Ground-truth boxes per image, and the names of their labels."""

    truth: list[ImageBoxes]
    classes: tuple[str, ...]


def box_truth(data: ImageSet) -> list[ImageBoxes]:
    """The ``boxes`` / ``box_labels`` targets of ``data`` (with ``box_areas`` and
    ``box_crowd`` where the dataset has them, as COCO files do)."""
    t = data.targets
    if "boxes" not in t or "box_labels" not in t:
        raise DatasetError(f"dataset {data.dataset!r} ({data.split}) has no boxes to detect")
    if len(t["boxes"]) != len(data) or len(t["box_labels"]) != len(data):
        raise DatasetError(f"dataset {data.dataset!r}: {len(t['boxes'])} box lists for {len(data)} images")
    areas, crowd = t.get("box_areas"), t.get("box_crowd")
    return [
        ImageBoxes(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(lab, np.int64).reshape(-1),
                   None if areas is None else np.asarray(areas[i], np.float64),
                   None if crowd is None else np.asarray(crowd[i], bool))
        for i, (b, lab) in enumerate(zip(t["boxes"], t["box_labels"]))
    ]


def _classes(data: ImageSet) -> tuple[str, ...]:
    if not data.classes:
        raise DatasetError(f"dataset {data.dataset!r} ({data.split}) does not name its box classes")
    return tuple(data.classes)


def _detections(outputs: list[dict[str, torch.Tensor]]) -> list[Detections]:
    return [Detections(d["boxes"].float().cpu().numpy(), d["scores"].float().cpu().numpy(),
                       d["labels"].cpu().numpy().astype(np.int64)) for d in outputs]


def in_dataset_classes(dets: Detections, to_data: np.ndarray | None) -> Detections:
    """``dets`` with labels in the dataset's classes (-1: not a dataset class)."""
    if to_data is None:
        return dets
    labels = dets.labels
    labels = np.where((labels >= 0) & (labels < len(to_data)), to_data[labels.clip(0, len(to_data) - 1)], -1)
    return Detections(dets.boxes, dets.scores, labels)


class Detection(Task):
    name = "detection"
    version = "1"
    description = "COCO box mAP (AP@[.50:.95], AP50, AP75, APs/APm/APl) with pycocotools"

    def metric_names(self, dataset: Dataset) -> tuple[str, ...]:
        return COCO_METRICS

    def problems(self, dataset: Dataset, model: Model) -> list[str]:
        problems = super().problems(dataset, model)
        if missing := missing_targets(dataset, ("boxes", "box_labels")):
            problems.append(f"dataset {dataset.name!r} has no {' or '.join(missing)}: "
                            f"the detection task needs ground-truth boxes")
        return problems

    def build(self, model: Model, dataset: ImageSet) -> nn.Module:
        return model.build(len(_classes(dataset)))

    def references(self, net: nn.Module, model: Model, originals: ImageSet, device: str) -> BoxReferences:
        classes = _classes(originals)
        class_maps(model, classes, f"dataset {originals.dataset!r}")  # fail early on no overlap
        return BoxReferences(box_truth(originals), classes)

    # -- evaluation: COCO mAP -------------------------------------------------------------

    def predictions(self, outputs: list[dict[str, torch.Tensor]], sizes: Sequence[tuple[int, int]],
                    frame: tuple[int, int]) -> list[Detections]:
        return _detections(outputs)

    @torch.no_grad()
    def predict(self, net: nn.Module, model: Model, images: Sequence[np.ndarray], device: str) -> Iterator[Detections]:
        """Detections on every image, ``eval_batch`` images (the model's, or 32) at a time."""
        net.eval()
        batch = getattr(model, "eval_batch", EVAL_BATCH)
        for i in range(0, len(images), batch):
            x = [im.to(device) for im in image_tensors(model, images[i : i + batch])]
            yield from _detections(net(x))

    def score(self, predictions: Iterable[Detections], references: BoxReferences,
              model: Model | None = None) -> dict[str, float]:
        return self.score_items(predictions, references, model).metrics()

    def score_items(self, predictions: Iterable[Detections], references: BoxReferences,
                    model: Model | None = None) -> BoxScores:
        """COCO's matching of the detections to the objects, image by image (run once)."""
        to_data = class_maps(model, references.classes, "dataset")[0] if model is not None else None
        dets = [in_dataset_classes(d, to_data) for d in predictions]
        return BoxScores(references.truth, dets, len(references.classes))

    # -- training: the network's own loss -------------------------------------------------------
    # Crowd regions, degenerate boxes and classes a pretrained model lacks are left out of
    # the targets; a flip mirrors the boxes.

    def training_targets(self, data: ImageSet, model: Model | None = None) -> list[dict[str, torch.Tensor]]:
        to_model = class_maps(model, _classes(data), f"dataset {data.dataset!r}")[1] if model is not None else None
        return [dict(zip(("boxes", "labels"), _train_target(t, to_model))) for t in box_truth(data)]

    def flip_target(self, target: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
        boxes = target["boxes"]
        return {**target, "boxes": torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)}

    def collate_targets(self, targets: list[dict[str, torch.Tensor]], frame: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        return list(targets)

    def batch_inputs(self, model: Model, images: list[np.ndarray], flips: list[bool]) -> tuple[Any, ...]:
        """A list of image tensors (a detector batches them itself), mirrored where asked."""
        x = image_tensors(model, images)
        return ([xi.flip(-1) if flip else xi for xi, flip in zip(x, flips)],)

    def training_outputs(self, net: nn.Module, inputs: tuple[Any, ...], targets: list[dict[str, torch.Tensor]]) -> Any:
        return net(*inputs, targets)

    def latent_problem(self, model: Model, arch: str) -> str | None:
        from bench.domain.nets import backbone_problem

        return backbone_problem("detection", model, "tiny-centernet", arch)

    def latent_network(self, pixel: nn.Module, arch: str, splits: Sequence[int], drop_stages: int) -> nn.Module:
        """The tiny CenterNet with its backbone adapted; head, loss and decoding its own."""
        from bench.domain.nets import LatentCenterNet, backbone_network
        from bench.models.detectors import TinyCenterNetNet

        return backbone_network(pixel, TinyCenterNetNet, LatentCenterNet, "detection is built for tiny-centernet",
                                arch, splits, drop_stages)

    def loss(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        return sum(outputs.values())


def _train_target(t: ImageBoxes, to_model: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    labels = t.labels if to_model is None else to_model[t.labels]
    keep = (t.boxes[:, 2] > t.boxes[:, 0]) & (t.boxes[:, 3] > t.boxes[:, 1]) & (labels >= 0)
    if t.crowd is not None:
        keep &= ~t.crowd
    return torch.from_numpy(t.boxes[keep].astype(np.float32)), torch.from_numpy(labels[keep].astype(np.int64))
