"""Semantic segmenters: a tiny FCN trained here, and torchvision's pretrained segmenters.

A segmenter network maps a ``(N, 3, H, W)`` batch to class logits ``(N, C, h, w)`` (or
torchvision's ``{"out": logits, ...}``); the task resizes logits to the label map's size
when ``preprocess`` resized the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field
from torch import nn

from bench.models.pretrained import TorchvisionWeights
from bench.models.base import Model, ModelParams
from bench.models.detectors import TinyBackbone, Width, cpu_bf16, stack_padded


class Segmenter(Model):
    """A segmentation model. ``output_classes`` names the network's classes when they are
    its own (a pretrained model); None when it is built for the dataset's classes."""

    task = "segmentation"
    #: Images per forward pass when evaluating.
    eval_batch: ClassVar[int] = 32

    def output_classes(self) -> tuple[str, ...] | None:
        return None


class TinyFCNNet(nn.Module):
    """The tiny detector's backbone with a light decoder: a 3×3 convolution on the merged
    features (twice the stem's stride), upsampled and added to the projected stem-stride
    ones, per-pixel logits there, upsampled (bilinear) to the input size."""

    def __init__(self, num_classes: int, widths: Sequence[int], neck: int, bf16: bool = True,
                 stem_stride: int = 2) -> None:
        super().__init__()
        self.bf16 = bf16
        self.backbone = TinyBackbone(widths, neck, stem_stride)
        self.context = nn.Sequential(nn.Conv2d(neck, neck, 3, 1, 1, bias=False), nn.BatchNorm2d(neck), nn.ReLU(inplace=True))
        self.lateral1 = nn.Conv2d(widths[0], neck, 1)
        self.classify = nn.Conv2d(neck, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = stack_padded(x, 8)
        with cpu_bf16(self.bf16 and self.training and x.device.type == "cpu"):
            c1, p2 = self.backbone(x)
            p1 = self.lateral1(c1) + F.interpolate(self.context(p2), size=c1.shape[-2:], mode="nearest")
            logits = self.classify(torch.relu(p1))
        logits = F.interpolate(logits.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


class TinyFCNParams(ModelParams):
    #: Channels of the stride-2, -4 and -8 stages.
    widths: tuple[Width, Width, Width] = (32, 64, 128)
    neck: int = Field(default=64, ge=4, le=1024)
    #: Downsampling of the stem: 4 (two stride-2 convolutions) for 128×128 images and up.
    stem_stride: Literal[2, 4] = 4
    #: Train under bfloat16 autocast where the CPU has native bfloat16 (``cpu_bf16``).
    bf16: bool = True


class TinyFCN(Segmenter):
    name = "tiny-fcn"
    version = "2"
    description = "small FCN (stem-stride decoder) trained from scratch (scenario A) on the dataset's train split"
    Params = TinyFCNParams

    def build(self, num_classes: int | None) -> nn.Module:
        if not num_classes:
            raise ValueError("tiny-fcn is trained from scratch and needs a dataset with mask classes")
        p = self.params
        return TinyFCNNet(num_classes, p.widths, p.neck, p.bf16, p.stem_stride).to(memory_format=torch.channels_last)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
        return batch.div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)


class TorchvisionSegmenterParams(ModelParams):
    #: ``deeplabv3_resnet50``, ``fcn_resnet50``, ``lraspp_mobilenet_v3_large``, ...
    #: (``torchvision.models.segmentation``).
    arch: str = "deeplabv3_resnet50"
    #: A weights enum member (``COCO_WITH_VOC_LABELS_V1``, ``DEFAULT``), from the torch hub cache.
    weights: str = "DEFAULT"
    #: A local checkpoint (a state dict with the same classes) used instead of downloading.
    checkpoint: str | None = None
    #: Shorter side images are resized to (torchvision's evaluation uses 520); None keeps the size.
    resize: int | None = Field(default=520, ge=16, le=4096)


class TorchvisionSegmenter(TorchvisionWeights, Segmenter):
    """A torchvision segmenter with its pretrained weights (21 Pascal VOC classes, trained on
    the VOC categories of COCO), from the torch hub cache or a local checkpoint. Classes
    are matched to the dataset's by name; logits are resized back to the label maps."""

    name = "torchvision-segmenter"
    version = "1"
    pretrained = True
    description = "torchvision segmenters (arch: deeplabv3_resnet50, fcn_resnet50, lraspp_mobilenet_v3_large)"
    torchvision_module = "segmentation"
    Params = TorchvisionSegmenterParams
    eval_batch = 4  # images are resized to a shorter side of 520
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def build(self, num_classes: int | None) -> nn.Module:
        from torchvision import models

        weights = self._weights()
        if self.params.checkpoint:
            net = models.get_model(self.params.arch, weights=None, weights_backbone=None,
                                   num_classes=len(weights.meta["categories"]), aux_loss=None)
            state = torch.load(self.params.checkpoint, map_location="cpu", weights_only=True)
            state = state.get("model", state.get("state_dict", state)) if isinstance(state, dict) else state
            net.load_state_dict({k: v for k, v in state.items() if not k.startswith("aux_classifier.")})
            return net
        return self._pretrained()

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize the shorter side to ``resize`` (bilinear), ImageNet normalisation."""
        batch = []
        for im in images:
            if self.params.resize is not None:
                h, w = im.shape[:2]
                scale = self.params.resize / min(h, w)
                im = np.asarray(Image.fromarray(im).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))
            batch.append(im)
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)
