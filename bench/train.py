"""The one training loop, for every task and every kind of network input.

Modelled on torchvision's ``references/classification/train.py``: AdamW with a cosine
decay, epochs of batches from a ``torch.utils.data.DataLoader`` over a map-style dataset,
a random horizontal flip per item, optional mixed precision, a hook per epoch. What is
specific to a task — its targets, how a flip mirrors them, how they are batched, the loss —
comes from the task (``bench.tasks.base.Task``); what is specific to the network's input —
pixels (scenarios A and C), a codec's latents (D), images for an encoder trained with the
network (D with joint finetuning) — comes from a ``Source``.

Random numbers: one generator, seeded once, draws each epoch's permutation and then, per
batch, one coin per item (``FlipBatches``) — in the main process, so the order and the
flips do not depend on the number of loader workers. The loader gets its own generator,
seeded per epoch from the seed and the epoch, for the seeds of its workers; neither draws
from torch's global generator, which stays with the network (dropout, a codec's noise).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.config import Schedule
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.tasks.base import Task

#: Mixed-precision modes: ``None`` (fp32), ``"bf16"`` (CPU or CUDA), ``"fp16"`` (CUDA only).
PRECISIONS = (None, "bf16", "fp16")


def optimizer_for(net: nn.Module, schedule: Schedule,
                  n_items: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a cosine decay over the schedule's steps: the same for every task."""
    opt = torch.optim.AdamW(net.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    steps = schedule.epochs * math.ceil(n_items / schedule.batch_size)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)


# --- what a batch is made of --------------------------------------------------------------


def to_device(obj: Any, device: str | torch.device, non_blocking: bool = False) -> Any:
    """``obj`` with every tensor in it (in tuples, lists and dicts) on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    return obj


def _pinned(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pinned(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _pinned(v) for k, v in obj.items()}
    return obj


@dataclass
class Batch:
    """One training batch: which items, which of them are mirrored, the network's
    positional inputs, the task's batched targets and what else a step needs (``extras``:
    the teacher's input for knowledge transfer, the images for a trained encoder)."""

    index: list[int]
    flips: list[bool]
    inputs: tuple[Any, ...]
    targets: Any
    extras: dict[str, Any] = field(default_factory=dict)

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Batch:
        return replace(self, inputs=to_device(self.inputs, device, non_blocking),
                       targets=to_device(self.targets, device, non_blocking),
                       extras=to_device(self.extras, device, non_blocking))

    def pin_memory(self) -> Batch:  # called by the DataLoader's pinning thread
        return replace(self, inputs=_pinned(self.inputs), targets=_pinned(self.targets), extras=_pinned(self.extras))


class Source(Protocol):
    """Where the network's inputs come from, item by item."""

    def __len__(self) -> int: ...

    def width(self, i: int) -> int:
        """The width in image pixels that a flip of item ``i`` mirrors its targets about."""

    def item(self, i: int, flip: bool) -> Any:
        """Item ``i``'s input, mirrored when ``flip`` (or marked to be, where the mirror is
        taken after batching)."""

    def collate(self, items: list[Any], flips: list[bool]) -> tuple[tuple[Any, ...], tuple[int, int], dict[str, Any]]:
        """The network's positional inputs for a batch of items, the ``(H, W)`` in image
        pixels that the batch's targets are laid out on, and any extras."""


class TrainingSet(Dataset):
    """A map-style dataset of training items keyed by ``(index, flip)``: the source's input
    and the task's target, mirrored together. Items are fetched one by one (in loader
    workers when there are any), so a source can read them lazily."""

    def __init__(self, task: Task, source: Source, targets: Sequence[Any],
                 augment: Callable[[Any, Any, int], tuple[Any, Any]] | None = None) -> None:
        if len(targets) != len(source):
            raise BenchError(f"{len(source)} training items but {len(targets)} targets")
        self.task, self.source, self.targets, self.augment = task, source, targets, augment

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, bool] | tuple[int, bool, int]) -> tuple[int, bool, Any, Any]:
        i, flip, *seed = key
        target = self.targets[i]
        if flip:
            target = self.task.flip_target(target, self.source.width(i))
        item = self.source.item(i, flip)
        if self.augment is not None:  # the item's own seed, drawn with the order: any worker, same result
            item, target = self.augment(item, target, seed[0])
        return i, flip, item, target

    def collate(self, items: list[tuple[int, bool, Any, Any]]) -> Batch:
        index = [it[0] for it in items]
        flips = [it[1] for it in items]
        inputs, frame, extras = self.source.collate([it[2] for it in items], flips)
        return Batch(index, flips, inputs, self.task.collate_targets([it[3] for it in items], frame), extras)


class FlipBatches(Sampler):
    """Batches of ``(index, flip)`` keys: each epoch a permutation, then per batch one coin
    per item (heads with probability ``p``; no coins when ``p`` is 0), from one generator;
    with ``seeds``, each key also carries a seed for the item's own augmentation."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, p: float = 0.5,
                 seeds: bool = False) -> None:
        self.n, self.batch_size, self.generator, self.p, self.seeds = n, batch_size, generator, p, seeds

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        for start in range(0, self.n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.p > 0:
                flips = (torch.rand(len(idx), generator=self.generator) < self.p).tolist()
            else:
                flips = [False] * len(idx)
            if self.seeds:
                seeds = torch.randint(0, 2**62, (len(idx),), generator=self.generator).tolist()
                yield list(zip(idx, flips, seeds))
            else:
                yield list(zip(idx, flips))


# --- the loop -----------------------------------------------------------------------------


def task_loss(task: Task, net: nn.Module, batch: Batch) -> torch.Tensor:
    """The task's training loss of ``net`` on ``batch``."""
    return task.loss(task.training_outputs(net, batch.inputs, batch.targets), batch.targets)


def autocast(device: str | torch.device, precision: str | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``precision`` on ``device`` (nothing for fp32)."""
    if precision not in PRECISIONS:
        raise BenchError(f"unknown precision {precision!r} (one of bf16, fp16, or none for fp32)")
    kind = torch.device(device).type
    if precision is None:
        return contextlib.nullcontext()
    if precision == "fp16" and kind != "cuda":
        raise BenchError("fp16 mixed precision needs a CUDA device; use bf16 on a CPU")
    return torch.autocast(kind, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


class Checkpoint:
    """Where a training saves its whole state after each epoch, and resumes from: the
    weights, the optimiser, its schedule, the gradient scaler, the order generator and
    torch's global generator, and what each finished epoch recorded. A run killed during a
    training resumes at the epoch after its last finished one and ends where an
    uninterrupted run ends (on the same device and thread count). Written under a
    temporary name and renamed into place: a kill leaves the previous epoch's."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        #: The epoch (from 0) a training resumed at, when it did.
        self.resumed_at: int | None = None

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # an unreadable checkpoint costs its epochs, never the run
            return None

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _resume(checkpoint: Checkpoint | None, module: nn.Module, parts: dict[str, Any], order: torch.Generator,
            epochs: int) -> tuple[int, list[Any]]:
    """The first epoch to run and the finished epochs' records (0 and none without a checkpoint)."""
    state = checkpoint.load() if checkpoint is not None else None
    if state is None or state.get("epochs") != epochs:
        return 0, []
    module.load_state_dict(state["module"])
    for name, part in parts.items():
        part.load_state_dict(state[name])
    order.set_state(state["order"])
    torch.set_rng_state(state["rng"])
    assert checkpoint is not None
    checkpoint.resumed_at = int(state["epoch"]) + 1
    return checkpoint.resumed_at, list(state["records"])


#: glibc's ``mallopt`` parameter for the size from which an allocation gets its own mapping.
M_MMAP_THRESHOLD = -3


def _worker_start(worker_id: int) -> None:
    """In a loader worker: give every allocation of 1 MiB or more its own mapping, returned
    to the system when freed. By default glibc raises that threshold as large blocks are
    freed, and a worker that builds a batch tensor and hands it over in shared memory each
    step then grows its heap without bound (measured: 1.3 GB after 150 batches of 32
    192×144 images, against 17 MB with the threshold fixed)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):  # not glibc: its allocator has no such setting
        pass


def fit(
    module: nn.Module,
    data: TrainingSet,
    step: Callable[[Batch], torch.Tensor],
    schedule: Schedule,
    seed: int,
    device: str,
    *,
    hflip: float = 0.5,
    precision: str | None = None,
    num_workers: int = 0,
    on_epoch: Callable[[int], Any] | None = None,
    checkpoint: Checkpoint | None = None,
) -> list[Any]:
    """Optimise the parameters of ``module`` in place: ``schedule.epochs`` epochs over
    ``data`` in batches of ``schedule.batch_size``, each item mirrored with probability
    ``hflip``, ``step(batch)`` the loss of a batch (on ``device``), AdamW with a cosine
    decay (``optimizer_for``). Returns what ``on_epoch(epoch)`` returned after each epoch
    (from 0), once its last step is taken.

    ``precision``: ``"bf16"`` or ``"fp16"`` runs each step under ``torch.autocast`` (on CUDA
    with a ``GradScaler``); the default is the schedule's ``precision`` if it has one, else
    fp32. ``num_workers`` loader processes read and collate the items (a source's lazily
    read or decoded images), each epoch's in order; ``checkpoint`` saves the whole state
    after each epoch and resumes from it (``Checkpoint``). ``module`` is left in eval mode.
    """
    if precision is None:
        precision = getattr(schedule, "precision", None)
    cuda = torch.device(device).type == "cuda"
    autocast(device, precision)  # a precision the device cannot run fails before any work
    order = torch.Generator().manual_seed(seed)
    workers = torch.Generator()
    batches = FlipBatches(len(data), schedule.batch_size, order, hflip, seeds=data.augment is not None)
    loader = DataLoader(data, batch_sampler=batches, collate_fn=data.collate, num_workers=num_workers,
                        pin_memory=cuda, generator=workers, worker_init_fn=_worker_start,
                        persistent_workers=num_workers > 0)
    module.to(device).train()
    opt, sched = optimizer_for(module, schedule, len(data))
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and precision is not None)
    parts = {"opt": opt, "sched": sched, "scaler": scaler}
    start, records = _resume(checkpoint, module, parts, order, schedule.epochs)
    for epoch in range(start, schedule.epochs):
        workers.manual_seed(seed * 1_000_003 + epoch)
        for batch in loader:
            batch = batch.to(device, non_blocking=cuda)
            with autocast(device, precision):
                loss = step(batch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
        records.append(on_epoch(epoch) if on_epoch is not None else None)
        if checkpoint is not None and epoch + 1 < schedule.epochs:
            checkpoint.save({"epoch": epoch, "epochs": schedule.epochs, "records": records,
                             "module": module.state_dict(), "order": order.get_state(),
                             "rng": torch.get_rng_state(), **{k: v.state_dict() for k, v in parts.items()}})
    module.eval()
    return records


# --- pixels: scenarios A and C ------------------------------------------------------------


class PixelSource:
    """Images for a pixel network. The flip is taken by the task's ``batch_inputs``
    after ``model.preprocess``, on the batch, as the torchvision references do."""

    def __init__(self, task: Task, model: Any, images: Sequence[Any]) -> None:
        self.task, self.model, self.images = task, model, images

    def __len__(self) -> int:
        return len(self.images)

    def width(self, i: int) -> int:
        shapes = getattr(self.images, "shapes", None)  # a lazy set knows its sizes unread
        return int((shapes[i] if shapes is not None else self.images[i].shape)[1])

    def item(self, i: int, flip: bool) -> Any:
        return self.images[i]

    def collate(self, items: list[Any], flips: list[bool]) -> tuple[tuple[Any, ...], tuple[int, int], dict[str, Any]]:
        frame = (max(int(im.shape[0]) for im in items), max(int(im.shape[1]) for im in items))
        return self.task.batch_inputs(self.model, items, flips), frame, {}


def train_on_images(task: Task, net: nn.Module, model: Any, images: Sequence[Any], data: Any, schedule: Schedule,
                    seed: int, device: str, **options: Any) -> None:
    """Optimise the pixel network ``net`` in place on ``images`` with the targets of
    ``data``: ``fit`` with the task's pieces (``options`` go to ``fit``)."""
    targets = task.training_targets(data, model)
    if len(targets) != len(images):
        raise BenchError(f"{len(images)} training images but {len(targets)} targets in {data.dataset!r}")
    augment = task.augmentation(schedule)
    fit(net, TrainingSet(task, PixelSource(task, model, images), targets, augment), lambda b: task_loss(task, net, b),
        schedule, seed, device, hflip=task.hflip, **loader_options(images, options))


def loader_options(images: Sequence[Any], options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for ``fit``, without loader workers where ``images`` cannot be read in
    them (a neural codec's streams decoded on a GPU: a forked worker has no CUDA)."""
    if options.get("num_workers") and not getattr(images, "in_workers", True):
        return {**options, "num_workers": 0}
    return options
