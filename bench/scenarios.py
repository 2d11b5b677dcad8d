"""Scenarios: what is trained on what, and what it is tested on.

A: the model trained and tested on originals. B: the A model tested on compressed images.
C: the A model finetuned on compressed training images, tested on compressed images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from bench.registry import Registry

if TYPE_CHECKING:
    from bench.grid import Cell, ResolvedExperiment
    from bench.runner import CellResult, Workbench


class Scenario(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    uses_codec: ClassVar[bool] = True

    def problems(self, exp: ResolvedExperiment) -> list[str]:
        return []

    @abstractmethod
    def run(self, bench: Workbench, cell: Cell) -> CellResult: ...


class Original(Scenario):
    name = "A"
    description = "trained and tested on original images"
    uses_codec = False

    def run(self, bench: Workbench, cell: Cell) -> CellResult:
        net, refs = bench.reference_model(cell.exp)
        originals = bench.originals(cell.exp, "val")
        metrics = bench.evaluate(cell.exp, net, originals.images, refs)
        return bench.result(cell, metrics, transcoded=None, n_images=len(originals))


class CompressedEval(Scenario):
    name = "B"
    description = "the A model tested on compressed images"

    def run(self, bench: Workbench, cell: Cell) -> CellResult:
        net, refs = bench.reference_model(cell.exp)
        val = bench.transcoded(cell.exp, "val", cell.codec_label, cell.quality)
        metrics = bench.evaluate(cell.exp, net, val.decoded, refs)
        return bench.result(cell, metrics, transcoded=val, n_images=len(val))


class Finetuned(Scenario):
    name = "C"
    description = "the A model finetuned on compressed training images, tested on compressed images"

    def problems(self, exp: ResolvedExperiment) -> list[str]:
        out = []
        if "train" not in exp.dataset.splits:
            out.append(f"scenario C finetunes on a train split, and dataset {exp.dataset.name!r} has none")
        if exp.entry.finetune is None:
            out.append("scenario C needs a 'finetune' schedule (epochs, lr, batch_size)")
        return out

    def run(self, bench: Workbench, cell: Cell) -> CellResult:
        net, refs = bench.finetuned_model(cell)
        val = bench.transcoded(cell.exp, "val", cell.codec_label, cell.quality)
        metrics = bench.evaluate(cell.exp, net, val.decoded, refs)
        return bench.result(cell, metrics, transcoded=val, n_images=len(val))


def _validate(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Scenario)):
        raise TypeError(f"{obj!r} is not a subclass of bench.scenarios.Scenario")


SCENARIOS: Registry[type[Scenario]] = Registry("scenario", group="bench.scenarios", validate=_validate)
SCENARIOS.register("A", Original)
SCENARIOS.register("B", CompressedEval)
SCENARIOS.register("C", Finetuned)
