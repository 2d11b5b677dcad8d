"""Scenarios A, B and C: pixel-domain models on original, compressed, and compressed
images after finetuning on them."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

from bench.config import Schedule
from bench.scenarios.base import Scenario

if TYPE_CHECKING:
    from bench.context import CellContext, CellResult
    from bench.grid import ResolvedExperiment


class Original(Scenario):
    name = "A"
    version = "1"
    description = "trained and tested on original images"
    uses_codec = False
    transcodes = ()

    def run(self, ctx: CellContext) -> CellResult:
        net, refs = ctx.reference()
        originals = ctx.originals("val")
        return ctx.result(ctx.evaluate(net, originals.images, refs), transcoded=None, n_images=len(originals))


class CompressedEval(Scenario):
    name = "B"
    version = "1"
    description = "the A model tested on compressed images"
    samples = True

    def run(self, ctx: CellContext) -> CellResult:
        net, refs = ctx.reference()
        val = ctx.transcoded("val")
        return ctx.result(ctx.evaluate(net, val.decoded, refs), transcoded=val, n_images=len(val))


class Finetuned(Scenario):
    name = "C"
    version = "1"
    description = "the A model finetuned on compressed training images, tested on compressed images"
    section = "finetune"
    Section = Schedule
    transcodes = ("val", "train")
    trains = True

    def problems(self, exp: ResolvedExperiment) -> list[str]:
        out = []
        if "train" not in exp.dataset.splits:
            out.append(f"scenario C finetunes on a train split, and dataset {exp.dataset.name!r} has none")
        if self.settings(exp) is None:
            out.append("scenario C needs a 'finetune' schedule (epochs, lr, batch_size)")
        return out

    def run(self, ctx: CellContext) -> CellResult:
        net_a, refs = ctx.reference()
        net = copy.deepcopy(net_a)
        state = ctx.cached_weights("finetuned")
        if state is not None:
            net.load_state_dict(state)
        else:
            t0 = time.perf_counter()
            train = ctx.transcoded("train")
            ctx.train(net, train.decoded, self.settings(ctx.exp), "finetuned")
            ctx.keep_weights("finetuned", net.state_dict(), t0, f"on {len(train)} images")
        val = ctx.transcoded("val")
        return ctx.result(ctx.evaluate(net.eval(), val.decoded, refs), transcoded=val, n_images=len(val))
