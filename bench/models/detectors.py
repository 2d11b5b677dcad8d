"""Object detectors: a tiny CenterNet trained here, and torchvision's COCO detectors.

Every detector network follows torchvision's calling convention, so the detection task
trains and evaluates them all with one loop:

- ``net(images, targets)`` in train mode, with ``images`` a list of ``(3, H, W)`` tensors
  and ``targets`` a list of ``{"boxes": (k, 4) x0 y0 x1 y1 pixels, "labels": (k,)}``,
  returns a dict of losses whose sum is optimised;
- ``net(images)`` in eval mode returns one ``{"boxes", "scores", "labels"}`` per image,
  boxes in the input image's pixels.

A detector's ``preprocess`` keeps the image size (boxes are in image pixels); resizing is
the network's business.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.models.pretrained import TorchvisionWeights
from bench.models.base import Model, ModelParams
from bench.models.tiny import BasicBlock, stem

Width = Annotated[int, Field(ge=1, le=1024)]


class Detector(Model):
    """A detection model. ``output_classes`` names the network's labels when they are its
    own (a pretrained COCO model); None when it is built for the dataset's classes."""

    task = "detection"
    #: Images per forward pass when evaluating.
    eval_batch: ClassVar[int] = 32

    def output_classes(self) -> tuple[str, ...] | None:
        return None


# --- tiny CenterNet ------------------------------------------------------------------


@functools.cache
def bf16_supported() -> bool:
    """Whether oneDNN has native bfloat16 kernels here (AVX512-BF16 or AMX); elsewhere
    bfloat16 autocast is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_bf16(wanted: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on a CPU that has native kernels for it: 2-2.5x faster training
    of these small networks (measured on AMX); the losses stay in float32."""
    return torch.autocast("cpu", torch.bfloat16) if wanted and bf16_supported() else contextlib.nullcontext()


def stack_padded(images: Sequence[torch.Tensor] | torch.Tensor, multiple: int) -> torch.Tensor:
    """One ``(N, 3, H, W)`` batch, zero-padded right/bottom to a multiple of ``multiple``."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        batch = images
    else:
        h = max(im.shape[-2] for im in images)
        w = max(im.shape[-1] for im in images)
        if all(im.shape[-2:] == (h, w) for im in images):
            batch = torch.stack(list(images))
        else:
            batch = images[0].new_zeros((len(images), 3, h, w))
            for i, im in enumerate(images):
                batch[i, :, : im.shape[-2], : im.shape[-1]] = im
    h, w = batch.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        batch = F.pad(batch, (0, pw, 0, ph))
    return batch.contiguous(memory_format=torch.channels_last)


class TinyBackbone(nn.Module):
    """Stem (stride ``s`` = 2 or 4), one basic block at stride s, 2s and 4s; a top-down merge
    to stride 2s."""

    def __init__(self, widths: Sequence[int], neck: int, stem_stride: int = 2) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = stem(w1, stem_stride)
        self.stage1 = BasicBlock(w1, w1, 1)
        self.stage2 = BasicBlock(w1, w2, 2)
        self.stage3 = BasicBlock(w2, w3, 2)
        self.lateral2 = nn.Conv2d(w2, neck, 1)
        self.lateral3 = nn.Conv2d(w3, neck, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features at the stem's stride (``w1`` channels) and at twice it (``neck`` channels)."""
        c1 = self.stage1(self.stem(x))
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        p2 = self.lateral2(c2) + F.interpolate(self.lateral3(c3), size=c2.shape[-2:], mode="nearest")
        return c1, p2


class TinyCenterNetNet(nn.Module):
    """CenterNet (Zhou et al. 2019, "Objects as Points") at output stride twice the stem's:
    a heatmap per class, the box size and the sub-cell offset of the centre, all fully
    batched."""

    def __init__(self, num_classes: int, widths: Sequence[int], neck: int, max_detections: int,
                 bf16: bool = True, stem_stride: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.bf16 = bf16
        self.max_detections = max_detections
        self.stride = 2 * stem_stride
        self.backbone = TinyBackbone(widths, neck, stem_stride)
        self.head = nn.Sequential(
            nn.Conv2d(neck, neck, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(neck, num_classes + 4, 1)
        )
        with torch.no_grad():  # start the heatmap at a prior of 0.1, as CenterNet does
            self.head[-1].bias[:num_classes].fill_(-math.log((1 - 0.1) / 0.1))

    def forward(self, images: Sequence[torch.Tensor] | torch.Tensor,
                targets: list[dict[str, torch.Tensor]] | None = None) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        sizes = [tuple(im.shape[-2:]) for im in images]
        x = stack_padded(images, 8)
        with cpu_bf16(self.bf16 and self.training and x.device.type == "cpu"):
            out = self.head(self.backbone(x)[1]).float()
        heat, size, offset = out[:, : self.num_classes], out[:, -4:-2], out[:, -2:]
        if self.training:
            if targets is None:
                raise ValueError("TinyCenterNet needs targets in train mode")
            return self.loss(heat, size, offset, targets)
        return self.decode(heat, size, offset, sizes)

    # -- training ---------------------------------------------------------------------
    def loss(self, heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor,
             targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        n, c, h, w = heat.shape
        s = self.stride
        boxes = torch.cat([t["boxes"] for t in targets]).float().to(heat.device)
        labels = torch.cat([t["labels"] for t in targets]).long().to(heat.device)
        owner = torch.cat([torch.full((len(t["boxes"]),), i, dtype=torch.long) for i, t in enumerate(targets)])
        owner = owner.to(heat.device)
        centre = (boxes[:, :2] + boxes[:, 2:]) / (2 * s)  # in output cells
        extent = (boxes[:, 2:] - boxes[:, :2]) / s
        cell = centre.floor().long()
        cell[:, 0].clamp_(0, w - 1)
        cell[:, 1].clamp_(0, h - 1)
        # Elliptical Gaussian peaks of TTFNet (sigma = 0.54 * side / 6), exactly 1 at the centre cell.
        sigma = (0.54 / 6 * extent).clamp(min=0.25)
        ys = torch.arange(h, device=heat.device, dtype=torch.float32)
        xs = torch.arange(w, device=heat.device, dtype=torch.float32)
        gx = torch.exp(-((xs[None, :] - cell[:, :1]) ** 2) / (2 * sigma[:, :1] ** 2))  # (m, w)
        gy = torch.exp(-((ys[None, :] - cell[:, 1:]) ** 2) / (2 * sigma[:, 1:] ** 2))  # (m, h)
        peaks = gy[:, :, None] * gx[:, None, :]  # (m, h, w)
        target = torch.zeros(n * c, h, w, device=heat.device)
        if len(boxes):
            index = (owner * c + labels)[:, None, None].expand_as(peaks)
            target.scatter_reduce_(0, index, peaks, reduce="amax")
        target = target.view(n, c, h, w)
        # Penalty-reduced pixel-wise focal loss (CenterNet eq. 1), normalised by object count.
        p = heat.sigmoid().clamp(1e-4, 1 - 1e-4)
        pos = target.eq(1.0)
        num_pos = max(len(boxes), 1)
        pos_loss = (torch.log(p) * (1 - p) ** 2)[pos].sum()
        neg_loss = (torch.log(1 - p) * p**2 * (1 - target) ** 4)[~pos].sum()
        heat_loss = -(pos_loss + neg_loss) / num_pos
        if not len(boxes):
            zero = heat.sum() * 0.0
            return {"heatmap": heat_loss, "size": zero, "offset": zero}
        size_pred = size.permute(0, 2, 3, 1)[owner, cell[:, 1], cell[:, 0]]
        off_pred = offset.permute(0, 2, 3, 1)[owner, cell[:, 1], cell[:, 0]]
        size_loss = F.l1_loss(size_pred, extent, reduction="sum") / num_pos
        off_loss = F.l1_loss(off_pred, centre - cell.float(), reduction="sum") / num_pos
        return {"heatmap": heat_loss, "size": 0.1 * size_loss, "offset": off_loss}

    # -- inference --------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor,
               sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Peaks of the heatmap (3×3 max-pooling in place of NMS), best ``max_detections``."""
        n, c, h, w = heat.shape
        prob = heat.sigmoid()
        peak = prob * (F.max_pool2d(prob, 3, 1, 1) == prob)
        k = min(self.max_detections, c * h * w)
        scores, flat = peak.reshape(n, -1).topk(k, dim=1)
        labels = torch.div(flat, h * w, rounding_mode="floor")
        pix = flat % (h * w)
        cy = torch.div(pix, w, rounding_mode="floor")
        cx = pix % w
        rows = torch.arange(n, device=heat.device)[:, None]
        wh = size[rows, :, cy, cx].clamp(min=0) * self.stride  # (n, k, 2)
        off = offset[rows, :, cy, cx]
        centre = (torch.stack([cx, cy], dim=-1).float() + off) * self.stride
        boxes = torch.cat([centre - wh / 2, centre + wh / 2], dim=-1)
        out = []
        for i, (ih, iw) in enumerate(sizes):
            keep = scores[i] > 1e-3
            b = boxes[i][keep]
            b[:, 0::2] = b[:, 0::2].clamp(0, iw)
            b[:, 1::2] = b[:, 1::2].clamp(0, ih)
            out.append({"boxes": b, "scores": scores[i][keep], "labels": labels[i][keep]})
        return out


class TinyCenterNetParams(ModelParams):
    #: Channels of the stride-2, -4 and -8 stages.
    widths: tuple[Width, Width, Width] = (32, 64, 128)
    neck: int = Field(default=64, ge=4, le=1024)
    #: Downsampling of the stem (the heatmap's stride is twice it): 4 for 128×128 images and up.
    stem_stride: Literal[2, 4] = 4
    #: Detections kept per image (COCO counts up to 100).
    max_detections: int = Field(default=20, ge=1, le=1000)
    #: Train under bfloat16 autocast where the CPU has native bfloat16 (see ``cpu_bf16``).
    bf16: bool = True


class TinyCenterNet(Detector):
    name = "tiny-centernet"
    version = "2"
    description = "small CenterNet (stride 8) trained from scratch (scenario A) on the dataset's train split"
    Params = TinyCenterNetParams

    def build(self, num_classes: int | None) -> nn.Module:
        if not num_classes:
            raise ValueError("tiny-centernet is trained from scratch and needs a dataset with box classes")
        p = self.params
        return TinyCenterNetNet(num_classes, p.widths, p.neck, p.max_detections, p.bf16, p.stem_stride).to(memory_format=torch.channels_last)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
        return batch.div_(127.5).sub_(1.0)


# --- torchvision ---------------------------------------------------------------------


class TorchvisionDetectorParams(ModelParams):
    #: A torchvision detection architecture: ``fasterrcnn_resnet50_fpn``,
    #: ``retinanet_resnet50_fpn``, ``fcos_resnet50_fpn``, ... (``torchvision.models.detection``).
    arch: str = "fasterrcnn_resnet50_fpn"
    #: A weights enum member (``COCO_V1``, ``DEFAULT``), downloaded to the torch hub cache.
    weights: str = "DEFAULT"
    #: A local checkpoint (a state dict with the same COCO classes) used instead of downloading.
    checkpoint: str | None = None
    #: Score threshold below which detections are dropped (None: torchvision's default).
    score_threshold: float | None = Field(default=None, ge=0, le=1)


class TorchvisionDetector(TorchvisionWeights, Detector):
    """A torchvision COCO detector with its pretrained weights, from the torch hub cache
    (``bench fetch`` downloads them once with a network) or a local checkpoint. It keeps
    its own input pipeline (normalisation, resize to a shorter side of 800); labels are
    COCO's, matched to the dataset's classes by name."""

    name = "torchvision-detector"
    version = "1"
    pretrained = True
    description = "torchvision COCO detectors (arch: fasterrcnn_resnet50_fpn, retinanet_..., fcos_...)"
    eval_batch = 2  # images are resized to ~800x1333 inside the network
    torchvision_module = "detection"
    Params = TorchvisionDetectorParams

    def build(self, num_classes: int | None) -> nn.Module:
        from torchvision import models

        weights = self._weights()
        extra = {}
        if self.params.score_threshold is not None:  # two-stage models name it box_score_thresh
            key = "box_score_thresh" if "rcnn" in self.params.arch else "score_thresh"
            extra[key] = self.params.score_threshold
        if self.params.checkpoint:
            net = models.get_model(self.params.arch, weights=None, weights_backbone=None,
                                   num_classes=len(weights.meta["categories"]), **extra)
            state = torch.load(self.params.checkpoint, map_location="cpu", weights_only=True)
            net.load_state_dict(state.get("model", state.get("state_dict", state)) if isinstance(state, dict) else state)
            return net
        return self._pretrained(**extra)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB in [0, 1]; the network normalises and resizes itself."""
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
