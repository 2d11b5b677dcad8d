"""The run's transcoded sets: rate-control choices, the streaming stage that makes the
sets a run needs, and reading them back from the cache.

Each (split, codec, operating point) is coded once per cache and shared by every task,
model and scenario that reads it. Chunks go to the worker pool a bounded number at a time
(across set boundaries, so the pool never idles between sets) and each result is written
to its set's cache entry as it arrives; an entry becomes visible when its last chunk is in.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from bench.cache import Cache, Transcoded
from bench.keys import choice_key, setting_identity, transcode_key
from bench.progress import Progress
from bench.ratecontrol import RateChoice, Target, search_dataset, searchable_qualities
from bench.transcode import CHUNK, SETS_PER_READ, ChunkResult, ahead, make_pool, set_bpp, stream, submit_chunks

if TYPE_CHECKING:
    from bench.grid import Cell, ResolvedCodec, ResolvedExperiment
    from bench.workbench import Counters, Splits

Setting = int | Target

#: Which new cache entries keep decoded pixels beside their bitstreams. ``auto``: a neural
#: codec's only — decoding one again is not bit-exact (a grey level here and there moves
#: with the batch and the thread count) and must happen on the device that encoded, so
#: its cells read the very pixels the recorded PSNR was measured on; a traditional codec's
#: entries keep streams only and decode them exactly when read. ``keep``: every entry
#: (reads need no decoding; 10–40× the bytes). ``derive``: none (a neural codec's images
#: are decoded again on its device when read; what the study's scale needs for scenario C
#: on a neural codec, at the cost of those grey levels).
PIXELS = ("auto", "keep", "derive")


def keeps_pixels(pixels: str, codec: Any) -> bool:
    """Whether a new entry of ``codec`` keeps its decoded pixels under the policy ``pixels``."""
    return pixels == "keep" or (pixels == "auto" and codec.kind != "traditional")


def _read_groups(sets: list[tuple[Any, ...]]) -> list[list[int]]:
    """The sets (by index) coded together chunk by chunk: those of one split, at most
    ``SETS_PER_READ`` at a time, and of one kind of codec (neural or traditional; one that
    can be pooled or not): a cluster sends a neural codec's chunk to a GPU; in the order of
    the first set of each group."""
    groups: list[list[int]] = []
    open_groups: dict[tuple[int, str, bool], list[int]] = {}
    for n, (_, rc, _, images, _) in enumerate(sets):
        where = (id(images), rc.codec.kind, rc.codec.poolable)
        group = open_groups.get(where)
        if group is None or len(group) >= SETS_PER_READ:
            group = open_groups[where] = []
            groups.append(group)
        group.append(n)
    return groups


class Transcodes:
    def __init__(self, splits: Splits, cache: Cache, workers: int, force: bool, progress: Progress,
                 counters: Counters, pool_factory: Callable[[int], Any] = make_pool,
                 choices: dict[str, dict[str, Any]] | None = None, pixels: str = "auto") -> None:
        self.splits, self.cache, self.workers, self.force = splits, cache, workers, force
        #: Which entries keep their decoded pixels beside their streams (``PIXELS``).
        self.pixels = pixels
        self.progress, self.counters, self._pool_factory = progress, counters, pool_factory
        self._pool: Any = None
        #: Per-dataset rate-control choices by key (an executor's workers get the driver's).
        self.choices: dict[str, dict[str, Any]] = dict(choices or {})
        self._fresh: set[str] = set()  # made in this run (honours --force once)

    def close(self) -> None:
        if self._pool is not None:
            # wait for the chunks already running (queued ones are cancelled): a pool left
            # behind breaks its exit handler with "Bad file descriptor" on an interrupt
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _ensure_pool(self) -> None:
        if self._pool is None and self.workers > 1:
            self._pool = self._pool_factory(self.workers)

    @staticmethod
    def codec(exp: ResolvedExperiment, label: str) -> ResolvedCodec:
        return next(rc for rc in exp.codecs if rc.label == label)

    # -- operating points -------------------------------------------------------------
    def choice(self, exp: ResolvedExperiment, label: str, target: Target) -> dict[str, Any]:
        """A per-dataset target's quality: searched on the val split (the images the cells
        report on), once per run and codec, and kept in the cache. The train split uses the
        same quality (scenarios C and D train where they are tested)."""
        rc = self.codec(exp, label)
        val = self.splits.get(exp, "val")
        key = choice_key(val.fingerprint, rc.identity, target)
        if key not in self.choices:
            cached = None if self.force else self.cache.get_choice(key)
            if cached is None:
                cached = self._search(rc, val.images, target, exp.dataset.label())
                self.cache.put_choice(key, cached)
            self.choices[key] = cached
        return self.choices[key]

    def _search(self, rc: ResolvedCodec, images: Any, target: Target, dataset: str) -> dict[str, Any]:
        self._ensure_pool()
        t0 = time.perf_counter()
        found: RateChoice = search_dataset(lambda q: set_bpp(rc.codec, q, images, self._pool),
                                           searchable_qualities(rc.codec), target.bpp, target.tolerance,
                                           rc.codec.quality_descending)
        n = len(found.tried)
        self.progress.say(f"rate control: {rc.label} at {target.bpp:g} bpp on {dataset} → quality {found.quality} "
                          f"({found.bpp:.4f} bpp{'' if found.within_tolerance else ', outside the tolerance'}; "
                          f"{n} {'quality' if n == 1 else 'qualities'} tried)")
        return {"quality": found.quality, "bpp": found.bpp, "target": target.bpp,
                "within_tolerance": found.within_tolerance, "relative_error": found.relative_error,
                "tried": [list(t) for t in found.tried], "search_s": time.perf_counter() - t0}

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

    # -- sets -------------------------------------------------------------------------
    def key(self, exp: ResolvedExperiment, split: str, label: str, setting: Setting) -> str:
        return transcode_key(self.splits.get(exp, split).fingerprint, self.codec(exp, label).identity, setting)

    def needed(self, exp: ResolvedExperiment, split: str, label: str, setting: Setting) -> str | None:
        """The transcode key if it must be computed in this run, else None."""
        key = self.key(exp, split, label, setting)
        if key in self._fresh or (self.cache.has_transcode(key) and not self.force):
            return None
        return key

    def get(self, exp: ResolvedExperiment, split: str, label: str, setting: Setting) -> Transcoded:
        return self.cache.get_transcode(self.key(exp, split, label, setting), self.codec(exp, label).codec)

    def make(self, todo: list[tuple[ResolvedExperiment, str, str, Setting]], bar: Any) -> None:
        """Transcode every listed set, streaming: memory holds a few chunks, whatever the
        sets' size. A failure or a stop drops the unfinished entries."""
        self._ensure_pool()
        sets = []
        for exp, split, label, setting in todo:
            rc, images = self.codec(exp, label), self.splits.get(exp, split)
            info = {"codec": rc.identity, **setting_identity(setting), "set": images.fingerprint,
                    "dataset": images.dataset, "split": split, "ids": images.ids}
            sets.append((self.key(exp, split, label, setting), rc, setting, images, info))
        writers: dict[int, Any] = {}
        groups = _read_groups(sets)

        def tasks() -> Iterator[tuple[list[int], bool, Callable[[], Any]]]:
            for group in groups:
                images = sets[group[0]][3]
                jobs = [(sets[n][1].codec, sets[n][2], sets[n][1].identity, keeps_pixels(self.pixels, sets[n][1].codec))
                        for n in group]
                starts = range(0, len(images), CHUNK)
                for start in starts:
                    yield group, start == starts[-1], (lambda jobs=jobs, images=images, start=start:
                                                       submit_chunks(jobs, images.images, start, self._pool))

        order: deque[tuple[list[int], bool]] = deque()  # (sets, their last chunk?) of each pending chunk

        def submit(task: tuple[list[int], bool, Callable[[], Any]]) -> Any:
            group, last, run = task
            for n in group:
                if n not in writers:
                    writers[n] = self.cache.transcode_writer(sets[n][0], sets[n][4],
                                                             keeps_pixels(self.pixels, sets[n][1].codec))
            order.append((group, last))
            return run()

        def collect(results: list[ChunkResult]) -> None:
            group, last = order.popleft()
            for n, r in zip(group, results, strict=True):
                writers[n].add(r.decoded, r.streams, shapes=r.shapes, psnr=r.psnr, ms_ssim=r.ms_ssim,
                               encode_s=r.encode_s, decode_s=r.decode_s, bits=r.bits, qualities=r.qualities)
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
