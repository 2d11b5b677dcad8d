"""A small ResNet for the embedded dataset: trains in a minute or two on a CPU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from bench.models.base import Model, ModelParams


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Identity() if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def stem(width: int, stride: int) -> nn.Sequential:
    """3×3 convolutions at stride 2 (with batch norm and ReLU) down to ``stride``: one
    (stride 2) or two (stride 4, the first at half the width), as in the ResNet-C stems."""
    if stride not in STEM_STRIDES:
        raise ValueError(f"stem stride must be one of {STEM_STRIDES}, got {stride}")
    layers: list[nn.Module] = []
    cin = 3
    for i in range(STEM_STRIDES.index(stride) + 1):
        cout = width if 2 ** (i + 1) == stride else width // 2
        layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers)


STEM_STRIDES = (2, 4)


class TinyResNetNet(nn.Module):
    """Stem (stride 2 or 4) and one basic block per width (strides 1, 2, 2, ...)."""

    def __init__(self, num_classes: int, widths: Sequence[int], stem_stride: int = 2) -> None:
        super().__init__()
        w0 = widths[0]
        self.stem = stem(w0, stem_stride)
        stages, cin = [], w0
        for i, w in enumerate(widths):
            stages.append(BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3)))


class TinyResNetParams(ModelParams):
    widths: tuple[int, ...] = Field(default=(32, 64, 128, 256), min_length=1, max_length=6)
    #: Downsampling of the stem: 4 (two stride-2 convolutions) for 128×128 images and up.
    stem_stride: Literal[2, 4] = 4


class TinyResNet(Model):
    name = "tiny-resnet"
    version = "2"
    task = "classification"
    description = "small ResNet trained from scratch (scenario A) on the dataset's train split"
    Params = TinyResNetParams

    def build(self, num_classes: int | None) -> nn.Module:
        if num_classes is None:
            raise ValueError("tiny-resnet is trained from scratch and needs a labelled dataset")
        return TinyResNetNet(num_classes, self.params.widths, self.params.stem_stride).to(memory_format=torch.channels_last)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
        # channels-last runs these small convolutions ~25% faster on a CPU
        return batch.div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)
