"""A run: prepare → transcode → evaluate (per scenario) → record → report."""

from __future__ import annotations

import copy
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.cache import Cache, Transcoded
from bench.codecs.base import Codec, OperatingPoint
from bench.datasets.base import ImageSet
from bench.domain.adapt import feature_taps
from bench.domain.cost import cost_record
from bench.domain.nets import latent_network
from bench.domain.joint import train_joint
from bench.domain.train import LatentSet, Transfer, evaluate_latent, latent_set, train_latent
from bench.errors import BenchError
from bench.executors import EXECUTORS, RayExecutor, cell_threads
from bench.grid import CELL_SCHEMA, Cell, Plan, ResolvedExperiment, stable_hash
from bench.progress import Progress
from bench.provenance import provenance
from bench.ratecontrol import RateChoice, Target, search_dataset, searchable_qualities
from bench.store import Store
from bench.transcode import CHUNK, ChunkResult, ahead, make_pool, set_bpp, stream, submit_chunk, transcode_set


#: Streams entropy-decoded per call when reading a split's latents.
LATENT_CHUNK = 64
#: Val streams the cost table times both inference paths on.
COST_IMAGES = 16


@dataclass
class RunOptions:
    out: Path = Path("results")
    cache_dir: Path | None = None
    device: str = "auto"
    workers: int = 1
    force: bool = False
    quiet: bool = False
    argv: list[str] | None = None
    #: ``local`` (this machine's process pool) or ``ray`` (bench.executors).
    executor: str = "local"
    #: A Ray cluster's address (``ray`` only; none: a Ray instance on this machine).
    address: str | None = None
    #: Torch threads per cell (the CPUs a Ray cell task asks for); None: torch's default.
    #: Float results depend on it: runs compare exactly only at the same value.
    cell_threads: int | None = None


@dataclass
class Counters:
    cells_total: int = 0
    cells_run: int = 0
    cells_skipped: int = 0
    encodes: int = 0
    transcodes: int = 0
    trainings: int = 0


@dataclass
class CellResult:
    row: dict[str, Any] = field(default_factory=dict)
    #: The val set the cell was tested on (not stored: for the visual grid's sample).
    transcoded: Transcoded | None = None


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise BenchError(f"--device {device}: expected cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise BenchError(f"--device {device}: CUDA is not available here (torch {torch.__version__})")
    if device != "cuda" and int(device[5:]) >= torch.cuda.device_count():
        raise BenchError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def run_dir(out: Path, name: str) -> Path:
    return Path(out) / name


def ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from None


def transcode_key(images: ImageSet, codec_identity: dict[str, Any], setting: int | Target) -> str:
    """The cache key of a set at a quality, or at a per-image target bitrate."""
    if isinstance(setting, Target):
        return stable_hash({"schema": CELL_SCHEMA, "set": images.fingerprint, "codec": codec_identity,
                            "target": setting.identity()}, 32)
    return stable_hash({"schema": CELL_SCHEMA, "set": images.fingerprint, "codec": codec_identity, "quality": setting}, 32)


Setting = int | Target


class Workbench:
    """What scenarios draw on: originals, cached transcodes and (cached) trained models."""

    def __init__(self, plan: Plan, cache: Cache, device: str, workers: int, force: bool, progress: Progress,
                 pool_factory: Callable[[int], Any] = make_pool) -> None:
        self.plan, self.cache, self.device, self.force, self.progress = plan, cache, device, force, progress
        self.counters = Counters()
        self.workers = workers
        self._pool = None
        self._pool_factory = pool_factory
        self._fresh_models: set[str] = set()  # trained in this run (honours --force once)
        self._originals: dict[tuple[int, str], ImageSet] = {}
        self._references: dict[int, tuple[nn.Module, Any]] = {}
        self._fresh: set[str] = set()  # transcodes made in this run (honours --force once)
        self._latents: dict[tuple[str, tuple[str, ...]], tuple[LatentSet, list[int]]] = {}
        self._costs: dict[tuple[Any, ...], dict[str, float]] = {}
        self._choices: dict[str, dict[str, Any]] = {}
        for exp in plan.experiments:
            for rc in exp.codecs:
                rc.codec.to(device)

    def close(self) -> None:
        if self._pool is not None:
            # wait for the chunks already running (queued ones are cancelled): a pool left
            # behind breaks its exit handler with "Bad file descriptor" on an interrupt
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- data -------------------------------------------------------------------------
    def originals(self, exp: ResolvedExperiment, split: str) -> ImageSet:
        if (exp.index, split) not in self._originals:
            same = [k for k in self._originals if k[1] == split
                    and self.plan.experiments[k[0]].dataset.identity() == exp.dataset.identity()]
            self._originals[(exp.index, split)] = (
                self._originals[same[0]] if same else exp.dataset.load(split, self.cache.root)
            )
        return self._originals[(exp.index, split)]

    def _codec(self, exp: ResolvedExperiment, label: str):
        return next(rc for rc in exp.codecs if rc.label == label)

    # -- rate control -----------------------------------------------------------------
    def _ensure_pool(self) -> None:
        if self._pool is None and self.workers > 1:
            self._pool = self._pool_factory(self.workers)

    def choice(self, exp: ResolvedExperiment, label: str, target: Target) -> dict[str, Any]:
        """A per-dataset target's quality: searched on the val split (the images the cells
        report on), once per run and codec, and kept in the cache. The train split uses the
        same quality (scenarios C and D train where they are tested)."""
        rc = self._codec(exp, label)
        val = self.originals(exp, "val")
        key = stable_hash({"schema": CELL_SCHEMA, "set": val.fingerprint, "codec": rc.identity,
                           "target": target.identity()}, 32)
        if key not in self._choices:
            cached = None if self.force else self.cache.get_choice(key)
            if cached is None:
                self._ensure_pool()
                t0 = time.perf_counter()
                found: RateChoice = search_dataset(lambda q: set_bpp(rc.codec, q, val.images, self._pool),
                                                   searchable_qualities(rc.codec), target.bpp, target.tolerance,
                                                   rc.codec.quality_descending)
                cached = {"quality": found.quality, "bpp": found.bpp, "target": target.bpp,
                          "within_tolerance": found.within_tolerance, "relative_error": found.relative_error,
                          "tried": [list(t) for t in found.tried], "search_s": time.perf_counter() - t0}
                self.cache.put_choice(key, cached)
                self.progress.say(f"rate control: {label} at {target.bpp:g} bpp on {exp.dataset.label()} → quality "
                                  f"{found.quality} ({found.bpp:.4f} bpp{'' if found.within_tolerance else ', outside the tolerance'}; "
                                  f"{len(found.tried)} {'quality' if len(found.tried) == 1 else 'qualities'} tried)")
            self._choices[key] = cached
        return self._choices[key]

    def setting(self, cell: Cell) -> Setting:
        """What the cell's transcodes are keyed by: its quality, the quality a per-dataset
        target resolved to, or a per-image target itself."""
        if cell.target is None:
            assert cell.quality is not None
            return cell.quality
        if cell.target.mode == "dataset":
            assert cell.codec_label is not None
            return int(self.choice(cell.exp, cell.codec_label, cell.target)["quality"])
        return cell.target

    def quality(self, cell: Cell) -> int:
        """The cell's one quality setting (scenario D: a quality, or a per-dataset target's)."""
        setting = self.setting(cell)
        assert isinstance(setting, int), "a per-image target has no single quality"
        return setting

    def transcode_needed(self, exp: ResolvedExperiment, split: str, label: str, setting: Setting) -> str | None:
        """The transcode key if it must be computed in this run, else None."""
        rc = self._codec(exp, label)
        key = transcode_key(self.originals(exp, split), rc.identity, setting)
        if key in self._fresh or (self.cache.has_transcode(key) and not self.force):
            return None
        return key

    def make_transcodes(self, todo: list[tuple[ResolvedExperiment, str, str, Setting]], bar: Any) -> None:
        """Transcode every listed set, streaming: chunks go to the worker pool a bounded
        number at a time (across set boundaries, so the pool never idles between sets) and
        each result is written to its set's cache entry as it arrives; an entry becomes
        visible when its last chunk is in. Memory holds a few chunks, whatever the sets' size."""
        self._ensure_pool()
        sets = []
        for exp, split, label, setting in todo:
            rc = self._codec(exp, label)
            images = self.originals(exp, split)
            which = {"target": setting.identity()} if isinstance(setting, Target) else {"quality": setting}
            info = {"codec": rc.identity, **which, "set": images.fingerprint,
                    "dataset": images.dataset, "split": split, "ids": images.ids}
            sets.append((transcode_key(images, rc.identity, setting), rc, setting, images, info))
        writers: dict[int, Any] = {}

        def tasks() -> Iterator[tuple[int, bool, Callable[[], Any]]]:
            for n, (key, rc, setting, images, info) in enumerate(sets):
                starts = range(0, len(images), CHUNK)
                for start in starts:
                    last = start == starts[-1]
                    yield n, last, (lambda rc=rc, setting=setting, images=images, start=start: submit_chunk(
                        rc.codec, setting, images.images, start, self._pool, rc.identity))

        order: deque[tuple[int, bool]] = deque()

        def submit(task: tuple[int, bool, Callable[[], Any]]) -> Any:
            n, last, run = task
            if n not in writers:
                writers[n] = self.cache.transcode_writer(sets[n][0], sets[n][4])
            order.append((n, last))
            return run()

        def collect(r: ChunkResult) -> None:
            n, last = order.popleft()
            writers[n].add(r.decoded, r.streams, psnr=r.psnr, ms_ssim=r.ms_ssim, encode_s=r.encode_s,
                           decode_s=r.decode_s, bits=r.bits, qualities=r.qualities)
            bar.update(len(r.streams))
            if last:
                key, rc = sets[n][0], sets[n][1]
                writers.pop(n).commit("estimate" if rc.codec.rate_is_estimate else "bitstream")
                self._fresh.add(key)
                self.counters.encodes += len(sets[n][3])
                self.counters.transcodes += 1

        try:
            stream(tasks(), submit, collect, ahead(self._pool))
        finally:
            for w in writers.values():  # a failure or a stop: unfinished entries are dropped
                w.abort()

    def transcoded(self, exp: ResolvedExperiment, split: str, label: str, setting: Setting) -> Transcoded:
        key = transcode_key(self.originals(exp, split), self._codec(exp, label).identity, setting)
        return self.cache.get_transcode(key)

    # -- models -----------------------------------------------------------------------
    def _train(self, exp: ResolvedExperiment, net: nn.Module, images: list[np.ndarray], schedule: Any, key: str) -> None:
        if self.cache.has_model(key) and (not self.force or key in self._fresh_models):
            net.load_state_dict(self.cache.get_model(key))
            return
        t0 = time.perf_counter()
        exp.task.train(net, exp.model, images, self.originals(exp, "train"), schedule, exp.seed, self.device)
        self.counters.trainings += 1
        self.progress.say(f"trained {exp.model_label} on {len(images)} images in {time.perf_counter() - t0:.1f} s")
        self.cache.put_model(key, {k: v.detach().cpu() for k, v in net.state_dict().items()})
        self._fresh_models.add(key)

    def reference_model(self, exp: ResolvedExperiment) -> tuple[nn.Module, Any]:
        """The scenario-A model (trained from scratch, or pretrained) and the references."""
        if exp.index not in self._references:
            val = self.originals(exp, "val")
            torch.manual_seed(exp.seed)
            net = exp.task.build(exp.model, val).to(self.device)
            if not exp.model.pretrained:
                train = self.originals(exp, "train")
                self._train(exp, net, train.images, exp.entry.train, stable_hash(exp.reference_identity(), 32))
            net.eval()
            self._references[exp.index] = (net, exp.task.references(net, exp.model, val, self.device))
        return self._references[exp.index]

    def finetuned_model(self, cell: Cell) -> tuple[nn.Module, Any]:
        """The A model finetuned on the compressed train split at the cell's operating point."""
        net_a, refs = self.reference_model(cell.exp)
        net = copy.deepcopy(net_a)
        key = stable_hash({"cell": cell.key, "weights": "finetuned"}, 32)
        if self.cache.has_model(key) and not self.force:
            net.load_state_dict(self.cache.get_model(key))
        else:
            train = self.transcoded(cell.exp, "train", cell.codec_label, self.setting(cell))
            self._train(cell.exp, net, train.decoded, cell.exp.entry.finetune, key)
        return net.eval(), refs

    # -- scenario D ---------------------------------------------------------------------
    def latents(self, exp: ResolvedExperiment, split: str, label: str, quality: int,
                inputs: list[str]) -> tuple[LatentSet, list[int]]:
        """The split's latents at an operating point, read back from its cached streams by
        entropy decoding alone (kept for the run: every D variant and task shares them)."""
        key = (transcode_key(self.originals(exp, split), self._codec(exp, label).identity, quality), tuple(inputs))
        if key not in self._latents:
            streams = self.transcoded(exp, split, label, quality).streams
            codec = self._codec(exp, label).codec
            decoded = [lat for i in range(0, len(streams), LATENT_CHUNK)
                       for lat in codec.latents(streams[i : i + LATENT_CHUNK])]
            self._latents[key] = latent_set(decoded, inputs)
        return self._latents[key]

    def latent_model(self, cell: Cell) -> tuple[nn.Module, dict[str, Any]]:
        """Scenario D's network for the cell, built from the A model and trained on the
        train split's latents (or loaded from the cache), and what training recorded."""
        exp, variant = cell.exp, cell.exp.variant(cell.variant or "")
        cd = exp.entry.compressed_domain
        assert cd is not None and cell.codec_label is not None
        q = self.quality(cell)
        pixel, _ = self.reference_model(exp)
        train, splits = self.latents(exp, "train", cell.codec_label, q, list(variant.inputs))
        torch.manual_seed(exp.seed)
        net = latent_network(exp.task.name, pixel, variant.arch, splits, variant.init, variant.drop_stages)
        net.to(self.device)
        key = stable_hash({"cell": cell.key, "weights": "compressed-domain"}, 32)
        if self.cache.has_model(key) and not self.force:
            net.load_state_dict(self.cache.get_model(key))
            return net.eval(), {"trained": False}
        transfer = None
        if variant.transfer is not None:
            root = pixel.get_submodule(net.pixel_root) if net.pixel_root else pixel
            taps = feature_taps(root, variant.transfer.strides)
            layers = {taps[s]: w for s, w in zip(variant.transfer.strides, variant.transfer.layer_weights())}
            transfer = Transfer(root.eval(), exp.model, layers, self.originals(exp, "train").images)
        t0 = time.perf_counter()
        distances = train_latent(exp.task.name, net, train, self.originals(exp, "train"), cd.train, exp.seed,
                                 self.device, transfer)
        self.counters.trainings += 1
        self.progress.say(f"trained {exp.model_label} D:{cell.variant} on {cell.codec_label}@{q} "
                          f"latents in {time.perf_counter() - t0:.1f} s")
        self.cache.put_model(key, {k: v.detach().cpu() for k, v in net.state_dict().items()})
        info: dict[str, Any] = {"trained": True, "train_s": time.perf_counter() - t0}
        if transfer is not None:
            info["transfer_layers"] = transfer.layers
            info["transfer_distance_per_epoch"] = distances
        return net.eval(), info

    def joint_model(self, cell: Cell) -> tuple[nn.Module, Codec, dict[str, Any]]:
        """Scenario D with joint encoder finetuning: the compressed-domain network and the
        codec whose analysis transform was trained with it (or both from the cache)."""
        exp, variant = cell.exp, cell.exp.variant(cell.variant or "")
        cd = exp.entry.compressed_domain
        assert cd is not None and variant.joint is not None and cell.codec_label is not None
        codec = self._codec(exp, cell.codec_label).codec
        q = self.quality(cell)
        pixel, _ = self.reference_model(exp)
        model = copy.deepcopy(codec.compression_model(q)).cpu()
        torch.manual_seed(exp.seed)
        net = latent_network(exp.task.name, pixel, variant.arch, [model.M] * len(variant.inputs), variant.init,
                             variant.drop_stages).to(self.device)
        key = stable_hash({"cell": cell.key, "weights": "joint"}, 32)
        if self.cache.has_model(key) and not self.force:
            state = self.cache.get_model(key)
            net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
            model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("codec.")})
            info: dict[str, Any] = {"trained": False}
        else:
            t0 = time.perf_counter()
            train = self.originals(exp, "train")
            info = train_joint(exp.task.name, model.to(self.device), net, list(variant.inputs), train.images, train,
                               cd.train, variant.joint.task_weight, exp.seed, self.device)
            self.counters.trainings += 1
            self.progress.say(f"trained {exp.model_label} D:{cell.variant} with the {cell.codec_label}@{q} "
                              f"encoder in {time.perf_counter() - t0:.1f} s")
            state = {f"net.{k}": v.detach().cpu() for k, v in net.state_dict().items()}
            state.update({f"codec.{k}": v.detach().cpu() for k, v in model.state_dict().items()})
            self.cache.put_model(key, state)
            info = {"trained": True, "train_s": time.perf_counter() - t0, **info}
        model.update(force=True)
        joint = type(codec).from_model(codec.name, model, q).to(self.device)
        return net.eval(), joint, info

    def compressed_domain_cell(self, cell: Cell) -> CellResult:
        """Scenario D: the compressed-domain model on the val split's latents, with the cost
        of both inference paths on a sample of the val streams. With joint encoder
        finetuning the val images are encoded again by the finetuned encoder, and the row's
        rate and fidelity are those of these new bitstreams."""
        exp = cell.exp
        assert cell.codec_label is not None
        variant = exp.variant(cell.variant or "")
        q = self.quality(cell)
        pixel, refs = self.reference_model(exp)
        val = self.transcoded(exp, "val", cell.codec_label, q)
        codec = self._codec(exp, cell.codec_label).codec
        if variant.joint is not None:
            net, codec, info = self.joint_model(cell)
            originals = self.originals(exp, "val")
            info["bpp_before_finetuning"] = val.summary()["bpp"]
            val = transcode_set(f"joint-{cell.key}", codec, OperatingPoint(q), originals.images, None)
            lat, _ = latent_set(codec.latents(val.streams), list(variant.inputs))
        else:
            net, info = self.latent_model(cell)
            lat, _ = self.latents(exp, "val", cell.codec_label, q, list(variant.inputs))
        metrics = evaluate_latent(exp.task.name, net, lat, refs, self.device)
        # the same network costs the same with or without knowledge transfer: measured once
        arch = (exp.index, cell.codec_label, q, variant.arch, tuple(variant.inputs), variant.drop_stages)
        if arch not in self._costs:
            self._costs[arch] = cost_record(exp.task.name, codec, q, val.streams[:COST_IMAGES], pixel,
                                            exp.model, net, list(variant.inputs), self.device)
        cost = self._costs[arch]
        result = self.result(cell, metrics, transcoded=val, n_images=len(val))
        result.row["record"].update({"compressed_domain": info, "cost": cost})
        return result

    def evaluate(self, exp: ResolvedExperiment, net: nn.Module, images: list[np.ndarray], refs: Any) -> dict[str, float]:
        return exp.task.evaluate(net, exp.model, images, refs, self.device)

    def rate_control(self, cell: Cell, transcoded: Transcoded | None) -> tuple[int | None, dict[str, Any] | None]:
        """The row's quality and what rate control did: the per-dataset choice (its search),
        or the per-image qualities' spread and how many images reached the target."""
        if cell.target is None:
            return cell.quality, None
        info: dict[str, Any] = {**cell.target.identity(), "tolerance": cell.target.tolerance}
        if cell.target.mode == "dataset":
            assert cell.codec_label is not None
            choice = dict(self.choice(cell.exp, cell.codec_label, cell.target))
            choice["within_tolerance"] = abs(choice["relative_error"]) <= cell.target.tolerance
            return int(choice["quality"]), {**info, "search": choice}
        if transcoded is not None and transcoded.qualities is not None:
            err = np.abs(transcoded.bpp - cell.target.bpp) / cell.target.bpp
            values, counts = np.unique(transcoded.qualities, return_counts=True)
            info.update({"qualities": {str(int(v)): int(c) for v, c in zip(values, counts)},
                         "images_within_tolerance": int((err <= cell.target.tolerance).sum()),
                         "mean_abs_relative_error": float(err.mean())})
        return None, info

    def result(self, cell: Cell, metrics: dict[str, float], transcoded: Transcoded | None, n_images: int) -> CellResult:
        rate = transcoded.summary() if transcoded is not None else {}
        quality, control = self.rate_control(cell, transcoded)
        row = {
            "key": cell.key, "task": cell.task, "model": cell.model, "dataset": cell.dataset,
            "scenario": cell.scenario_label, "codec": cell.codec_label, "quality": quality, "seed": cell.seed,
            "target_bpp": cell.target.bpp if cell.target is not None else None,
            "bpp": rate.get("bpp"), "bpp_total": rate.get("bpp_total"), "psnr": rate.get("psnr"),
            "ms_ssim": rate.get("ms_ssim"), "rate_source": rate.get("rate_source"), "n_images": n_images,
            "metrics": metrics,
            "record": {"device": self.device, "workers": self.workers,
                       "encode_s_mean": rate.get("encode_s_mean"), "decode_s_mean": rate.get("decode_s_mean")},
        }
        if control is not None:
            row["record"]["rate_control"] = control
        if transcoded is not None:  # for per-image Bjøntegaard deltas (analysis.per_item)
            row["record"]["per_image"] = {
                "bpp": [round(float(v), 6) for v in transcoded.bpp], "psnr": [round(float(v), 4) for v in transcoded.psnr],
                "ms_ssim": [None if np.isnan(v) else round(float(v), 6) for v in transcoded.ms_ssim]}
        return CellResult(row, transcoded)


def _needs(bench: Workbench, cell: Cell) -> list[tuple[str, str, Setting]]:
    """The (split, codec label, quality) transcodes a pending cell reads."""
    if cell.codec_label is None:
        return []
    setting = bench.setting(cell)
    needs = [("val", cell.codec_label, setting)]
    if cell.scenario in ("C", "D"):
        needs.append(("train", cell.codec_label, setting))
    return needs


def _prepare(bench: Workbench, pending: list[Cell]) -> None:
    """Load every dataset split the pending cells touch: bad inputs fail before any work."""
    for cell in pending:
        bench.originals(cell.exp, "val")
        if cell.scenario in ("C", "D") or (not cell.exp.model.pretrained):
            bench.originals(cell.exp, "train")


def _transcode_stage(bench: Workbench, pending: list[Cell]) -> None:
    todo: dict[str, tuple[ResolvedExperiment, str, str, Setting]] = {}
    for cell in pending:
        for split, label, q in _needs(bench, cell):
            key = bench.transcode_needed(cell.exp, split, label, q)
            if key is not None:
                todo.setdefault(key, (cell.exp, split, label, q))
    total = sum(len(bench.originals(exp, split)) for exp, split, _, _ in todo.values())
    with bench.progress.bar(total, f"transcode ({len(todo)} sets)", "images") as bar:
        bench.make_transcodes(list(todo.values()), bar)


def compute_cell(bench: Workbench, cell: Cell) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One cell's row and, for scenario B, its sample images (what the store keeps)."""
    scenario = next(s for s in cell.exp.scenarios if s.name == cell.scenario)
    t0 = time.perf_counter()
    result = scenario.run(bench, cell)
    result.row["record"]["wall_s"] = time.perf_counter() - t0
    sample = None
    if cell.scenario == "B" and result.transcoded is not None:
        sample = _sample(bench, cell, result.transcoded)
    return result.row, sample


def _recorder(bench: Workbench, store: Store, run_id: str) -> Callable[[dict[str, Any], dict[str, Any] | None], None]:
    def record(row: dict[str, Any], sample: dict[str, Any] | None) -> None:
        store.record({**row, "run_id": run_id, "created": time.time()})
        if sample is not None:
            store.put_sample(**sample)
        bench.counters.cells_run += 1

    return record


def _evaluate_stage(bench: Workbench, pending: list[Cell], store: Store, run_id: str) -> None:
    record = _recorder(bench, store, run_id)
    with bench.progress.bar(len(pending), "cells", "cells") as bar:
        for cell in sorted(pending, key=lambda c: (c.exp.index, SCENARIO_ORDER.get(c.scenario, 9))):
            record(*compute_cell(bench, cell))
            bar.update()


SCENARIO_ORDER = {"A": 0, "B": 1, "C": 2, "D": 3}
#: Longest side of the stored sample images (a centre crop of larger images).
SAMPLE_SIDE = 256


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    h, w = image.shape[:2]
    top, left = max(0, (h - SAMPLE_SIDE) // 2), max(0, (w - SAMPLE_SIDE) // 2)
    buf = io.BytesIO()
    Image.fromarray(image[top : top + SAMPLE_SIDE, left : left + SAMPLE_SIDE]).save(buf, format="PNG")
    return buf.getvalue()


def _sample(bench: Workbench, cell: Cell, t: Transcoded) -> dict[str, Any]:
    """The first val image, original and decoded at the cell's operating point, for the
    visual grid; a centre crop, so the store stays small."""
    assert cell.codec_label is not None
    originals = bench.originals(cell.exp, "val")
    return {"cell": cell.key, "dataset": cell.dataset, "codec": cell.codec_label, "setting": str(cell.setting),
            "image_id": originals.ids[0], "original": _png(originals.images[0]), "png": _png(t.decoded[0]),
            "bpp": float(t.bpp[0]), "psnr": float(t.psnr[0]), "set_bpp": t.summary()["bpp"]}


def run(plan: Plan, opts: RunOptions) -> dict[str, Any]:
    """Run every pending cell of ``plan``; return the run summary (also in ``summary.json``)."""
    t0 = time.perf_counter()
    if opts.executor not in EXECUTORS:
        raise BenchError(f"--executor {opts.executor}: expected one of {', '.join(EXECUTORS)}")
    if opts.cell_threads is not None and opts.cell_threads < 1:
        raise BenchError(f"--cell-threads {opts.cell_threads}: must be at least 1")
    if opts.address is not None and opts.executor != "ray":
        raise BenchError(f"--address {opts.address}: only --executor ray connects to a cluster")
    if opts.executor == "local":
        device = resolve_device(opts.device)
    folder = run_dir(opts.out, plan.grid.name)
    ensure_writable(folder)
    cache = Cache(opts.cache_dir or Path(opts.out) / "cache")
    ensure_writable(cache.root)
    progress = Progress(opts.quiet)
    ray = RayExecutor(opts) if opts.executor == "ray" else None
    if ray is not None:
        try:  # the cells' device is the cluster's; the driver only transcodes, on CPU workers
            device = ray.device(opts.device)
        except BaseException:
            ray.close()
            raise
    store = Store(folder / "results.sqlite")
    if ray is None:
        bench = Workbench(plan, cache, device, opts.workers, opts.force, progress)
    else:
        bench = Workbench(plan, cache, "cpu", max(opts.workers, 2), opts.force, progress, ray.pool)
    run_id = uuid.uuid4().hex[:12]
    done = set() if opts.force else store.finished_keys()
    pending = [c for c in plan.cells if c.key not in done]
    bench.counters.cells_total = len(plan.cells)
    bench.counters.cells_skipped = len(plan.cells) - len(pending)
    progress.say(f"run {plan.grid.name}: {len(plan.cells)} cells, {len(pending)} to compute, device {device}")
    store.begin_run(run_id, plan.grid.name, plan.grid.model_dump(mode="json"), [c.key for c in plan.cells],
                    provenance(device, opts.argv))
    status = "failed"
    threads = torch.get_num_threads()
    try:
        _prepare(bench, pending)
        if ray is None:
            _transcode_stage(bench, pending)
            torch.set_num_threads(cell_threads(opts))
            _evaluate_stage(bench, pending, store, run_id)
        else:
            job = ray.job(bench, plan, run_id, device)
            ray.start_references(bench, pending, job)
            _transcode_stage(bench, pending)
            ray.evaluate(bench, pending, store, run_id, job, _recorder(bench, store, run_id))
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if status != "finished":  # record the stop first: closing the pool may be interrupted too
            store.end_run(run_id, status, {**asdict(bench.counters), "status": status})
            store.close()
        bench.close()
        if ray is not None:
            ray.close()
        torch.set_num_threads(threads)
    from bench.report import write_outputs, write_summary

    summary = {**asdict(bench.counters), "wall_s": round(time.perf_counter() - t0, 3),
               "run_id": run_id, "status": status, "device": device}
    store.end_run(run_id, status, summary)  # first: the report shows the run finished, with its end time
    store.close()
    write_summary(folder, summary)
    write_outputs(folder)
    return summary
