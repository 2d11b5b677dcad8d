"""The bill before a run (``bench plan``): what a grid will make, store and cost here.

The splits are read and fingerprinted as a run reads them (so what is already cached or
stored is known, and a file-digest memo makes the next pass quick); nothing is written but
that memo. Then, per stage:

- **transcode**: the sets still to code and their images; the bytes their cache entries
  will take and the time to code them, from a probe of each codec and operating point on a
  sample of the experiment's real val images (encode, decode and fidelity, timed here);
- **training**: each training still to do (A from scratch, C, D), its images × epochs, and
  the time from a probe of the task's training steps on real train images on the device;
- **evaluation**: the cells' val images, from a probe of the network's forward pass;
- **decoding on read**: the images the cells decode again from cached streams.

Every figure is an estimate from the probes and says so: the rate of a sample is not the
rate of a split, and a probe on 8 images is not a day of GPU time. A per-dataset target
bitrate's quality is not searched for the plan: its bytes come from the target itself.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.cache import Cache
from bench.codecs.base import OperatingPoint
from bench.config import Schedule
from bench.grid import Cell, Plan, ResolvedCodec, ResolvedExperiment
from bench.progress import Progress
from bench.ratecontrol import Target, searchable_qualities
from bench.store import Store
from bench.train import train_on_images
from bench.transcode import transcode_chunk
from bench.transcodes import keeps_pixels
from bench.workbench import Workbench

#: Val images each codec and operating point is probed on, per experiment.
SAMPLE = 8
#: The largest batch a training probe takes (the per-image time of larger batches is
#: taken to be the same: on a GPU it is usually lower, so the estimate errs long).
PROBE_BATCH = 4
#: Bytes a cache entry keeps per image besides its streams (offsets and per-image records),
#: and per kept decoded image besides its pixels (its .npy header and zip entry): both as
#: measured on entries of 30 and 60 images.
RECORD_BYTES = 120
KEPT_IMAGE_BYTES = 250


@dataclass
class CodecProbe:
    """One codec at one setting on a sample: bytes per pixel, and seconds per pixel to
    encode, decode and measure (``decode_s_px``: decoding alone, what a read costs)."""

    bytes_px: float
    seconds_px: float
    decode_s_px: float
    #: ``probe`` (measured on the sample) or ``target`` (bytes from the target bitrate).
    rate_from: str = "probe"


@dataclass
class Stage:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def total(self, name: str) -> float:
        return float(sum(r[name] for r in self.rows))


@dataclass
class Bill:
    grid: str
    device: str
    workers: int
    sample: int
    cells: int
    pending: int
    splits: list[dict[str, Any]]
    transcode: Stage
    training: Stage
    evaluation: Stage
    decoding: Stage

    def hours(self) -> float:
        return (self.transcode.total("wall_s") + self.training.total("wall_s") + self.evaluation.total("wall_s")
                + self.decoding.total("wall_s")) / 3600

    def cache_bytes(self) -> float:
        return self.transcode.total("cache_bytes")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["expected"] = {"hours": self.hours(), "cache_bytes": self.cache_bytes()}
        return out


# --- probes ---------------------------------------------------------------------------------


def _sample(images: Any, n: int) -> list[np.ndarray]:
    """``n`` images spread evenly over a split (all of a smaller one)."""
    idx = np.unique(np.linspace(0, len(images) - 1, num=min(n, len(images))).round().astype(int))
    return [images[int(i)] for i in idx]


def probe_codec(rc: ResolvedCodec, setting: int | Target, images: list[np.ndarray]) -> CodecProbe:
    """``rc`` at ``setting`` on ``images``, timed here after one untimed image: a target is probed at a quality in
    the middle of the codec's range, its bytes taken from the target (a per-image search
    costs about log2(range) encodes per image)."""
    pixels = float(sum(im.shape[0] * im.shape[1] for im in images))
    quality = setting if isinstance(setting, int) else _middle(rc)
    transcode_chunk(rc.codec, OperatingPoint(quality), images[:1])  # untimed: first-call set-up, weights loading
    t0 = time.perf_counter()
    result = transcode_chunk(rc.codec, OperatingPoint(quality), images)
    seconds = time.perf_counter() - t0
    decode = float(sum(result.decode_s))
    if isinstance(setting, Target):
        tries = np.log2(max(2, len(searchable_qualities(rc.codec)))) if setting.mode == "image" else 1.0
        return CodecProbe(setting.bpp / 8, (seconds + (tries - 1) * float(sum(result.encode_s))) / pixels,
                          decode / pixels, "target")
    return CodecProbe(float(sum(map(len, result.streams))) / pixels, seconds / pixels, decode / pixels)


def _middle(rc: ResolvedCodec) -> int:
    qualities = searchable_qualities(rc.codec)
    return qualities[len(qualities) // 2]


def probe_training(exp: ResolvedExperiment, schedule: Schedule, device: str, built_for: Any, train: Any,
                   n: int) -> float:
    """Seconds per image of one epoch of ``exp``'s training on ``device``: real steps on
    the first ``n`` train images in batches of the schedule's size, at most ``PROBE_BATCH``
    (a detector's batch of 8 on a CPU takes tens of GB), after one untimed batch."""
    torch.manual_seed(0)
    net = exp.task.build(exp.model, built_for).to(device)
    head = _head(train, n)
    batch = min(schedule.batch_size, PROBE_BATCH, n)
    steps = Schedule(epochs=1, batch_size=batch, lr=schedule.lr)
    train_on_images(exp.task, net, exp.model, head.images[:batch], _head(head, batch), steps, 0, device)
    t0 = time.perf_counter()
    train_on_images(exp.task, net, exp.model, head.images, head, steps, 0, device)
    return (time.perf_counter() - t0) / n


def _head(data: Any, n: int) -> Any:
    """The first ``n`` images of a split with their targets, in memory."""
    from bench.datasets.base import ImageSet

    return ImageSet(data.dataset, data.split, data.ids[:n], list(data.images[:n]),
                    labels=None if data.labels is None else data.labels[:n], classes=data.classes,
                    targets={k: _first(v, n, len(data)) for k, v in data.targets.items()})


def _first(target: Any, n: int, length: int) -> Any:
    """The first ``n`` of a per-image target; a target of the whole split (an ignore index) as it is."""
    return target[:n] if isinstance(target, (list, tuple, np.ndarray)) and len(target) == length else target


@torch.no_grad()
def probe_evaluation(exp: ResolvedExperiment, net: torch.nn.Module, device: str, images: list[np.ndarray]) -> float:
    """Seconds per image of the pixel network's predictions on ``device`` (after one warm-up)."""
    list(exp.task.predict(net, exp.model, images[:1], device))
    t0 = time.perf_counter()
    list(exp.task.predict(net, exp.model, images, device))
    return (time.perf_counter() - t0) / len(images)


# --- the bill -------------------------------------------------------------------------------


def schedule_of(cell: Cell) -> Schedule | None:
    """The schedule a cell trains with (C's ``finetune``, D's ``compressed_domain.train``)."""
    scenario = cell.exp.scenario(cell.scenario)
    if not scenario.trains:
        return None
    section = scenario.settings(cell.exp)
    return section if isinstance(section, Schedule) else getattr(section, "train", None)


class Planner:
    """Probes and sums for one grid on this machine."""

    def __init__(self, plan: Plan, out: Path, cache_dir: Path | None, device: str, workers: int,
                 sample: int = SAMPLE, progress: Progress | None = None) -> None:
        self.plan, self.device, self.workers, self.sample = plan, device, workers, sample
        self.cache = Cache(cache_dir or Path(out) / "cache")
        self.store_path = Path(out) / plan.grid.name / "results.sqlite"
        self.progress = progress or Progress(quiet=True)
        self.bench = Workbench(plan, self.cache, device, 1, False, self.progress)
        self._codec_probes: dict[tuple[int, str, str], CodecProbe] = {}
        self._train_probes: dict[tuple[int, str], float] = {}
        self._eval_probes: dict[int, float] = {}

    def close(self) -> None:
        self.bench.close()

    def pending(self, cells: list[Cell]) -> list[Cell]:
        if not self.store_path.is_file():
            return cells
        store = Store(self.store_path)
        try:
            done = store.finished_keys()
        finally:
            store.close()
        return [c for c in cells if c.key not in done]

    def bill(self) -> Bill:
        t0 = time.perf_counter()
        cells = self.bench.key_cells(self.plan.cells)
        read_s = time.perf_counter() - t0
        pending = self.pending(cells)
        return Bill(self.plan.grid.name, self.device, self.workers, self.sample, len(cells), len(pending),
                    self.splits(read_s), self.transcode(pending), self.training(pending), self.evaluation(pending),
                    self.decoding(pending))

    def splits(self, read_s: float) -> list[dict[str, Any]]:
        seen, out = set(), []
        for (index, split), images in self.bench.splits.loaded().items():
            source = (self.plan.experiments[index].dataset.source(), split)
            if source in seen:
                continue
            seen.add(source)
            out.append({"dataset": images.dataset, "split": split, "images": len(images),
                        "pixels": int(sum(images.pixels))})
        if out:
            out[0]["read_s"] = read_s
        return out

    # -- transcode ---------------------------------------------------------------------
    def _setting(self, cell: Cell) -> int | Target:
        """The cell's setting, without searching a per-dataset target's quality (a cached
        choice is used; else the target itself)."""
        if cell.target is not None and cell.target.mode == "dataset":
            assert cell.codec_label is not None
            val = self.bench.splits.get(cell.exp, "val")
            from bench.keys import choice_key

            rc = self.bench.transcodes.codec(cell.exp, cell.codec_label)
            choice = self.cache.get_choice(choice_key(val.fingerprint, rc.identity, cell.target))
            return int(choice["quality"]) if choice is not None else cell.target
        return self.bench.transcodes.setting(cell)

    def codec_probe(self, exp: ResolvedExperiment, label: str, setting: int | Target) -> CodecProbe:
        key = (exp.index, label, str(setting))
        if key not in self._codec_probes:
            images = _sample(self.bench.splits.get(exp, "val").images, self.sample)
            self._codec_probes[key] = probe_codec(self.bench.transcodes.codec(exp, label), setting, images)
        return self._codec_probes[key]

    def transcode(self, pending: list[Cell]) -> Stage:
        sets: dict[str, tuple[ResolvedExperiment, str, str, int | Target]] = {}
        for cell in pending:
            if cell.codec_label is None:
                continue
            setting = self._setting(cell)
            for split in cell.exp.scenario(cell.scenario).transcodes:
                key = (self.bench.transcodes.key(cell.exp, split, cell.codec_label, setting)
                       if not isinstance(setting, Target) or setting.mode == "image" else
                       f"{cell.exp.index}:{split}:{cell.codec_label}:{setting}")
                if not self.cache.has_transcode(key):
                    sets.setdefault(key, (cell.exp, split, cell.codec_label, setting))
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        for exp, split, label, setting in sets.values():
            images = self.bench.splits.get(exp, split)
            probe = self.codec_probe(exp, label, setting)
            rc = self.bench.transcodes.codec(exp, label)
            pixels = float(sum(images.pixels))
            kept = 3 * pixels + KEPT_IMAGE_BYTES * len(images) if keeps_pixels("auto", rc.codec) else 0.0
            row = rows.setdefault((label, str(setting), probe.rate_from), {
                "codec": label, "setting": str(setting), "rate_from": probe.rate_from, "sets": 0, "images": 0,
                "bpp": 8 * probe.bytes_px, "cache_bytes": 0.0, "cpu_s": 0.0, "wall_s": 0.0})
            parallel = self.workers if rc.codec.poolable else 1
            row["sets"] += 1
            row["images"] += len(images)
            row["cache_bytes"] += probe.bytes_px * pixels + RECORD_BYTES * len(images) + kept
            row["cpu_s"] += probe.seconds_px * pixels
            row["wall_s"] += probe.seconds_px * pixels / parallel
        return Stage(list(rows.values()))

    # -- training ----------------------------------------------------------------------
    def train_probe(self, exp: ResolvedExperiment, schedule: Schedule) -> float:
        key = (exp.index, schedule.model_dump_json())
        if key not in self._train_probes:
            train = self.bench.splits.get(exp, "train")
            built_for = self.bench.splits.get(exp, "val") if exp.model.pretrained else train
            n = min(len(train), 2 * min(schedule.batch_size, PROBE_BATCH))
            self._train_probes[key] = probe_training(exp, schedule, self.device, built_for, train, n)
        return self._train_probes[key]

    def trainings(self, pending: list[Cell]) -> list[tuple[ResolvedExperiment, str, Schedule]]:
        """(experiment, what, schedule) of every training the pending cells will do."""
        out, refs = [], set()
        for cell in pending:
            exp = cell.exp
            if exp.trains_reference and exp.index not in refs:
                refs.add(exp.index)
                if not self.cache.has_model(self.bench.models.reference_key(exp)):
                    out.append((exp, "A", exp.entry.train))
            schedule = schedule_of(cell)
            if schedule is not None and not self._trained(cell):
                out.append((exp, cell.scenario, schedule))
        return out

    def _trained(self, cell: Cell) -> bool:
        """Whether the cell's weights are in the cache already (of any of the kinds the
        built-in scenarios train)."""
        ctx = self.bench.context(cell)
        return any(ctx.has_weights(kind) for kind in ("finetuned", "compressed-domain", "joint"))

    def training(self, pending: list[Cell]) -> Stage:
        rows: dict[tuple[int, str], dict[str, Any]] = {}
        for exp, what, schedule in self.trainings(pending):
            n = len(self.bench.splits.get(exp, "train"))
            per_image = self.train_probe(exp, schedule)
            row = rows.setdefault((exp.index, what), {
                "experiment": exp.index, "model": exp.model_label, "scenario": what, "trainings": 0,
                "epochs": schedule.epochs, "images": n, "image_epochs": 0, "s_per_image": per_image, "wall_s": 0.0})
            row["trainings"] += 1
            row["image_epochs"] += n * schedule.epochs
            row["wall_s"] += per_image * n * schedule.epochs
        return Stage(list(rows.values()))

    # -- evaluation and decoding ---------------------------------------------------------
    def eval_probe(self, exp: ResolvedExperiment) -> float:
        if exp.index not in self._eval_probes:
            val = self.bench.splits.get(exp, "val")
            torch.manual_seed(0)
            net = exp.task.build(exp.model, val if exp.model.pretrained else self.bench.splits.get(exp, "train"))
            self._eval_probes[exp.index] = probe_evaluation(exp, net.to(self.device).eval(), self.device,
                                                            _sample(val.images, self.sample))
        return self._eval_probes[exp.index]

    def evaluation(self, pending: list[Cell]) -> Stage:
        rows: dict[tuple[int, str], dict[str, Any]] = defaultdict(dict)
        for cell in pending:
            if cell.exp.model is None:
                continue  # a fidelity cell's measurements are made by the transcode stage
            n = len(self.bench.splits.get(cell.exp, "val"))
            row = rows[(cell.exp.index, cell.scenario)]
            if not row:
                row.update({"experiment": cell.exp.index, "model": cell.exp.model_label, "scenario": cell.scenario,
                            "cells": 0, "images": 0, "s_per_image": self.eval_probe(cell.exp), "wall_s": 0.0})
            row["cells"] += 1
            row["images"] += n
            row["wall_s"] += n * row["s_per_image"]
        return Stage(list(rows.values()))

    def decoding(self, pending: list[Cell]) -> Stage:
        """Images the pending cells decode from cached streams: each val image they test
        on, and each train image per finetuning epoch (C)."""
        rows: dict[str, dict[str, Any]] = {}
        for cell in pending:
            if cell.codec_label is None or cell.scenario.startswith("D"):
                continue  # D reads latents: their entropy decoding is part of its training and evaluation
            rc = self.bench.transcodes.codec(cell.exp, cell.codec_label)
            if keeps_pixels("auto", rc.codec):
                continue
            probe = self.codec_probe(cell.exp, cell.codec_label, self._setting(cell))
            schedule = schedule_of(cell)
            counts = [(self.bench.splits.get(cell.exp, "val"), 1)]
            if schedule is not None:
                counts.append((self.bench.splits.get(cell.exp, "train"), schedule.epochs))
            row = rows.setdefault(cell.codec_label, {"codec": cell.codec_label, "images": 0, "wall_s": 0.0})
            for images, times in counts:
                row["images"] += len(images) * times
                row["wall_s"] += probe.decode_s_px * float(sum(images.pixels)) * times / max(1, self.workers)
        return Stage(list(rows.values()))


def make_bill(plan: Plan, out: Path, cache_dir: Path | None, device: str, workers: int,
              sample: int = SAMPLE) -> Bill:
    planner = Planner(plan, out, cache_dir, device, workers, sample)
    try:
        return planner.bill()
    finally:
        planner.close()
