"""Scenarios: what is trained on what, and what it is tested on.

A: the model trained and tested on originals. B: the A model tested on compressed images.
C: the A model finetuned on compressed training images, tested on compressed images.
D: a compressed-domain model, built from the A model, trained and tested on the codec's
latents (entropy decoding only; the decoder network is not run).
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
        val = bench.transcoded(cell.exp, "val", cell.codec_label, bench.setting(cell))
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
        val = bench.transcoded(cell.exp, "val", cell.codec_label, bench.setting(cell))
        metrics = bench.evaluate(cell.exp, net, val.decoded, refs)
        return bench.result(cell, metrics, transcoded=val, n_images=len(val))


class CompressedDomainScenario(Scenario):
    name = "D"
    description = "a model built from the A model, trained and tested on the codec's latents (no decoder)"

    def problems(self, exp: ResolvedExperiment) -> list[str]:
        from bench.domain.nets import unsupported_model

        cd = exp.entry.compressed_domain
        if cd is None:
            return ["scenario D needs a 'compressed_domain' section (train: schedule; variants: models)"]
        out = []
        if "train" not in exp.dataset.splits:
            out.append(f"scenario D trains on a train split, and dataset {exp.dataset.name!r} has none")
        labels = [rc.label for rc in exp.codecs]
        for j, label in enumerate(cd.codecs or []):
            rc = next((rc for rc in exp.codecs if rc.label == label), None)
            if rc is None:
                out.append(f"compressed_domain.codecs[{j}]: {label!r} is not one of this experiment's codecs ({', '.join(labels)})")
            elif not callable(getattr(rc.codec, "latents", None)):
                out.append(f"compressed_domain.codecs[{j}]: {label!r} ({rc.codec.name}) has no latents; "
                           "scenario D needs a neural codec")
        if cd.codecs is None and not exp.latent_codecs():
            out.append(f"scenario D needs a codec with latents (a neural codec); none of {', '.join(labels)} has them")
        offered = {p.quality for rc in exp.latent_codecs() for p in rc.points}
        for j, q in enumerate(cd.qualities or []):
            if q not in offered:
                out.append(f"compressed_domain.qualities[{j}]: no latent codec of this experiment has quality {q} "
                           f"(they have {', '.join(map(str, sorted(offered))) or 'none'})")
        targets = {t.bpp for rc in exp.latent_codecs() for t in rc.targets}
        for j, t in enumerate(cd.targets_bpp or []):
            if t not in targets:
                out.append(f"compressed_domain.targets_bpp[{j}]: no latent codec of this experiment has target {t} bpp "
                           f"(they have {', '.join(f'{v:g}' for v in sorted(targets)) or 'none'})")
        if any(t.mode == "image" for rc in exp.latent_codecs() for t in rc.targets):
            out.append("scenario D reads one model's latents per operating point; with rate_control.mode: image "
                       "every image has its own model (use mode: dataset, or give the latent codecs qualities only)")
        seen: set[str] = set()
        for j, v in enumerate(cd.variants):
            if v.display() in seen:
                out.append(f"compressed_domain.variants[{j}]: label {v.display()!r} is used twice (set 'label:')")
            seen.add(v.display())
            if (why := unsupported_model(exp.task.name, exp.model, v.arch)) is not None:
                out.append(f"compressed_domain.variants[{j}]: {why}")
            if v.joint is not None:
                from bench.domain.joint import joint_unsupported

                for rc in exp.latent_codecs():
                    if (why := joint_unsupported(rc.codec)) is not None:
                        out.append(f"compressed_domain.variants[{j}].joint ({rc.label}): {why}")
        return out

    def run(self, bench: Workbench, cell: Cell) -> CellResult:
        return bench.compressed_domain_cell(cell)


def _validate(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Scenario)):
        raise TypeError(f"{obj!r} is not a subclass of bench.scenarios.Scenario")


SCENARIOS: Registry[type[Scenario]] = Registry("scenario", group="bench.scenarios", validate=_validate)
SCENARIOS.register("A", Original)
SCENARIOS.register("B", CompressedEval)
SCENARIOS.register("C", Finetuned)
SCENARIOS.register("D", CompressedDomainScenario)
