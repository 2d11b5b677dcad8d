"""Scenarios: what is trained on what, and what it is tested on.

A: the model trained and tested on originals. B: the A model tested on compressed images.
C: the A model finetuned on compressed training images, tested on compressed images.
D: a compressed-domain model, built from the A model, trained and tested on the codec's
latents (entropy decoding only; the decoder network is not run).
"""

from __future__ import annotations

from bench.registry import Registry
from bench.scenarios.base import Scenario


def _validate(name: str, obj: object) -> None:
    """Registry check: a complete ``Scenario`` subclass called like one, registered under its ``name``."""
    from bench.registry import PluginKind

    PluginKind(Scenario, {"name": str, "version": str, "description": str})(name, obj)


SCENARIOS: Registry[type[Scenario]] = Registry("scenario", group="bench.scenarios", validate=_validate)
SCENARIOS.register("A", "bench.scenarios.pixel:Original")
SCENARIOS.register("B", "bench.scenarios.pixel:CompressedEval")
SCENARIOS.register("C", "bench.scenarios.pixel:Finetuned")
SCENARIOS.register("D", "bench.scenarios.compressed_domain:CompressedDomain")

__all__ = ["SCENARIOS", "Scenario"]
