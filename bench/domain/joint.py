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
- **task loss** — the per-task loss of ``bench.domain.train`` on exactly what the network
  reads at test time: ŷ = round(y − μ) + μ with the straight-through estimator (μ the
  means of a mean-scale model, 0 for a scale hyperprior), and σ̂ (μ̂) from ``h_s(ẑ)``,
  concatenated in ``inputs`` order and cropped to the ``ceil(H/16) × ceil(W/16)`` grid
  cells that cover the image, as ``latent_set`` crops the latents a stream decodes to.

Only g_a and the network are trained (AdamW, cosine decay: ``optimizer_for``); h_a, h_s,
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
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.codecs.neural import CompressAICodec, _padded, _to_tensor
from bench.config import Schedule
from bench.datasets.base import ImageSet
from bench.domain.adapt import LATENT_STRIDE
from bench.domain.train import _TASKS, LatentSet, _grid_image, latent_grid
from bench.errors import BenchError
from bench.tasks.base import optimizer_for

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


def _encode_batch(model: nn.Module, prior: str, images: Sequence[np.ndarray], idx: Sequence[int],
                  flips: Sequence[bool], inputs: Sequence[str], device: str,
                  training: bool) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Each image's network input (parts concatenated, cropped to its grid) and the batch's
    total bits; images grouped by padded size, each group one forward pass."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, i in enumerate(idx):
        h, w = images[i].shape[:2]
        groups.setdefault((_padded(h), _padded(w)), []).append(k)
    latents: dict[int, torch.Tensor] = {}
    total = torch.zeros((), device=device)
    for (hp, wp), ks in groups.items():
        pics = []
        for k in ks:
            image = images[idx[k]]
            gh, gw = latent_grid(image.shape[:2])
            if flips[k]:
                image = _grid_image(image, (gh * LATENT_STRIDE, gw * LATENT_STRIDE), True)
            pics.append(_to_tensor(image, hp, wp))
        x = torch.stack(pics).to(device)
        if len(ks) == 1 and not training:
            # as the codec does: a batch of one takes another convolution path in PyTorch on
            # a CPU, whose last-bit differences flip a rounded latent now and then
            parts, bits = joint_forward(model, prior, torch.cat([x, x]), inputs, training)
            parts, bits = {k: v[:1] for k, v in parts.items()}, bits[:1]
        else:
            parts, bits = joint_forward(model, prior, x, inputs, training)
        total = total + bits.sum()
        for row, k in enumerate(ks):
            gh, gw = latent_grid(images[idx[k]].shape[:2])
            latents[idx[k]] = torch.cat([parts[name][row, :, :gh, :gw].float() for name in inputs])
    return latents, total


def train_joint(task: str, model: nn.Module, net: nn.Module, inputs: Sequence[str],
                images: Sequence[np.ndarray], data: ImageSet, schedule: Schedule, task_weight: float,
                seed: int, device: str) -> dict[str, Any]:
    """Train ``model.g_a`` and ``net`` in place under ``rate + task_weight · task loss``
    (see the module docstring); ``model`` is the caller's copy of a CompressAI
    ScaleHyperprior or MeanScaleHyperprior, left updated (``update(force=True)``) and in
    eval mode, like ``net``. Returns per-epoch means of the training objective's terms:
    ``bpp_per_epoch`` (estimated, noisy likelihoods), ``task_loss_per_epoch`` and
    ``loss_per_epoch``, and the number of ``steps``."""
    if task not in _TASKS:
        raise BenchError(f"joint finetuning: unknown task {task!r} (one of {', '.join(_TASKS)})")
    prior = _prior_of(model)
    _check_inputs(prior, inputs)
    if len(images) != len(data.images):
        raise BenchError(f"joint finetuning: {len(images)} images for a training set of {len(data.images)}")
    if len(images) == 0:
        raise BenchError("joint finetuning: no training images")
    ops = _TASKS[task](data)
    model.to(device).requires_grad_(False)
    model.g_a.requires_grad_(True)
    model.train()
    net.to(device).train()
    trained = nn.ModuleList([model.g_a, net])
    opt, sched = optimizer_for(trained, schedule, len(images))
    sizes = [tuple(int(s) for s in image.shape[:2]) for image in images]
    lat = LatentSet([None] * len(images), sizes)  # type: ignore[list-item]  # filled per batch
    gen = torch.Generator().manual_seed(seed)
    record: dict[str, Any] = {"bpp_per_epoch": [], "task_loss_per_epoch": [], "loss_per_epoch": [], "steps": 0,
                              "task_weight": task_weight, "prior": prior, "flips": "image"}
    cuda = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the entropy models' noise, reproducible
        torch.manual_seed(seed)
        for _ in range(schedule.epochs):
            order = torch.randperm(len(images), generator=gen).tolist()
            bits_sum = pixels = task_sum = loss_sum = 0.0
            for start in range(0, len(order), schedule.batch_size):
                idx = order[start : start + schedule.batch_size]
                flips = (torch.rand(len(idx), generator=gen) < 0.5).tolist()
                latents, bits = _encode_batch(model, prior, images, idx, flips, inputs, device, training=True)
                for i in idx:
                    lat.latents[i] = latents[i]
                x = lat.batch(idx).to(device)  # already mirrored: the flips only mirror targets
                task_loss = ops.loss(net, x, lat, idx, flips, device)
                n_pixels = sum(sizes[i][0] * sizes[i][1] for i in idx)
                bpp = bits / n_pixels
                loss = bpp + task_weight * task_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                for i in idx:
                    lat.latents[i] = None  # type: ignore[call-overload]  # keep no graph alive
                bits_sum, pixels = bits_sum + float(bits.detach()), pixels + n_pixels
                task_sum += float(task_loss.detach()) * len(idx)
                loss_sum += float(loss.detach()) * len(idx)
                record["steps"] += 1
            record["bpp_per_epoch"].append(bits_sum / pixels)
            record["task_loss_per_epoch"].append(task_sum / len(images))
            record["loss_per_epoch"].append(loss_sum / len(images))
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
            latents, b = _encode_batch(model, prior, images, idx, [False] * len(idx), inputs, device,
                                       training=False)
            out.extend(latents[i].cpu() for i in idx)
            bits += float(b)
    finally:
        model.train(was)
    sizes = [tuple(int(s) for s in image.shape[:2]) for image in images]
    return LatentSet(out, sizes), bits / sum(h * w for h, w in sizes)
