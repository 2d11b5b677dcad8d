"""What one cell of a scenario runs against: a narrow view of the run.

A scenario's ``run`` gets a ``CellContext``: the cell, its splits (originals and their
transcodes at the cell's operating point), the scenario-A model, a cache of the weights it
trains (keyed by ``bench.keys.weights_key``), a memo shared by the run's cells, and the row
builder. It never sees the runner, the pool or the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from torch import nn

from bench.cache import Transcoded
from bench.codecs.base import Codec
from bench.config import Schedule
from bench.datasets.base import ImageSet
from bench.errors import BenchError
from bench.keys import weights_key
from bench.ratecontrol import Target
from bench.rows import cell_row

if TYPE_CHECKING:
    from bench.grid import Cell, ResolvedExperiment
    from bench.workbench import Workbench

T = TypeVar("T")


@dataclass
class CellResult:
    row: dict[str, Any] = field(default_factory=dict)
    #: The val set the cell was tested on (not stored: for the visual grid's sample).
    transcoded: Transcoded | None = None


class CellContext:
    """The data, models and caches one cell may use."""

    def __init__(self, bench: Workbench, cell: Cell) -> None:
        self._bench, self.cell = bench, cell

    @property
    def exp(self) -> ResolvedExperiment:
        return self.cell.exp

    @property
    def device(self) -> str:
        return self._bench.device

    @property
    def codec(self) -> Codec:
        """The cell's codec (a scenario on the originals has none)."""
        assert self.cell.codec_label is not None
        return self._bench.transcodes.codec(self.exp, self.cell.codec_label).codec

    # -- data ---------------------------------------------------------------------------
    def _declared(self, split: str) -> None:
        if split not in self.cell.splits:  # its content would not be in the cell's key
            raise BenchError(f"scenario {self.cell.scenario} read split {split!r}, which its cells do not declare "
                             f"(they read {', '.join(self.cell.splits)}: set the scenario's transcodes or trains)")

    def originals(self, split: str) -> ImageSet:
        self._declared(split)
        return self._bench.splits.get(self.exp, split)

    def transcoded(self, split: str) -> Transcoded:
        """``split`` coded at the cell's operating point (made by the transcode stage)."""
        assert self.cell.codec_label is not None
        self._declared(split)
        return self._bench.transcodes.get(self.exp, split, self.cell.codec_label, self.setting())

    def transcode_key(self, split: str) -> str:
        assert self.cell.codec_label is not None
        return self._bench.transcodes.key(self.exp, split, self.cell.codec_label, self.setting())

    def setting(self) -> int | Target:
        return self._bench.transcodes.setting(self.cell)

    def quality(self) -> int:
        """The cell's one quality: its own, or the one a per-dataset target resolved to."""
        setting = self.setting()
        assert isinstance(setting, int), "a per-image target has no single quality"
        return setting

    # -- models -------------------------------------------------------------------------
    def reference(self) -> tuple[nn.Module, Any]:
        """The scenario-A model (trained once per run, or from the cache) and the references."""
        return self._bench.models.reference(self.exp)

    def evaluate(self, net: nn.Module, images: Sequence[np.ndarray], references: Any) -> dict[str, float]:
        return self.exp.task.evaluate(net, self.exp.model, images, references, self.device)

    def train(self, net: nn.Module, images: Sequence[np.ndarray], schedule: Schedule, kind: str) -> None:
        """The task's training of ``net`` on ``images`` with the train split's targets, for
        the weights of ``kind`` (``keep_weights`` stores them): streamed through the run's
        loader workers, with a checkpoint per epoch that a run killed during it resumes from."""
        self.exp.task.train(net, self.exp.model, images, self.originals("train"), schedule, self.exp.seed,
                            self.device, **self.training(kind))

    def training(self, kind: str) -> dict[str, Any]:
        """``bench.train.fit``'s options for training the weights of ``kind``: the loader's
        workers and the per-epoch checkpoint (for a scenario that calls ``fit`` itself)."""
        return self._bench.models.training(self._weights_key(kind))

    def _weights_key(self, kind: str) -> str:
        setting = self.setting() if self.cell.codec_label is not None else None
        return weights_key(kind, self.cell.ident, self._bench.splits.content(self.exp, "train"), setting)

    def cached_weights(self, kind: str) -> dict[str, Any] | None:
        """Weights of ``kind`` this cell trained before (None: train them, and keep them)."""
        return self._bench.models.cached(self._weights_key(kind))

    def has_weights(self, kind: str) -> bool:
        """Whether weights of ``kind`` for this cell are in the cache (nothing is read)."""
        return self._bench.cache.has_model(self._weights_key(kind))

    def keep_weights(self, kind: str, state: dict[str, Any], started: float, what: str) -> None:
        """Store weights just trained (``started``: ``time.perf_counter()`` before training)."""
        key = self._weights_key(kind)
        self._bench.models.keep(key, state)
        self.say(f"trained {self.exp.model_label} {what} in {time.perf_counter() - started:.1f} s"
                 f"{self._bench.models.resumed(key)}")

    # -- the run ------------------------------------------------------------------------
    def shared(self, key: Any, make: Callable[[], T]) -> T:
        """A value the run's cells share (latents, costs), made by the first that asks."""
        memo, key = self._bench.shared, (self.cell.scenario, key)  # one scenario's keys are its own
        if key not in memo:
            memo[key] = make()
        return memo[key]

    def say(self, message: str) -> None:
        self._bench.progress.say(message)

    def result(self, metrics: dict[str, float], transcoded: Transcoded | None, n_images: int) -> CellResult:
        """The cell's row: metrics, rate and fidelity of ``transcoded``, what rate control did."""
        choice = None
        if self.cell.target is not None and self.cell.target.mode == "dataset":
            assert self.cell.codec_label is not None
            choice = self._bench.transcodes.choice(self.exp, self.cell.codec_label, self.cell.target)
        return CellResult(cell_row(self.cell, metrics, transcoded, n_images, self.device, self._bench.workers, choice),
                          transcoded)
