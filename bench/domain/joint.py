"""Joint encoder finetuning: a codec's analysis transform trained with the task model.

The compressed-domain network of scenario D normally learns on the latents of a frozen
codec. Here the codec's analysis transform g_a learns with it, under

    loss = rate + task_weight · task loss

- **rate** — bits per pixel from the model's likelihoods, ``-Σ log2 p`` over y and z
  divided by the pixels of the original images (bench's bpp; CompressAI's
  ``RateDistortionLoss`` divides by the padded size, which for images of a multiple of 64
  is the same). The likelihoods are those of training: uniform noise in place of rounding,
  in both entropy models. The entropy parameters come from ``h_s(ẑ)`` with ẑ the rounded z
  (straight-through), the ẑ the decoder sees (Minnen & Singh 2020's mixed quantisation).
- **task loss** — the task's own training loss (``Task.loss``) on exactly what the network
  reads at test time: ŷ = round(y − μ) + μ with the straight-through estimator (μ the
  means of a mean-scale model, 0 for a scale hyperprior), and σ̂ (μ̂) from ``h_s(ẑ)``,
  concatenated in ``inputs`` order and cropped to the ``ceil(H/16) × ceil(W/16)`` grid
  cells that cover the image, as ``latent_set`` crops the latents a stream decodes to.

Only g_a and the network are trained, by the one training loop (``bench.train.fit``: AdamW,
cosine decay); h_a, h_s,
g_s and the entropy models stay frozen, so the decoder — and the entropy coder's tables —
are unchanged and the finetuned encoder's streams decode with the original decoder.
Images are replicate-padded to a multiple of 64 as the codec pads them, and grouped by
padded size within a batch. Random horizontal flips (probability ½, as in ``train_latent``)
mirror the image edge-padded to its latent grid (``_grid_image``, as knowledge transfer
does) before the encoder, so the encoder sees mirrored scenes and the targets are mirrored
about the grid's width, which is train.py's convention.

Only hyperpriors without a context model are supported: an autoregressive model's ŷ and
μ̂ need the sequential pass, and a Gaussian mixture has no single μ to quantise around.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.codecs.neural import CompressAICodec, _padded, _to_tensor
from bench.config import Schedule
from bench.datasets.base import ImageSet, image_shapes
from bench.domain.adapt import LATENT_STRIDE
from bench.domain.train import LatentSet, _grid_image, latent_grid, pad_stack
from bench.errors import BenchError
from bench.tasks import Task, as_task
from bench.train import Batch, TrainingSet, fit, task_loss

#: Bench priors whose models can be finetuned jointly.
JOINT_PRIORS = ("scale", "mean-scale")
_SUPPORTED = "bmshj2018-hyperprior (ScaleHyperprior) and mbt2018-mean (MeanScaleHyperprior)"


def joint_unsupported(codec: Any) -> str | None:
    """Why the bench codec ``codec`` cannot be finetuned jointly, or None."""
    name = getattr(codec, "name", type(codec).__name__)
    if not isinstance(codec, CompressAICodec):
        return f"joint finetuning needs a neural codec ({_SUPPORTED}), not {name}"
    if codec.prior not in JOINT_PRIORS:
        return (f"joint finetuning is built for scale and mean-scale hyperpriors ({_SUPPORTED}); "
                f"{name} has a {codec.prior} prior")
    if codec.params.entropy_estimation:
        return f"joint finetuning measures its rate on real bitstreams: {name} has entropy_estimation: true"
    return None


def _prior_of(model: nn.Module) -> str:
    """``scale`` or ``mean-scale`` for exactly those CompressAI classes (subclasses such as
    mbt2018's context model are not the same coder), else a BenchError."""
    from compressai.models import MeanScaleHyperprior, ScaleHyperprior

    if type(model) is ScaleHyperprior:
        return "scale"
    if type(model) is MeanScaleHyperprior:
        return "mean-scale"
    raise BenchError(f"joint finetuning supports CompressAI's ScaleHyperprior and MeanScaleHyperprior "
                     f"({_SUPPORTED}), not {type(model).__name__}")


def _check_inputs(prior: str, inputs: Sequence[str]) -> None:
    have = ("y_hat", "scales", "means") if prior == "mean-scale" else ("y_hat", "scales")
    if not inputs:
        raise BenchError(f"joint finetuning: no latent inputs (use {', '.join(have)})")
    if missing := [name for name in inputs if name not in have]:
        raise BenchError(f"joint finetuning: a {prior} hyperprior has no {', '.join(missing)} in its latents "
                         f"(use {', '.join(have)})")


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def joint_forward(model: nn.Module, prior: str, x: torch.Tensor, inputs: Sequence[str],
                  training: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The latent parts named in ``inputs`` (uncropped, ``(B, C, Hp/16, Wp/16)`` each) and
    the bits per image (``-Σ log2 p`` over y and z) of a padded batch ``x``.

    ``training``: the likelihoods of noisy y and z (training's rate); otherwise of the
    rounded ones (CompressAI's ``forward`` in eval mode: the entropy-estimation rate). The
    parts are the decoder's in both cases (rounded, with straight-through gradients)."""
    _check_inputs(prior, inputs)
    y = model.g_a(x)
    z = model.h_a(y.abs() if prior == "scale" else y)
    eb = model.entropy_bottleneck
    _, z_lik = eb(z, training=training)
    medians = eb._get_medians().reshape(1, -1, 1, 1).to(z.dtype)
    z_hat = _ste_round(z - medians) + medians
    params = model.h_s(z_hat)
    scales, means = params.chunk(2, 1) if prior == "mean-scale" else (params, None)
    _, y_lik = model.gaussian_conditional(y, scales, means=means, training=training)
    y_hat = _ste_round(y - means) + means if means is not None else _ste_round(y)
    bits = -(torch.log2(y_lik).flatten(1).sum(1) + torch.log2(z_lik).flatten(1).sum(1))
    parts = {"y_hat": y_hat, "scales": scales, "means": means}
    return {name: parts[name] for name in inputs}, bits


def _encode_batch(model: nn.Module, prior: str, images: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]],
                  inputs: Sequence[str], device: str, training: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each image's network input (parts concatenated, cropped to the grid of its original
    ``sizes``) and the batch's total bits; images grouped by padded size, each group one
    forward pass. An image may come edge-padded to its grid (mirrored: ``_grid_image``)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, (h, w) in enumerate(sizes):
        groups.setdefault((_padded(h), _padded(w)), []).append(k)
    latents: list[torch.Tensor | None] = [None] * len(images)
    total = torch.zeros((), device=device)
    for (hp, wp), ks in groups.items():
        x = torch.stack([_to_tensor(images[k], hp, wp) for k in ks]).to(device)
        if len(ks) == 1 and not training:
            # as the codec does: a batch of one takes another convolution path in PyTorch on
            # a CPU, whose last-bit differences flip a rounded latent now and then
            parts, bits = joint_forward(model, prior, torch.cat([x, x]), inputs, training)
            parts, bits = {k: v[:1] for k, v in parts.items()}, bits[:1]
        else:
            parts, bits = joint_forward(model, prior, x, inputs, training)
        total = total + bits.sum()
        for row, k in enumerate(ks):
            gh, gw = latent_grid(sizes[k])
            latents[k] = torch.cat([parts[name][row, :, :gh, :gw].float() for name in inputs])
    return latents, total  # type: ignore[return-value]  # every slot is filled


class _EncoderImages:
    """Training images for an encoder trained with the network (``bench.train.Source``):
    a mirrored image is edge-padded to its latent grid and mirrored there, before the
    encoder, so the encoder sees the mirrored scene."""

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self.images = images
        self.sizes = [(int(sh[0]), int(sh[1])) for sh in image_shapes(images)]

    def __len__(self) -> int:
        return len(self.images)

    def width(self, i: int) -> int:
        return latent_grid(self.sizes[i])[1] * LATENT_STRIDE

    def item(self, i: int, flip: bool) -> tuple[np.ndarray, tuple[int, int]]:
        image = self.images[i]
        if flip:
            gh, gw = latent_grid(self.sizes[i])
            image = _grid_image(image, (gh * LATENT_STRIDE, gw * LATENT_STRIDE), True)
        return image, self.sizes[i]

    def collate(self, items: list[Any], flips: list[bool]) -> tuple[tuple[Any, ...], tuple[int, int], dict[str, Any]]:
        sizes = [size for _, size in items]
        grids = [latent_grid(size) for size in sizes]
        frame = (max(g[0] for g in grids) * LATENT_STRIDE, max(g[1] for g in grids) * LATENT_STRIDE)
        return (), frame, {"images": [image for image, _ in items], "sizes": sizes}


def train_joint(task: Task | str, model: nn.Module, net: nn.Module, inputs: Sequence[str],
                images: Sequence[np.ndarray], data: ImageSet, schedule: Schedule, task_weight: float,
                seed: int, device: str, **options: Any) -> dict[str, Any]:
    """Train ``model.g_a`` and ``net`` in place under ``rate + task_weight · task loss``
    (see the module docstring); ``model`` is the caller's copy of a CompressAI
    ScaleHyperprior or MeanScaleHyperprior, left updated (``update(force=True)``) and in
    eval mode, like ``net``. Returns per-epoch means of the training objective's terms:
    ``bpp_per_epoch`` (estimated, noisy likelihoods), ``task_loss_per_epoch`` and
    ``loss_per_epoch``, and the number of ``steps``. ``options`` go to ``fit``."""
    task = as_task(task)
    prior = _prior_of(model)
    _check_inputs(prior, inputs)
    if len(images) != len(data.images):
        raise BenchError(f"joint finetuning: {len(images)} images for a training set of {len(data.images)}")
    if len(images) == 0:
        raise BenchError("joint finetuning: no training images")
    training = TrainingSet(task, _EncoderImages(images), task.training_targets(data))
    model.to(device).requires_grad_(False)
    model.g_a.requires_grad_(True)
    model.train()
    record: dict[str, Any] = {"bpp_per_epoch": [], "task_loss_per_epoch": [], "loss_per_epoch": [], "steps": 0,
                              "task_weight": task_weight, "prior": prior, "flips": "image"}
    sums = dict.fromkeys(("bits", "pixels", "task", "loss", "steps"), 0.0)

    def step(batch: Batch) -> torch.Tensor:
        sizes = batch.extras["sizes"]
        latents, bits = _encode_batch(model, prior, batch.extras["images"], sizes, inputs, device, training=True)
        x = pad_stack(latents).to(device)  # already mirrored: the flips only mirror targets
        task_term = task_loss(task, net, replace(batch, inputs=(x, sizes)))
        n_pixels = sum(h * w for h, w in sizes)
        loss = bits / n_pixels + task_weight * task_term
        sums["bits"] += float(bits.detach())
        sums["pixels"] += n_pixels
        sums["task"] += float(task_term.detach()) * len(sizes)
        sums["loss"] += float(loss.detach()) * len(sizes)
        sums["steps"] += 1
        return loss

    def on_epoch(epoch: int) -> dict[str, float]:
        means = {"bpp": sums["bits"] / sums["pixels"], "task_loss": sums["task"] / len(images),
                 "loss": sums["loss"] / len(images), "steps": int(sums["steps"])}
        sums.update(dict.fromkeys(sums, 0.0))
        return means

    cuda = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the entropy models' noise, reproducible
        torch.manual_seed(seed)
        epochs = fit(nn.ModuleList([model.g_a, net]), training, step, schedule, seed, device, hflip=task.hflip,
                     on_epoch=on_epoch, **options)
    for name in ("bpp", "task_loss", "loss"):
        record[f"{name}_per_epoch"] = [e[name] for e in epochs]
    record["steps"] = sum(e["steps"] for e in epochs)
    model.requires_grad_(False)
    model.update(force=True)
    model.eval()
    net.eval()
    return record


@torch.no_grad()
def joint_latents(model: nn.Module, images: Sequence[np.ndarray], inputs: Sequence[str],
                  device: str = "cpu", batch_size: int = 8) -> tuple[LatentSet, float]:
    """What the network reads for each image — without entropy coding, the same parts and
    crop as ``latent_set(codec.latents(streams), inputs)`` — and the estimated bpp of the
    rounded latents (the entropy-estimation rate)."""
    prior = _prior_of(model)
    _check_inputs(prior, inputs)
    was = model.training
    model.eval()
    out: list[torch.Tensor] = []
    bits = 0.0
    try:
        for start in range(0, len(images), batch_size):
            idx = list(range(start, min(start + batch_size, len(images))))
            latents, b = _encode_batch(model, prior, [images[i] for i in idx],
                                       [tuple(int(s) for s in images[i].shape[:2]) for i in idx], inputs, device,
                                       training=False)
            out.extend(t.cpu() for t in latents)
            bits += float(b)
    finally:
        model.train(was)
    sizes = [tuple(int(s) for s in image.shape[:2]) for image in images]
    return LatentSet(out, sizes), bits / sum(h * w for h, w in sizes)
