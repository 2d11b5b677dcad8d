"""The scenario interface: what a scenario declares and what a cell of it runs against.

A scenario names its grid section (the experiment key holding its settings, and their
schema), the transcodes and splits its cells read, the cells it contributes to an
experiment, and runs one cell against a ``CellContext`` (``bench.context``): the cell's
data, its transcodes, the scenario-A model, a weights cache and the row builder — not the
runner. Third parties register theirs in the ``bench.scenarios`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from bench.context import CellContext, CellResult
    from bench.grid import Cell, ResolvedExperiment


class Scenario(ABC):
    name: ClassVar[str]
    #: Part of every key of the scenario's cells: bump it when what a cell computes changes.
    version: ClassVar[str]
    description: ClassVar[str]
    #: False for a scenario on the originals alone (one cell per experiment, no codec).
    uses_codec: ClassVar[bool] = True
    #: The experiment key holding this scenario's settings (``finetune:``), or None.
    section: ClassVar[str | None] = None
    #: The schema of that section (a pydantic model; unknown keys are errors).
    Section: ClassVar[type[BaseModel] | None] = None
    #: The splits whose transcodes at the cell's operating point a cell reads.
    transcodes: ClassVar[tuple[str, ...]] = ("val",)
    #: True when a cell trains on the train split (its key then holds the split's content).
    trains: ClassVar[bool] = False
    #: True when a cell keeps its first val image, original and decoded, for the visual grid.
    samples: ClassVar[bool] = False

    def identity(self) -> dict[str, Any]:
        return {"scenario": self.name, "version": self.version}

    def settings(self, exp: ResolvedExperiment) -> Any:
        """The experiment's section for this scenario (validated), or None."""
        return exp.sections.get(self.section) if self.section else None

    def problems(self, exp: ResolvedExperiment) -> list[str]:
        """What keeps this scenario from running on ``exp``, checked before any work."""
        return []

    def cells(self, exp: ResolvedExperiment) -> list[Cell]:
        """The cells this scenario adds to ``exp``: one on the originals, or one per codec
        and operating point; each depends on the scenario's whole section."""
        section = self.settings(exp)
        dumped = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
        if not self.uses_codec:
            return [exp.cell(self, section=dumped)]
        return [exp.cell(self, rc, setting, section=dumped) for rc in exp.codecs for setting in rc.settings()]

    @abstractmethod
    def run(self, ctx: CellContext) -> CellResult:
        """Compute one cell: its metrics and the row (``ctx.result``)."""
