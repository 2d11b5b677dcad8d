"""Scenario D: compressed-domain models, built from the A model, trained and tested on the
codec's latents read back from the bitstreams by entropy decoding alone (no decoder
network); optionally with pixel-to-compressed knowledge transfer, or with the codec's
analysis transform finetuned jointly (the val images are then coded again by the new
encoder, and the row's rate is that of these new bitstreams)."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bench.codecs.base import Codec, OperatingPoint
from bench.config import CompressedDomain as Section
from bench.config import DomainVariant
from bench.domain.adapt import feature_taps
from bench.domain.cost import cost_record
from bench.domain.joint import joint_unsupported, train_joint
from bench.domain.nets import latent_network, unsupported_model
from bench.domain.train import LatentSet, Transfer, evaluate_latent, latent_set, stream_latents, train_latent
from bench.ratecontrol import Target
from bench.scenarios.base import Scenario
from bench.transcode import transcode_set

if TYPE_CHECKING:
    from bench.context import CellContext, CellResult
    from bench.grid import Cell, ResolvedCodec, ResolvedExperiment

#: Val streams the cost table times both inference paths on.
COST_IMAGES = 16


def has_latents(codec: Codec) -> bool:
    return callable(getattr(codec, "latents", None))


class CompressedDomain(Scenario):
    name = "D"
    version = "1"
    description = "a model built from the A model, trained and tested on the codec's latents (no decoder)"
    section = "compressed_domain"
    Section = Section
    transcodes = ("val", "train")
    trains = True

    # -- the grid ------------------------------------------------------------------------
    @staticmethod
    def latent_codecs(exp: ResolvedExperiment) -> list[ResolvedCodec]:
        """The section's ``codecs``, else every codec of the experiment that hands out latents."""
        cd = exp.sections.get("compressed_domain")
        if cd is not None and cd.codecs is not None:
            return [rc for rc in exp.codecs if rc.label in cd.codecs]
        return [rc for rc in exp.codecs if has_latents(rc.codec)]

    @staticmethod
    def variant(exp: ResolvedExperiment, label: str) -> DomainVariant:
        return next(v for v in exp.sections["compressed_domain"].variants if v.display() == label)

    def problems(self, exp: ResolvedExperiment) -> list[str]:
        cd = self.settings(exp)
        if cd is None:
            return ["scenario D needs a 'compressed_domain' section (train: schedule; variants: models)"]
        out = []
        if "train" not in exp.dataset.splits:
            out.append(f"scenario D trains on a train split, and dataset {exp.dataset.name!r} has none")
        out += self._codec_problems(exp, cd)
        seen: set[str] = set()
        for j, v in enumerate(cd.variants):
            if v.display() in seen:
                out.append(f"compressed_domain.variants[{j}]: label {v.display()!r} is used twice (set 'label:')")
            seen.add(v.display())
            if (why := unsupported_model(exp.task, exp.model, v.arch)) is not None:
                out.append(f"compressed_domain.variants[{j}]: {why}")
            if v.joint is not None:
                for rc in self.latent_codecs(exp):
                    if (why := joint_unsupported(rc.codec)) is not None:
                        out.append(f"compressed_domain.variants[{j}].joint ({rc.label}): {why}")
        return out

    def _codec_problems(self, exp: ResolvedExperiment, cd: Section) -> list[str]:
        out = []
        labels = [rc.label for rc in exp.codecs]
        for j, label in enumerate(cd.codecs or []):
            rc = next((rc for rc in exp.codecs if rc.label == label), None)
            if rc is None:
                out.append(f"compressed_domain.codecs[{j}]: {label!r} is not one of this experiment's codecs "
                           f"({', '.join(labels)})")
            elif not has_latents(rc.codec):
                out.append(f"compressed_domain.codecs[{j}]: {label!r} ({rc.codec.name}) has no latents; "
                           "scenario D needs a neural codec")
        latent = self.latent_codecs(exp)
        if cd.codecs is None and not latent:
            out.append(f"scenario D needs a codec with latents (a neural codec); none of {', '.join(labels)} has them")
        offered = {p.quality for rc in latent for p in rc.points}
        for j, q in enumerate(cd.qualities or []):
            if q not in offered:
                out.append(f"compressed_domain.qualities[{j}]: no latent codec of this experiment has quality {q} "
                           f"(they have {', '.join(map(str, sorted(offered))) or 'none'})")
        targets = {t.bpp for rc in latent for t in rc.targets}
        for j, t in enumerate(cd.targets_bpp or []):
            if t not in targets:
                out.append(f"compressed_domain.targets_bpp[{j}]: no latent codec of this experiment has target {t} bpp "
                           f"(they have {', '.join(f'{v:g}' for v in sorted(targets)) or 'none'})")
        if any(t.mode == "image" for rc in latent for t in rc.targets):
            out.append("scenario D reads one model's latents per operating point; with rate_control.mode: image "
                       "every image has its own model (use mode: dataset, or give the latent codecs qualities only)")
        return out

    def cells(self, exp: ResolvedExperiment) -> list[Cell]:
        """One cell per variant, latent codec and operating point (of the section's subset);
        each depends on the section's schedule and its own variant only."""
        cd = self.settings(exp)
        cells = []
        for variant in cd.variants:
            section = {"train_latent": cd.train.model_dump(), "variant": variant.model_dump(exclude={"label"})}
            for rc in self.latent_codecs(exp):
                for setting in rc.settings():
                    if isinstance(setting, Target):
                        if cd.targets_bpp is not None and setting.bpp not in cd.targets_bpp:
                            continue
                    elif cd.qualities is not None and setting not in cd.qualities:
                        continue
                    cells.append(exp.cell(self, rc, setting, section=section, variant=variant.display()))
        return cells

    # -- a cell ---------------------------------------------------------------------------
    def run(self, ctx: CellContext) -> CellResult:
        """The compressed-domain model on the val split's latents, with the cost of both
        inference paths on a sample of the val streams."""
        variant = self.variant(ctx.exp, ctx.cell.variant or "")
        q = ctx.quality()
        pixel, refs = ctx.reference()
        val = ctx.transcoded("val")
        codec = ctx.codec
        if variant.joint is not None:
            net, codec, info = self._joint_model(ctx, variant)
            info["bpp_before_finetuning"] = val.summary()["bpp"]
            val = transcode_set(f"joint-{ctx.cell.key}", codec, OperatingPoint(q), ctx.originals("val").images, None)
            lat, _ = latent_set(codec.latents(val.streams), list(variant.inputs))
        else:
            net, info = self._latent_model(ctx, variant)
            lat, _ = self._latents(ctx, "val", list(variant.inputs))
        metrics = evaluate_latent(ctx.exp.task, net, lat, refs, ctx.device)
        # the same network costs the same with or without knowledge transfer: measured once
        arch = ("cost", ctx.exp.index, ctx.cell.codec_label, q, variant.arch, tuple(variant.inputs),
                variant.drop_stages, variant.joint is not None)
        cost = ctx.shared(arch, lambda: cost_record(ctx.exp.task, codec, q, val.streams[:COST_IMAGES], pixel,
                                                    ctx.exp.model, net, list(variant.inputs), ctx.device))
        result = ctx.result(metrics, transcoded=val, n_images=len(val))
        result.row["record"].update({"compressed_domain": info, "cost": cost})
        return result

    @staticmethod
    def _latents(ctx: CellContext, split: str, inputs: list[str]) -> tuple[LatentSet, list[int]]:
        """The split's latents at the cell's operating point, entropy-decoded from its
        cached streams alone when read (``stream_latents``: batch by batch, in the training
        loader's workers), never held at once."""
        t = ctx.transcoded(split)
        return stream_latents(t.streams, ctx.codec, inputs, list(zip(t.heights.tolist(), t.widths.tolist())))

    def _latent_model(self, ctx: CellContext, variant: DomainVariant) -> tuple[nn.Module, dict[str, Any]]:
        """The cell's network, built from the A model and trained on the train split's
        latents (or loaded from the cache), and what training recorded."""
        exp, cd = ctx.exp, self.settings(ctx.exp)
        pixel, _ = ctx.reference()
        train, splits = self._latents(ctx, "train", list(variant.inputs))
        torch.manual_seed(exp.seed)
        net = latent_network(exp.task, pixel, variant.arch, splits, variant.init, variant.drop_stages)
        net.to(ctx.device)
        state = ctx.cached_weights("compressed-domain")
        if state is not None:
            net.load_state_dict(state)
            return net.eval(), {"trained": False}
        transfer = None
        if variant.transfer is not None:
            root = pixel.get_submodule(net.pixel_root) if net.pixel_root else pixel
            taps = feature_taps(root, variant.transfer.strides)
            layers = {taps[s]: w for s, w in zip(variant.transfer.strides, variant.transfer.layer_weights())}
            transfer = Transfer(root.eval(), exp.model, layers, ctx.originals("train").images)
        t0 = time.perf_counter()
        distances = train_latent(exp.task, net, train, ctx.originals("train"), cd.train, exp.seed,
                                 ctx.device, transfer, **ctx.training("compressed-domain"))
        ctx.keep_weights("compressed-domain", net.state_dict(), t0,
                         f"D:{ctx.cell.variant} on {ctx.cell.codec_label}@{ctx.quality()} latents")
        info: dict[str, Any] = {"trained": True, "train_s": time.perf_counter() - t0}
        if transfer is not None:
            info["transfer_layers"] = transfer.layers
            info["transfer_distance_per_epoch"] = distances
        return net.eval(), info

    def _joint_model(self, ctx: CellContext, variant: DomainVariant) -> tuple[nn.Module, Codec, dict[str, Any]]:
        """The compressed-domain network and the codec whose analysis transform was
        trained with it (or both from the cache)."""
        exp, cd = ctx.exp, self.settings(ctx.exp)
        assert variant.joint is not None
        q = ctx.quality()
        pixel, _ = ctx.reference()
        model = copy.deepcopy(ctx.codec.compression_model(q)).cpu()
        torch.manual_seed(exp.seed)
        net = latent_network(exp.task, pixel, variant.arch, [model.M] * len(variant.inputs), variant.init,
                             variant.drop_stages).to(ctx.device)
        state = ctx.cached_weights("joint")
        if state is not None:
            net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
            model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("codec.")})
            info: dict[str, Any] = {"trained": False}
        else:
            t0 = time.perf_counter()
            train = ctx.originals("train")
            info = train_joint(exp.task, model.to(ctx.device), net, list(variant.inputs), train.images, train,
                               cd.train, variant.joint.task_weight, exp.seed, ctx.device, **ctx.training("joint"))
            state = {f"net.{k}": v for k, v in net.state_dict().items()}
            state.update({f"codec.{k}": v for k, v in model.state_dict().items()})
            ctx.keep_weights("joint", state, t0, f"D:{ctx.cell.variant} with the {ctx.cell.codec_label}@{q} encoder")
            info = {"trained": True, "train_s": time.perf_counter() - t0, **info}
        model.update(force=True)
        joint = type(ctx.codec).from_model(ctx.codec.name, model, q).to(ctx.device)
        return net.eval(), joint, info
