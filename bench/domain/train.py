"""Training and evaluating compressed-domain networks on latents, for any task.

The task supplies its targets, their mirror, its loss and its metric (``bench.tasks.base``);
``bench.train.fit`` is the loop. Every network here is called as ``net(x, sizes)`` (the
latents and the original images' sizes, ``bench.domain.nets``). A flip mirrors each image's
latents, its targets about the latent grid's width in pixels, and — with knowledge
transfer — the original image padded to that grid, so teacher and student see the same scene.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.config import Schedule
from bench.datasets.base import ImageSet
from bench.domain.adapt import LATENT_STRIDE, FeatureRecorder, transfer_loss
from bench.errors import BenchError
from bench.metrics.bootstrap import Scores
from bench.models.base import Model
from bench.tasks import Task, as_task
from bench.train import Batch, TrainingSet, fit, loader_options, task_loss

EVAL_BATCH = 64


def latent_grid(size: tuple[int, int]) -> tuple[int, int]:
    """The latent positions that cover an ``(H, W)`` image: ``ceil(H/16) × ceil(W/16)``."""
    return -(-size[0] // LATENT_STRIDE), -(-size[1] // LATENT_STRIDE)


def pad_stack(latents: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(n, C, h_max, w_max)``: the ``(C, h, w)`` latents zero-padded right and bottom."""
    h = max(t.shape[-2] for t in latents)
    w = max(t.shape[-1] for t in latents)
    out = latents[0].new_zeros((len(latents), latents[0].shape[0], h, w))
    for k, t in enumerate(latents):
        out[k, :, : t.shape[-2], : t.shape[-1]] = t
    return out


def frame_of(x: torch.Tensor) -> tuple[int, int]:
    """The ``(H, W)`` in image pixels that a batch of latents covers."""
    return int(x.shape[-2]) * LATENT_STRIDE, int(x.shape[-1]) * LATENT_STRIDE


@dataclass
class LatentSet:
    """Per-image latents ``(C, h, w)`` (the grid cells that cover the image) and the
    original image sizes ``(H, W)``. ``latents`` is a list, or a ``StreamLatents`` that
    entropy-decodes each stream when it is read (in a training loader's workers)."""

    latents: Sequence[torch.Tensor]
    sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.latents)

    def grid_pixels(self, i: int) -> tuple[int, int]:
        """Item ``i``'s latent grid in image pixels (its size rounded up to 16)."""
        h, w = latent_grid(self.sizes[i])
        return h * LATENT_STRIDE, w * LATENT_STRIDE

    @property
    def channels(self) -> int:
        return int(self.latents[0].shape[0])

    def batch(self, idx: Sequence[int], flips: Sequence[bool] | None = None) -> torch.Tensor:
        """``(n, C, h_max, w_max)``, each item flipped when asked, zero-padded right/bottom
        (a run of consecutive items is read in one call: one entropy-decoding batch)."""
        if len(idx) and list(idx) == list(range(idx[0], idx[0] + len(idx))):
            items = list(self.latents[idx[0] : idx[0] + len(idx)])
        else:
            items = [self.latents[i] for i in idx]
        return pad_stack([t.flip(-1) if flips is not None and flips[k] else t for k, t in enumerate(items)])


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


class LatentSource:
    """Latents as a compressed-domain network's input (``bench.train.Source``); under
    knowledge transfer each item brings the teacher's image too, padded to its grid and
    mirrored with it."""

    def __init__(self, lat: LatentSet, transfer: Transfer | None = None) -> None:
        self.lat, self.transfer = lat, transfer

    def __len__(self) -> int:
        return len(self.lat)

    def width(self, i: int) -> int:
        return self.lat.grid_pixels(i)[1]

    def item(self, i: int, flip: bool) -> tuple[torch.Tensor, tuple[int, int], np.ndarray | None]:
        latent = self.lat.latents[i].flip(-1) if flip else self.lat.latents[i]
        teacher = None
        if self.transfer is not None:
            teacher = _grid_image(self.transfer.originals[i], self.lat.grid_pixels(i), flip)
        return latent, self.lat.sizes[i], teacher

    def collate(self, items: list[Any], flips: list[bool]) -> tuple[tuple[Any, ...], tuple[int, int], dict[str, Any]]:
        x = pad_stack([it[0] for it in items])
        frame = frame_of(x)
        extras: dict[str, Any] = {}
        if self.transfer is not None:
            h, w = frame
            images = [np.pad(t, ((0, h - t.shape[0]), (0, w - t.shape[1]), (0, 0))) for *_, t in items]
            extras["teacher"] = self.transfer.model.preprocess(images)
        return (x, [it[1] for it in items]), frame, extras


def _teacher_features(tr: Transfer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad(), FeatureRecorder(tr.teacher, list(tr.layers)) as feats:
        tr.teacher(x)
    return {k: v.detach() for k, v in feats.items()}


def train_latent(task: Task | str, net: nn.Module, lat: LatentSet, data: ImageSet, schedule: Schedule, seed: int,
                 device: str, transfer: Transfer | None = None, **options: Any) -> list[float]:
    """Optimise ``net`` in place on the latents with the task's targets of ``data`` (plus
    the knowledge-transfer term); returns the mean knowledge-transfer distance per epoch
    (empty without transfer). ``options`` go to ``fit`` (loader workers, a checkpoint)."""
    task = as_task(task)
    student_layers = [f"{net.feature_root}.{name}" if name else net.feature_root
                      for name in (transfer.layers if transfer else {})]
    distances: list[float] = []
    total, count = [0.0], [0]

    def step(batch: Batch) -> torch.Tensor:
        if transfer is None:
            return task_loss(task, net, batch)
        teacher = _teacher_features(transfer, batch.extras["teacher"])
        with FeatureRecorder(net, student_layers) as student:
            loss = task_loss(task, net, batch)
        kt = transfer_loss({name: student[full] for name, full in zip(transfer.layers, student_layers)},
                           teacher, transfer.layers)
        total[0] += float(kt.detach()) * len(batch.index)
        count[0] += len(batch.index)
        return loss + kt

    def on_epoch(epoch: int) -> float | None:
        if transfer is None:
            return None
        distance = total[0] / count[0]
        total[0], count[0] = 0.0, 0
        return distance

    data_set = TrainingSet(task, LatentSource(lat, transfer), task.training_targets(data))
    records = fit(net, data_set, step, schedule, seed, device, hflip=task.hflip, on_epoch=on_epoch,
                  **loader_options(lat.latents, options))
    return [d for d in records if d is not None]


@torch.no_grad()
def evaluate_latent(task: Task | str, net: nn.Module, lat: LatentSet, references: Any, device: str) -> Scores:
    """The task's metrics (its own ``score``) of ``net`` on the latents, against the
    scenario-A references."""
    task = as_task(task)
    net.eval()

    def predictions() -> Iterator[Any]:
        for start in range(0, len(lat), EVAL_BATCH):
            idx = list(range(start, min(start + EVAL_BATCH, len(lat))))
            x = lat.batch(idx).to(device)
            sizes = [lat.sizes[i] for i in idx]
            yield from task.predictions(net(x, sizes), sizes, frame_of(x))

    return task.scores(predictions(), references)


def network_input(lat: Any, inputs: Sequence[str]) -> tuple[torch.Tensor, list[int]]:
    """One stream's ``Latents`` as the network reads them — the named parts (``y_hat``,
    ``scales``, ``means``, ``weights``; a mixture's K components stacked as channels),
    concatenated, cropped to the grid cells that cover the image — and each part's
    channel count."""
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
    return torch.cat(parts).contiguous(), [p.shape[0] for p in parts]


def _same_splits(splits: list[int] | None, these: list[int]) -> list[int]:
    if splits is not None and these != splits:
        raise BenchError(f"scenario D: latents of one operating point have {splits} and {these} channels")
    return these


def latent_set(latents: Sequence[Any], inputs: Sequence[str]) -> tuple[LatentSet, list[int]]:
    """The network input of each of ``latents`` (``network_input``), held in memory, and
    each part's channel count."""
    tensors, sizes, splits = [], [], None
    for lat in latents:
        x, these = network_input(lat, inputs)
        splits = _same_splits(splits, these)
        tensors.append(x)
        sizes.append(tuple(lat.size))
    return LatentSet(tensors, sizes), splits or []


class StreamLatents(Sequence[torch.Tensor]):
    """The network input of each stream, entropy-decoded by ``codec`` when read (an index
    decodes one stream, a slice its streams in one call): a split's latents stream through
    training and evaluation as its images do, never held at once. Entropy decoding runs on
    the CPU whatever the device, so a training loader's worker processes decode them."""

    def __init__(self, streams: Sequence[bytes], codec: Any, inputs: Sequence[str], splits: list[int]) -> None:
        self.streams, self.codec, self.inputs, self.splits = streams, codec, list(inputs), splits

    def __len__(self) -> int:
        return len(self.streams)

    @property
    def in_workers(self) -> bool:
        """Whether loader worker processes (forked, CPU-only) can decode these: the codec's
        hyper-synthesis runs on its device."""
        device = getattr(self.codec, "device", None)
        return device is None or torch.device(device).type == "cpu"

    def _inputs(self, latents: Sequence[Any]) -> list[torch.Tensor]:
        out = []
        for lat in latents:
            x, these = network_input(lat, self.inputs)
            _same_splits(self.splits, these)
            out.append(x)
        return out

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            streams = list(self.streams[i])
            return self._inputs(self.codec.latents(streams)) if streams else []
        return self._inputs(self.codec.latents([self.streams[i]]))[0]


#: A split whose latents take at most this many bytes is entropy-decoded once and held
#: (a few MB for thousands of small images): an epoch then does not decode it again. Larger
#: splits stream (``StreamLatents``), decoded again each epoch in the loader's workers.
HOLD_LATENT_BYTES = 256 * 2**20


def stream_latents(streams: Sequence[bytes], codec: Any, inputs: Sequence[str],
                   sizes: Sequence[tuple[int, int]]) -> tuple[LatentSet, list[int]]:
    """A split's latents and each part's channel count: read from its streams on use
    (``StreamLatents``; the first stream is decoded now, for the parts' channel counts), or
    decoded now in batches and held when they fit in ``HOLD_LATENT_BYTES``."""
    if not len(streams):
        raise BenchError("scenario D: no streams to read latents from")
    first, splits = network_input(codec.latents([streams[0]])[0], inputs)
    latents: Sequence[torch.Tensor] = StreamLatents(streams, codec, inputs, splits)
    if first.numel() * first.element_size() * len(streams) <= HOLD_LATENT_BYTES:
        latents = [x for i in range(0, len(streams), EVAL_BATCH) for x in latents[i : i + EVAL_BATCH]]
    return LatentSet(latents, [tuple(map(int, s)) for s in sizes]), splits
