"""Compressed-domain task networks: a trained pixel network, adapted to read latents.

Every network here is called as ``net(x, sizes)`` with ``x`` a ``(N, C, h, w)`` batch of
latents (ŷ, and σ̂ / μ̂ when asked for, concatenated) and ``sizes`` the original images'
``(H, W)``; detection adds ``targets`` in train mode, as torchvision detectors do.
``feature_root`` names the module whose layers knowledge transfer taps, the same layers
in the pixel network (``pixel_root``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bench.domain.adapt import LATENT_STRIDE, adapt_aa, adapt_cresnet, adapt_reshape, reset_parameters
from bench.errors import BenchError
from bench.models.detectors import TinyCenterNetNet, cpu_bf16
from bench.models.segmenters import TinyFCNNet

if TYPE_CHECKING:
    from bench.tasks.base import Task

ARCHS = ("aa", "reshape", "cresnet")


def adapt(net: nn.Module, arch: str, splits: Sequence[int], drop_stages: int = 1) -> nn.Module:
    """``net`` (a copy) reading latents made of parts with ``splits`` channels."""
    if arch == "aa":
        return adapt_aa(net, [sum(splits)])
    if arch == "reshape":
        return adapt_reshape(net, sum(splits))
    if arch == "cresnet":
        return adapt_cresnet(net, splits, drop_stages)
    raise BenchError(f"unknown compressed-domain architecture {arch!r} (one of {', '.join(ARCHS)})")


class LatentClassifier(nn.Module):
    """A classifier adapted as a whole."""

    feature_root: ClassVar[str] = "body"
    pixel_root: ClassVar[str] = ""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor, sizes: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
        return self.body(x)


class LatentCenterNet(nn.Module):
    """The tiny CenterNet with its backbone adapted; its head, loss and box decoding are the
    pixel model's (stride 4 in image pixels)."""

    feature_root: ClassVar[str] = "net.backbone"
    pixel_root: ClassVar[str] = "backbone"

    def __init__(self, net: TinyCenterNetNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, sizes: Sequence[tuple[int, int]],
                targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        net = self.net
        with cpu_bf16(net.bf16 and self.training and x.device.type == "cpu"):
            out = net.head(net.backbone(x)[1]).float()
        heat, size, offset = out[:, : net.num_classes], out[:, -4:-2], out[:, -2:]
        if self.training:
            if targets is None:
                raise ValueError("a detector needs targets in train mode")
            return net.loss(heat, size, offset, targets)
        return net.decode(heat, size, offset, list(sizes))


class LatentFCN(nn.Module):
    """The tiny FCN with its backbone adapted; logits at the latent grid × 16, which covers
    the image (the caller crops each image's ``(H, W)``)."""

    feature_root: ClassVar[str] = "net.backbone"
    pixel_root: ClassVar[str] = "backbone"

    def __init__(self, net: TinyFCNNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, sizes: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
        net = self.net
        with cpu_bf16(net.bf16 and self.training and x.device.type == "cpu"):
            c1, p2 = net.backbone(x)
            p1 = net.lateral1(c1) + F.interpolate(net.context(p2), size=c1.shape[-2:], mode="nearest")
            logits = net.classify(torch.relu(p1))
        size = (x.shape[-2] * LATENT_STRIDE, x.shape[-1] * LATENT_STRIDE)
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def backbone_problem(task: str, model: Any, built_for: str, arch: str) -> str | None:
    """``Task.latent_problem`` of a task whose D network adapts one model's backbone."""
    if model.name != built_for:
        return f"compressed-domain {task} is built for {built_for} (got model {model.name!r})"
    if arch == "cresnet":
        return "cresnet is a classifier; use aa or reshape for detection and segmentation"
    return None


def backbone_network(pixel: nn.Module, net_type: type[nn.Module], wrapper: Callable[[Any], nn.Module], what: str,
                     arch: str, splits: Sequence[int], drop_stages: int) -> nn.Module:
    """``Task.latent_network`` of such a task: the pixel network's ``backbone`` adapted,
    the rest (head, loss, decoding) its own, inside ``wrapper``."""
    if not isinstance(pixel, net_type):
        raise BenchError(f"compressed-domain {what} (got {type(pixel).__name__})")
    pixel.backbone = adapt(pixel.backbone, arch, splits, drop_stages)
    return wrapper(pixel)


def unsupported_model(task: Task | str, model: Any, arch: str) -> str | None:
    from bench.tasks import as_task

    """Why scenario D cannot build ``arch`` for ``model`` on ``task``, before anything is built."""
    if type(model).__module__.endswith("openmmlab"):
        return f"model {model.name!r}: compressed-domain forms of OpenMMLab models are not built yet"
    return as_task(task).latent_problem(model, arch)


def latent_network(task: Task | str, pixel: nn.Module, arch: str, splits: Sequence[int], init: str = "pixel",
                   drop_stages: int = 1) -> nn.Module:
    """The compressed-domain network for ``task`` built from the trained ``pixel`` network
    (a copy): the task's own ``latent_network``."""
    if arch not in ARCHS:
        raise BenchError(f"unknown compressed-domain architecture {arch!r} (one of {', '.join(ARCHS)})")
    from bench.tasks import as_task

    pixel = copy.deepcopy(pixel).float().to(memory_format=torch.contiguous_format)
    net = as_task(task).latent_network(pixel, arch, splits, drop_stages)
    return reset_parameters(net) if init == "scratch" else net
