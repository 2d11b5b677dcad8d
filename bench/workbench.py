"""What a run's cells draw on: the splits (read and fingerprinted once), the transcoded
sets, the scenario-A models and a cache of trained weights — each with one owner.

``RunState`` is everything a run decided that a worker elsewhere (``bench.executors``)
needs to compute the same cells: the splits' content fingerprints, the file-backed splits
themselves (paths and sizes; pixels are read on use), the rate-control choices and which
weights this run trained already.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bench.cache import Cache
from bench.context import CellContext
from bench.datasets.base import ImageSet, LazyImages
from bench.errors import BenchError
from bench.keys import split_content
from bench.progress import Progress
from bench.transcode import make_pool
from bench.transcodes import Transcodes

if TYPE_CHECKING:
    from bench.grid import Cell, Plan, ResolvedExperiment
    from bench.train import Checkpoint


@dataclass
class Counters:
    cells_total: int = 0
    cells_run: int = 0
    cells_skipped: int = 0
    encodes: int = 0
    transcodes: int = 0
    trainings: int = 0


@dataclass
class RunState:
    """What the driver of a run decided, for workers that compute its cells (serialisable)."""

    #: Each (experiment, split)'s content (``bench.keys.split_content``): the cells' keys.
    contents: dict[tuple[int, str], dict[str, str]] = field(default_factory=dict)
    #: File-backed splits, so a worker does not read every file again to fingerprint it.
    splits: dict[tuple[int, str], ImageSet] = field(default_factory=dict)
    choices: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Weights keys trained in this run (``--force`` retrains each once, not once per worker).
    fresh_weights: list[str] = field(default_factory=list)


class Splits:
    """Every split an experiment reads, loaded once (experiments on the same dataset share
    it), and each split's content: fingerprinted here, or as the driver of the run found it
    (``RunState``), in which case a split loaded again must still match it."""

    def __init__(self, plan: Plan, cache: Cache, state: RunState) -> None:
        self.plan, self.cache = plan, cache
        self._sets: dict[tuple[int, str], ImageSet] = dict(state.splits)
        self.contents: dict[tuple[int, str], dict[str, str]] = dict(state.contents)

    def get(self, exp: ResolvedExperiment, split: str) -> ImageSet:
        key = (exp.index, split)
        if key not in self._sets:
            same = [k for k in self._sets if k[1] == split
                    and self.plan.experiments[k[0]].dataset.source() == exp.dataset.source()]
            images = self._sets[same[0]] if same else exp.dataset.load(split, self.cache.root)
            if key in self.contents and split_content(images) != self.contents[key]:
                raise BenchError(f"{exp.dataset.label()} {split}: the split changed while the run was going "
                                 "(its content is not what the run's keys were made from); run again")
            self._sets[key] = images
        return self._sets[key]

    def content(self, exp: ResolvedExperiment, split: str) -> dict[str, str]:
        key = (exp.index, split)
        if key not in self.contents:
            self.contents[key] = split_content(self.get(exp, split))
        return self.contents[key]

    def loaded(self) -> dict[tuple[int, str], ImageSet]:
        """Every split read so far, by (experiment index, split)."""
        return dict(self._sets)

    def file_backed(self) -> dict[tuple[int, str], ImageSet]:
        return {k: v for k, v in self._sets.items() if isinstance(v.images, LazyImages)}


class Models:
    """The scenario-A models (trained once per run, or loaded) and a cache of trained weights."""

    def __init__(self, splits: Splits, cache: Cache, device: str, force: bool, progress: Progress,
                 counters: Counters, fresh: list[str] | None = None, loader_workers: int = 0) -> None:
        self.splits, self.cache, self.device, self.force = splits, cache, device, force
        #: Processes that read (and decode) training items for each training's loader.
        self.loader_workers = loader_workers
        self.progress, self.counters = progress, counters
        self.fresh: set[str] = set(fresh or [])  # trained in this run (honours --force once)
        self._references: dict[int, tuple[nn.Module, Any]] = {}
        self._checkpoints: dict[str, Checkpoint] = {}

    def cached(self, key: str) -> dict[str, Any] | None:
        if self.cache.has_model(key) and (not self.force or key in self.fresh):
            return self.cache.get_model(key)
        return None

    def keep(self, key: str, state: dict[str, Any]) -> None:
        self.cache.put_model(key, {k: v.detach().cpu() for k, v in state.items()})
        self.cache.checkpoint(key).remove()  # the finished weights supersede the epochs
        self.fresh.add(key)
        self.counters.trainings += 1

    def training(self, key: str) -> dict[str, Any]:
        """``bench.train.fit``'s options for the training of weights ``key``: its loader's
        workers and its per-epoch checkpoint (a forced run starts the training afresh)."""
        checkpoint = self._checkpoints[key] = self.cache.checkpoint(key)
        if self.force and key not in self.fresh:
            checkpoint.remove()
        return {"num_workers": self.loader_workers, "checkpoint": checkpoint}

    def resumed(self, key: str) -> str:
        """`` (resumed at epoch N)`` when the training of ``key`` resumed from a checkpoint, else ``""``."""
        checkpoint = self._checkpoints.get(key)
        at = checkpoint.resumed_at if checkpoint is not None else None
        return "" if at is None else f" (resumed at epoch {at + 1} from its checkpoint)"

    def reference_key(self, exp: ResolvedExperiment) -> str:
        return exp.reference_key(self.splits.content(exp, "train") if not exp.model.pretrained else None)

    def reference(self, exp: ResolvedExperiment) -> tuple[nn.Module, Any]:
        """The scenario-A model (trained from scratch, or pretrained) and the references."""
        if exp.index not in self._references:
            val = self.splits.get(exp, "val")
            torch.manual_seed(exp.seed)
            # a network trained here is built for the split it learns from (its classes)
            net = exp.task.build(exp.model, val if exp.model.pretrained else self.splits.get(exp, "train"))
            net = net.to(self.device)
            if not exp.model.pretrained:
                self._train_reference(exp, net)
            net.eval()
            self._references[exp.index] = (net, exp.task.references(net, exp.model, val, self.device))
        return self._references[exp.index]

    def _train_reference(self, exp: ResolvedExperiment, net: nn.Module) -> None:
        key = self.reference_key(exp)
        state = self.cached(key)
        if state is not None:
            net.load_state_dict(state)
            return
        t0, train = time.perf_counter(), self.splits.get(exp, "train")
        exp.task.train(net, exp.model, train.images, train, exp.entry.train, exp.seed, self.device,
                       **self.training(key))
        self.keep(key, net.state_dict())
        self.progress.say(f"trained {exp.model_label} on {len(train)} images in {time.perf_counter() - t0:.1f} s"
                          f"{self.resumed(key)}")


class Workbench:
    """A run's splits, transcodes and models, and the context each cell runs against."""

    def __init__(self, plan: Plan, cache: Cache, device: str, workers: int, force: bool, progress: Progress,
                 pool_factory: Callable[[int], Any] = make_pool, state: RunState | None = None,
                 pixels: str = "auto") -> None:
        state = state or RunState()
        self.plan, self.cache, self.device, self.workers = plan, cache, device, workers
        self.progress, self.counters = progress, Counters()
        self.splits = Splits(plan, cache, state)
        self.transcodes = Transcodes(self.splits, cache, workers, force, progress, self.counters, pool_factory,
                                     state.choices, pixels)
        self.models = Models(self.splits, cache, device, force, progress, self.counters, state.fresh_weights,
                             loader_workers=workers if workers > 1 else 0)
        #: What the run's cells share (a compressed-domain split's latents, cost tables).
        self.shared: dict[Any, Any] = {}
        for exp in plan.experiments:
            for rc in exp.codecs:
                rc.codec.to(device)

    def close(self) -> None:
        self.transcodes.close()

    def key_cells(self, cells: list[Cell]) -> list[Cell]:
        """``cells`` with their keys: their splits are read (once) and fingerprinted (bad
        inputs fail here, before any work)."""
        return [c.keyed({s: self.splits.content(c.exp, s) for s in c.splits}) for c in cells]

    def context(self, cell: Cell) -> CellContext:
        return CellContext(self, cell)

    def state(self) -> RunState:
        return RunState(contents=dict(self.splits.contents), splits=self.splits.file_backed(),
                        choices=dict(self.transcodes.choices), fresh_weights=sorted(self.models.fresh))
