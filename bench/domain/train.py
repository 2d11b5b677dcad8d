"""Training and evaluating compressed-domain networks on latents, for every task.

The loops mirror the pixel tasks' (AdamW with a cosine decay, random horizontal flips,
the same losses and metrics); a flip mirrors each image's latents, its targets about the
latent grid's width in pixels, and — with knowledge transfer — the original image padded
to that grid, so teacher and student see the same scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.config import Schedule
from bench.datasets.base import ImageSet
from bench.domain.adapt import LATENT_STRIDE, FeatureRecorder, transfer_loss
from bench.errors import BenchError
from bench.metrics.detection import Detections, coco_map
from bench.metrics.segmentation import confusion_matrix, segmentation_scores
from bench.models.base import Model
from bench.tasks.base import optimizer_for
from bench.tasks.classification import ClassLabels, topk_correct
from bench.tasks.detection import BoxReferences, _train_target, box_truth
from bench.tasks.segmentation import MaskReferences, mask_references

EVAL_BATCH = 64


def latent_grid(size: tuple[int, int]) -> tuple[int, int]:
    """The latent positions that cover an ``(H, W)`` image: ``ceil(H/16) × ceil(W/16)``."""
    return -(-size[0] // LATENT_STRIDE), -(-size[1] // LATENT_STRIDE)


@dataclass
class LatentSet:
    """Per-image latents ``(C, h, w)`` (the grid cells that cover the image) and the
    original image sizes ``(H, W)``."""

    latents: list[torch.Tensor]
    sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.latents)

    def grid_pixels(self, i: int) -> tuple[int, int]:
        """Item ``i``'s latent grid in image pixels (its size rounded up to 16)."""
        h, w = self.latents[i].shape[-2:]
        return h * LATENT_STRIDE, w * LATENT_STRIDE

    @property
    def channels(self) -> int:
        return int(self.latents[0].shape[0])

    def batch(self, idx: Sequence[int], flips: Sequence[bool] | None = None) -> torch.Tensor:
        """``(n, C, h_max, w_max)``, each item flipped when asked, zero-padded right/bottom."""
        items = [self.latents[i].flip(-1) if flips is not None and flips[k] else self.latents[i]
                 for k, i in enumerate(idx)]
        h = max(t.shape[-2] for t in items)
        w = max(t.shape[-1] for t in items)
        out = items[0].new_zeros((len(items), items[0].shape[0], h, w))
        for k, t in enumerate(items):
            out[k, :, : t.shape[-2], : t.shape[-1]] = t
        return out


@dataclass
class Transfer:
    """Pixel-to-compressed knowledge transfer: the pixel network as teacher, the layers it
    taps (module name → weight) and how its input is made."""

    teacher: nn.Module
    model: Model
    layers: dict[str, float]
    originals: Sequence[np.ndarray]


def _grid_image(image: np.ndarray, size: tuple[int, int], flip: bool) -> np.ndarray:
    """``image`` edge-padded to the latent grid's pixel size (as the codec pads), mirrored."""
    ph, pw = size[0] - image.shape[0], size[1] - image.shape[1]
    out = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else image
    return out[:, ::-1].copy() if flip else out


def _teacher_features(tr: Transfer, idx: Sequence[int], flips: Sequence[bool], grids: list[tuple[int, int]],
                      device: str) -> dict[str, torch.Tensor]:
    h = max(g[0] for g in grids)
    w = max(g[1] for g in grids)
    images = [np.pad(_grid_image(tr.originals[i], g, f), ((0, h - g[0]), (0, w - g[1]), (0, 0)))
              for i, f, g in zip(idx, flips, grids)]
    x = tr.model.preprocess(images).to(device)
    with torch.no_grad(), FeatureRecorder(tr.teacher, list(tr.layers)) as feats:
        tr.teacher(x)
    return {k: v.detach() for k, v in feats.items()}


# --- per-task pieces -------------------------------------------------------------------


class _Classification:
    def __init__(self, data: ImageSet) -> None:
        assert data.labels is not None
        self.labels = torch.as_tensor(data.labels, dtype=torch.long)

    def loss(self, net: nn.Module, x: torch.Tensor, lat: LatentSet, idx: list[int], flips: list[bool],
             device: str) -> torch.Tensor:
        return F.cross_entropy(net(x), self.labels[idx].to(device))


class _Detection:
    def __init__(self, data: ImageSet) -> None:
        self.targets = [_train_target(t, None) for t in box_truth(data)]

    def loss(self, net: nn.Module, x: torch.Tensor, lat: LatentSet, idx: list[int], flips: list[bool],
             device: str) -> torch.Tensor:
        targets = []
        for i, flip in zip(idx, flips):
            boxes, labels = self.targets[i]
            if flip:  # mirrored about the latent grid's width, which is what was flipped
                width = lat.grid_pixels(i)[1]
                boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
            targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
        return sum(net(x, [lat.sizes[i] for i in idx], targets).values())


class _Segmentation:
    def __init__(self, data: ImageSet) -> None:
        self.refs = mask_references(data)

    def loss(self, net: nn.Module, x: torch.Tensor, lat: LatentSet, idx: list[int], flips: list[bool],
             device: str) -> torch.Tensor:
        h, w = x.shape[-2] * LATENT_STRIDE, x.shape[-1] * LATENT_STRIDE
        y = torch.full((len(idx), h, w), -100, dtype=torch.long)
        for k, (i, flip) in enumerate(zip(idx, flips)):
            grid = lat.grid_pixels(i)
            m = torch.full(grid, -100, dtype=torch.long)
            mask = torch.from_numpy(np.asarray(self.refs.masks[i]).astype(np.int64))
            mask[mask == self.refs.ignore_index] = -100
            m[: mask.shape[0], : mask.shape[1]] = mask
            y[k, : grid[0], : grid[1]] = m.flip(-1) if flip else m
        return F.cross_entropy(net(x), y.to(device), ignore_index=-100)


_TASKS = {"classification": _Classification, "detection": _Detection, "segmentation": _Segmentation}


def train_latent(task: str, net: nn.Module, lat: LatentSet, data: ImageSet, schedule: Schedule, seed: int,
                 device: str, transfer: Transfer | None = None) -> list[float]:
    """Optimise ``net`` in place on the latents with the targets of ``data`` (plus the
    knowledge-transfer term); returns the mean knowledge-transfer distance per epoch
    (empty without transfer)."""
    ops = _TASKS[task](data)
    gen = torch.Generator().manual_seed(seed)
    net.to(device).train()
    opt, sched = optimizer_for(net, schedule, len(lat))
    student_layers = [f"{net.feature_root}.{name}" if name else net.feature_root
                      for name in (transfer.layers if transfer else {})]
    distances: list[float] = []
    for _ in range(schedule.epochs):
        order = torch.randperm(len(lat), generator=gen).tolist()
        total, count = 0.0, 0
        for i in range(0, len(order), schedule.batch_size):
            idx = order[i : i + schedule.batch_size]
            flips = (torch.rand(len(idx), generator=gen) < 0.5).tolist()
            x = lat.batch(idx, flips).to(device)
            if transfer is None:
                loss = ops.loss(net, x, lat, idx, flips, device)
            else:
                grids = [lat.grid_pixels(j) for j in idx]
                teacher = _teacher_features(transfer, idx, flips, grids, device)
                with FeatureRecorder(net, student_layers) as student:
                    loss = ops.loss(net, x, lat, idx, flips, device)
                kt = transfer_loss({name: student[full] for name, full in zip(transfer.layers, student_layers)},
                                   teacher, transfer.layers)
                loss = loss + kt
                total, count = total + float(kt.detach()) * len(idx), count + len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if transfer is not None:
            distances.append(total / count)
    net.eval()
    return distances


@torch.no_grad()
def evaluate_latent(task: str, net: nn.Module, lat: LatentSet, references: Any, device: str) -> dict[str, float]:
    """The task's metrics of ``net`` on the latents, against the scenario-A references."""
    net.eval()
    batches = [list(range(i, min(i + EVAL_BATCH, len(lat)))) for i in range(0, len(lat), EVAL_BATCH)]
    if task == "classification":
        refs: ClassLabels = references
        logits = torch.cat([net(lat.batch(b).to(device)).float().cpu() for b in batches])
        labels = torch.as_tensor(refs.labels, dtype=torch.long)
        names = ("top1_agreement", "top5_agreement") if refs.agreement else ("top1", "top5")
        return {names[0]: topk_correct(logits, labels, 1) / len(labels),
                names[1]: topk_correct(logits, labels, 5) / len(labels)}
    if task == "detection":
        boxes: BoxReferences = references
        dets = []
        for b in batches:
            for d in net(lat.batch(b).to(device), [lat.sizes[i] for i in b]):
                dets.append(Detections(d["boxes"].float().cpu().numpy(), d["scores"].float().cpu().numpy(),
                                       d["labels"].cpu().numpy().astype(np.int64)))
        return coco_map(boxes.truth, dets, len(boxes.classes))
    masks: MaskReferences = references
    c = len(masks.classes)
    confusion = np.zeros((c, c + 1), np.int64)
    for b in batches:
        pred = net(lat.batch(b).to(device)).argmax(1).cpu().numpy()
        for k, i in enumerate(b):
            h, w = lat.sizes[i]
            confusion += confusion_matrix(np.asarray(masks.masks[i]), pred[k, :h, :w], c, masks.ignore_index)
    return segmentation_scores(confusion)


def latent_set(latents: Sequence[Any], inputs: Sequence[str]) -> tuple[LatentSet, list[int]]:
    """The network input of each stream's ``Latents`` — the named parts (``y_hat``,
    ``scales``, ``means``, ``weights``; a mixture's K components stacked as channels),
    concatenated, cropped to the grid cells that cover the image — and each part's channel
    count."""
    tensors, sizes, splits = [], [], None
    for lat in latents:
        h, w = latent_grid(lat.size)
        parts = []
        for name in inputs:
            t = getattr(lat, name)
            if t is None:
                raise BenchError(f"scenario D: {lat.arch} has no {name} in its latents (use y_hat"
                                 f"{', scales' if lat.scales is not None else ''}"
                                 f"{', means' if lat.means is not None else ''})")
            t = t.float()
            parts.append(t.reshape(-1, *t.shape[-2:])[:, :h, :w])
        these = [p.shape[0] for p in parts]
        if splits is not None and these != splits:
            raise BenchError(f"scenario D: latents of one operating point have {splits} and {these} channels")
        splits = these
        tensors.append(torch.cat(parts).contiguous())
        sizes.append(tuple(lat.size))
    return LatentSet(tensors, sizes), splits or []
