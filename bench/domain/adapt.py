"""Pixel networks rebuilt to read a codec's latents (stride 16) instead of an image.

Three transformations, each applied to a copy of a trained pixel network so that every
layer whose shape survives keeps its weights:

- ``aa`` — architecture adaptation (Duan et al. 2023): the first 2× downsampling layer is
  dropped and replaced by a 4× sub-pixel convolution from the latents, the second 2×
  downsampling gets stride 1 (a pooling layer is dropped). The rest of the network then
  sees features at the stride it saw them in pixel space from stride 4 on: a 224×224
  image's 14×14 latents give ResNet-50's 56×56 stride-4 features.
- ``reshape`` — the parameter-free baseline: latent channels zero-padded to a multiple of
  3·16, pixel-shuffled by 4, fed to the network with both downsamplings at stride 1 and
  its first convolution widened to the new channel count.
- ``cresnet`` — compressed ResNet (Torfason et al. 2018; Deng & Karam 2021): the stem and
  the first ``drop_stages`` stages removed, each latent input (ŷ, σ̂) through its own
  residual block, concatenated, into the next stage (``drop_stages=1`` on ResNet-50 is
  Deng & Karam's cResNet-39; ``0`` is the cResNet-51 shape of Torfason et al.).

Downsampling layers are found by tracing the network on an example image (forward hooks
record each convolution's and pooling layer's input and output size), so the same code
adapts ResNet, VGG, EfficientNet and the small models that ship here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError

#: Latents are 1/16 of the image in each dimension (four stride-2 analysis layers).
LATENT_STRIDE = 16
_SAMPLERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class Step:
    """One module call seen while tracing: its input and output size and channels."""

    name: str
    module: nn.Module
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    out_channels: int


def trace(net: nn.Module, x: torch.Tensor) -> list[Step]:
    """Every module call with a 4-D input and output, in the order the calls finished."""
    steps: list[Step] = []
    names = {m: n for n, m in net.named_modules() if n}

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        first = inputs[0] if inputs else None
        if isinstance(first, torch.Tensor) and isinstance(output, torch.Tensor) and first.dim() == 4 == output.dim():
            steps.append(Step(names[module], module, tuple(first.shape[-2:]), tuple(output.shape[-2:]),
                              output.shape[1]))

    handles = [m.register_forward_hook(hook) for m in names]
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    return steps


def downsamplings(steps: Sequence[Step], size: int) -> tuple[list[Step], list[Step]]:
    """The convolution/pooling calls of the first and of the second 2× downsampling."""
    leaves = [s for s in steps if isinstance(s.module, _SAMPLERS)]
    first = [s for s in leaves if s.in_hw[0] == size and s.out_hw[0] < size]
    second = [s for s in leaves if s.in_hw[0] == size // 2 and s.out_hw[0] < size // 2]
    if not first or not second:
        raise BenchError("cannot adapt this network: it does not downsample by 2 twice at its start "
                         f"(traced {len(first)} first and {len(second)} second 2x downsampling layers)")
    if any(s.out_hw[0] != size // 2 for s in first) or any(s.out_hw[0] != size // 4 for s in second):
        raise BenchError("cannot adapt this network: its first two downsamplings are not 2x steps")
    return first, second


def _set(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, module)


def _stride_one(module: nn.Module) -> nn.Module:
    """The same layer at stride 1; a pooling layer is dropped."""
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return nn.Identity()
    module.stride = (1, 1)
    return module


class LatentStem(nn.Module):
    """One input stem per latent channel count (a codec's channels change with quality):
    per-channel normalisation, then a 3×3 convolution to ``out_channels · scale²`` and a
    sub-pixel shuffle by ``scale``."""

    def __init__(self, channels: Sequence[int], out_channels: int, scale: int = 4) -> None:
        super().__init__()
        self.stems = nn.ModuleDict({
            str(c): nn.Sequential(
                nn.BatchNorm2d(c, affine=False),
                nn.Conv2d(c, out_channels * scale * scale, 3, 1, 1),
                nn.PixelShuffle(scale),
            )
            for c in channels
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stems[str(x.shape[1])] if str(x.shape[1]) in self.stems else None
        if stem is None:
            raise BenchError(f"latents with {x.shape[1]} channels, but this model has stems for "
                             f"{', '.join(self.stems)} channels")
        return stem(x)


class ReshapeStem(nn.Module):
    """Zero-pad the channels to a multiple of 3·scale², then pixel-shuffle by ``scale``."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def out_channels(self, channels: int) -> int:
        block = 3 * self.scale**2
        return 3 * -(-channels // block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = 3 * self.scale**2
        pad = -x.shape[1] % block
        if pad:
            x = F.pad(x, (0, 0, 0, 0, 0, pad))
        return F.pixel_shuffle(x, self.scale)


def _example(size: int) -> torch.Tensor:
    return torch.zeros(2, 3, size, size)


def adapt_aa(net: nn.Module, channels: Sequence[int], size: int = 128) -> nn.Module:
    """A copy of ``net`` that reads latents of the given channel counts (see module doc)."""
    steps = trace(net, _example(size))
    first, second = downsamplings(steps, size)
    if len(first) != 1:
        raise BenchError(f"cannot adapt this network: its first downsampling has {len(first)} parallel layers "
                         f"({', '.join(s.name for s in first)})")
    out = copy.deepcopy(net)
    cut = steps.index(first[0])
    # layers that ran at full resolution before the first downsampling (VGG's first
    # convolutions) have nothing left to do: the stem replaces them all
    for s in steps[:cut]:
        if s.out_hw[0] == size and not list(s.module.children()):
            _set(out, s.name, nn.Identity())
    _set(out, first[0].name, LatentStem(channels, first[0].out_channels))
    for s in second:
        _set(out, s.name, _stride_one(out.get_submodule(s.name)))
    return out


def adapt_reshape(net: nn.Module, channels: int, size: int = 128) -> nn.Module:
    """A copy of ``net`` with both downsamplings at stride 1 and its first convolution
    widened (its RGB kernel repeated, divided by the repeat count) behind a ``ReshapeStem``."""
    steps = trace(net, _example(size))
    first, second = downsamplings(steps, size)
    out = copy.deepcopy(net)
    for s in first + second:
        _set(out, s.name, _stride_one(out.get_submodule(s.name)))
    stem = ReshapeStem()
    cin = stem.out_channels(channels)
    conv_step = next(s for s in steps if isinstance(s.module, nn.Conv2d))
    conv = out.get_submodule(conv_step.name)
    if conv.in_channels != 3 or conv.groups != 1:
        raise BenchError(f"cannot adapt this network: its first convolution ({conv_step.name}) does not read RGB")
    wide = nn.Conv2d(cin, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     bias=conv.bias is not None, padding_mode=conv.padding_mode)
    with torch.no_grad():
        wide.weight.copy_(conv.weight.repeat(1, cin // 3, 1, 1) / (cin // 3))
        if conv.bias is not None:
            wide.bias.copy_(conv.bias)
    # the stem goes in front of the first convolution, so every other layer keeps its name
    _set(out, conv_step.name, nn.Sequential(stem, wide))
    return out


class FusionStem(nn.Module):
    """cResNet's input: each latent part (ŷ, σ̂, ...) through its own residual block, the
    results concatenated to ``out_channels``."""

    def __init__(self, splits: Sequence[int], out_channels: int) -> None:
        super().__init__()
        from bench.models.tiny import BasicBlock

        self.splits = list(splits)
        widths = [out_channels // len(splits)] * len(splits)
        widths[0] += out_channels - sum(widths)
        self.norm = nn.BatchNorm2d(sum(splits), affine=False)
        self.blocks = nn.ModuleList(BasicBlock(c, w, 1) for c, w in zip(splits, widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != sum(self.splits):
            raise BenchError(f"latents with {x.shape[1]} channels, but this model reads {sum(self.splits)}")
        parts = self.norm(x).split(self.splits, dim=1)
        return torch.cat([block(p) for block, p in zip(self.blocks, parts)], dim=1)


def _resnet_layout(net: nn.Module) -> tuple[list[str], list[str]]:
    """(stem module names, stage module names) of a torchvision or tiny ResNet."""
    if all(hasattr(net, a) for a in ("conv1", "bn1", "maxpool", "layer1", "layer4")):
        return ["conv1", "bn1", "relu", "maxpool"], ["layer1", "layer2", "layer3", "layer4"]
    if hasattr(net, "stem") and isinstance(getattr(net, "stages", None), nn.Sequential):
        return ["stem"], [f"stages.{i}" for i in range(len(net.stages))]
    raise BenchError(f"cresnet needs a ResNet (torchvision's or tiny-resnet), not {type(net).__name__}")


def _stage_in_channels(stage: nn.Module) -> int:
    conv = next(m for m in stage.modules() if isinstance(m, nn.Conv2d))
    return conv.in_channels


def adapt_cresnet(net: nn.Module, splits: Sequence[int], drop_stages: int = 1) -> nn.Module:
    """A copy of ResNet ``net`` without its stem and first ``drop_stages`` stages, reading
    the latent parts ``splits`` (channel counts of ŷ, σ̂, ...) through a ``FusionStem``."""
    stem, stages = _resnet_layout(net)
    if not 0 <= drop_stages < len(stages):
        raise BenchError(f"cresnet: drop_stages must be 0..{len(stages) - 1} for this network (got {drop_stages})")
    out = copy.deepcopy(net)
    width = _stage_in_channels(out.get_submodule(stages[drop_stages]))
    _set(out, stem[0], FusionStem(splits, width))
    for name in stem[1:] + stages[:drop_stages]:
        _set(out, name, nn.Identity())
    return out


def reset_parameters(net: nn.Module) -> nn.Module:
    """Re-initialise every layer (``init: scratch``)."""
    for m in net.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return net


# --- feature taps (pixel-to-compressed knowledge transfer) ----------------------------


def feature_taps(net: nn.Module, strides: Sequence[int], size: int = 256) -> dict[int, str]:
    """For each stride, the module whose output is the network's last feature map at that
    stride (the outermost block to finish there), traced on a ``size``² example."""
    steps = trace(net, _example(size))
    taps: dict[int, str] = {}
    for s in strides:
        at = [st for st in steps if st.out_hw[0] * s == size]
        if not at:
            have = sorted({size // st.out_hw[0] for st in steps if st.out_hw[0] and size % st.out_hw[0] == 0})
            raise BenchError(f"knowledge transfer: the pixel model has no feature map at stride {s} "
                             f"(it has strides {', '.join(map(str, have))})")
        # the last block (a module with layers of its own) to finish there, as its outermost
        # ancestor that also ends there: ResNet's layer2, not a ReLU inside it; the stage
        # after a stem of the same stride, not the stem. Without blocks (VGG's flat
        # features), the outermost layer. 1×1 projections (an FPN's lateral convolutions)
        # are not feature maps of their own.
        at = [st for st in at if not (isinstance(st.module, nn.Conv2d) and st.module.kernel_size == (1, 1))] or at
        blocks = [st for st in at if next(st.module.children(), None) is not None]
        if blocks:
            last = blocks[-1].name
            chain = [st for st in blocks if st.name == last or last.startswith(st.name + ".")]
            taps[s] = min(chain, key=lambda st: st.name.count(".")).name
        else:
            depth = min(st.name.count(".") for st in at)
            taps[s] = [st for st in at if st.name.count(".") == depth][-1].name
    return taps


class FeatureRecorder:
    """Collects the outputs of named modules during a forward pass (a context manager)."""

    def __init__(self, net: nn.Module, names: Sequence[str]) -> None:
        self.net, self.names, self.features = net, list(names), {}
        self._handles: list = []

    def __enter__(self) -> dict[str, torch.Tensor]:
        for name in self.names:
            try:
                module = self.net.get_submodule(name)
            except AttributeError:
                raise BenchError(f"knowledge transfer: the compressed-domain model has no layer {name!r} "
                                 "(this architecture drops it)") from None
            self._handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: self.features.__setitem__(name, o)))
        return self.features

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()


def transfer_loss(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
                  weights: dict[str, float]) -> torch.Tensor:
    """Σ weight · mean squared error between the feature maps, the teacher's pooled to the
    student's size where they differ (cResNet works at half the resolution)."""
    total = None
    for name, w in weights.items():
        s, t = student[name].float(), teacher[name].float()
        if t.shape[-2:] != s.shape[-2:]:
            t = F.adaptive_avg_pool2d(t, s.shape[-2:])
        if t.shape[1] != s.shape[1]:
            raise BenchError(f"knowledge transfer: layer {name!r} has {s.shape[1]} channels in the "
                             f"compressed-domain model and {t.shape[1]} in the pixel model")
        term = w * F.mse_loss(s, t)
        total = term if total is None else total + term
    assert total is not None
    return total
