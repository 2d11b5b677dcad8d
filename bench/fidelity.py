"""Rate–distortion experiments (``task: fidelity``): the codecs measured on their decoded
images alone, as ``compressai.utils.bench`` does, with no task model.

A fidelity experiment has one scenario, B (the val images coded at every operating point),
and its cells report the decoded images' PSNR and MS-SSIM against the originals (means of
per-image values; rate from the real bitstreams, as everywhere). Its rows rank the codecs by
Bjøntegaard deltas in ``ranking.csv``; published curves given as ``references`` are drawn and
ranked beside them (``bench.report.references``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from bench.scenarios.base import Scenario

if TYPE_CHECKING:
    from bench.context import CellContext, CellResult
    from bench.datasets.base import Dataset

#: The ``task`` of a rate–distortion experiment.
FIDELITY = "fidelity"


class FidelityTask:
    """What a fidelity experiment measures: the decoded images against the originals."""

    name: ClassVar[str] = FIDELITY
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "rate–distortion only: PSNR and MS-SSIM of the decoded images (no model)"

    def identity(self) -> dict[str, str]:
        return {"task": self.name, "version": self.version}

    def metric_names(self, dataset: Dataset | None = None) -> tuple[str, ...]:
        return ("psnr", "ms_ssim")


class RateDistortion(Scenario):
    """Scenario B of a fidelity experiment: every operating point's decoded val images."""

    name = "B"
    version = "1"
    description = "the decoded images against the originals (rate–distortion, no model)"
    samples = True

    def run(self, ctx: CellContext) -> CellResult:
        val = ctx.transcoded("val")
        summary = val.summary()
        metrics: dict[str, Any] = {m: summary[m] for m in FidelityTask().metric_names()}
        return ctx.result(metrics, transcoded=val, n_images=len(val))
