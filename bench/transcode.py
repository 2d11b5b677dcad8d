"""The transcode stage: each (image set, codec, operating point) encoded and decoded once.

Codecs fan out over a process pool, one chunk of images per task (a neural codec too
when it runs on the CPU: single-thread workers beat one multi-threaded process on small
images; on a GPU it stays in the main process); each traditional image is timed on its
own, and fidelity is measured where the image was decoded.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from bench.cache import Transcoded
from bench.codecs import CODECS, Codec, OperatingPoint
from bench.datasets.base import ImageFiles, chunk_of, image_shapes, materialize
from bench.errors import CodecError
from bench.lifetime import SERVER_ENV, exit_with_run
from bench.metrics.fidelity import ms_ssim, psnr
from bench.ratecontrol import Target, bpp_of, image_at_target, searchable_qualities

CHUNK = 32
#: Sets of one split coded together, chunk by chunk: each chunk's images are read once for
#: all of them (a PNG or JPEG original is decoded once, not once per operating point); a
#: stop loses the unfinished work of at most this many sets.
SETS_PER_READ = 8


class ChunkResult(NamedTuple):
    streams: list[bytes]
    bits: list[float]
    decoded: list[np.ndarray]
    encode_s: list[float]
    decode_s: list[float]
    psnr: list[float]
    ms_ssim: list[float]
    #: The quality each image was coded at (one per image with a per-image target).
    qualities: list[int] | None = None
    #: Each decoded image's shape (``decoded`` may be left empty: ``without_pixels``).
    shapes: list[tuple[int, ...]] | None = None


def without_pixels(result: ChunkResult) -> ChunkResult:
    """``result`` without its decoded images (their shapes kept): what a worker sends back
    for an entry that keeps bitstreams only, so the pixels are not copied between processes."""
    return result._replace(decoded=[], shapes=[im.shape for im in result.decoded])


def _check_shapes(codec: Codec, images: Sequence[np.ndarray], decoded: Sequence[np.ndarray]) -> None:
    for im, rec in zip(images, decoded, strict=True):
        if rec.shape != im.shape:
            raise CodecError(f"{codec.name} decoded a {rec.shape} image from a {im.shape} original")


def check_identity(codec: Codec, expected: dict[str, Any] | None) -> None:
    """Fail when ``codec`` is no longer what the run's keys were made from (its weights
    file or library replaced while the run was going): its output would be cached under
    a key that does not describe it."""
    if expected is not None and codec.identity() != expected:
        raise CodecError(f"{codec.name}: its weights or library changed while the run was going "
                         f"(identity {json.dumps(codec.identity(), sort_keys=True)[:200]}...); run again")


def transcode_chunk(codec: Codec, point: OperatingPoint, images: Sequence[np.ndarray],
                    expected_identity: dict[str, Any] | None = None) -> ChunkResult:
    """Encode and decode a chunk and measure each reconstruction's fidelity.

    A traditional codec codes each image on its own and times it on its own. A neural codec
    gets the chunk as one batch (one forward pass on its device); its per-image times are
    the batch's time divided by the batch size. Both times end with the bytes or pixels
    back in host memory, so work queued on a GPU is inside them.
    """
    if codec.kind == "traditional":
        streams, decoded, enc_s, dec_s = [], [], [], []
        for im in images:
            t0 = time.perf_counter()
            streams += codec.encode([im], point)
            t1 = time.perf_counter()
            decoded += codec.decode(streams[-1:])
            enc_s.append(t1 - t0)
            dec_s.append(time.perf_counter() - t1)
    else:
        t0 = time.perf_counter()
        streams = codec.encode(images, point)
        t1 = time.perf_counter()
        decoded = codec.decode(streams)
        t2 = time.perf_counter()
        enc_s = [(t1 - t0) / len(images)] * len(images)
        dec_s = [(t2 - t1) / len(images)] * len(images)
    _check_shapes(codec, images, decoded)
    check_identity(codec, expected_identity)  # after the work: the weights it loaded are in it
    return ChunkResult(
        streams, [codec.rate_bits(s) for s in streams], decoded, enc_s, dec_s,
        [psnr(a, b) for a, b in zip(images, decoded)], [ms_ssim(a, b) for a, b in zip(images, decoded)],
    )


def transcode_chunk_at_target(codec: Codec, target: Target, images: Sequence[np.ndarray],
                              expected_identity: dict[str, Any] | None = None) -> ChunkResult:
    """Each image at its own quality, the one whose bpp is closest to ``target`` (a
    per-image search, ``bench.ratecontrol.image_at_target``). An image's encode time is
    its whole search (rate control's cost); decoding is timed as usual."""
    qualities = searchable_qualities(codec)
    streams, chosen, enc_s, dec_s, decoded = [], [], [], [], []
    for im in images:
        t0 = time.perf_counter()
        choice, stream = image_at_target(codec, im, target.bpp, target.tolerance, qualities)
        t1 = time.perf_counter()
        decoded += codec.decode([stream])
        dec_s.append(time.perf_counter() - t1)
        enc_s.append(t1 - t0)
        streams.append(stream)
        chosen.append(choice.quality)
    _check_shapes(codec, images, decoded)
    check_identity(codec, expected_identity)
    return ChunkResult(
        streams, [codec.rate_bits(s) for s in streams], decoded, enc_s, dec_s,
        [psnr(a, b) for a, b in zip(images, decoded)], [ms_ssim(a, b) for a, b in zip(images, decoded)], chosen,
    )


def chunk_bpp(codec: Codec, quality: int, images: Sequence[np.ndarray]) -> list[float]:
    """Per-image bpp of ``images`` encoded at ``quality`` (encoding only: a rate probe)."""
    streams = codec.encode(list(images), OperatingPoint(quality))
    return [bpp_of(codec, s, im) for s, im in zip(streams, images)]


def _init_worker(run_pid: int) -> None:
    import torch

    exit_with_run(run_pid)  # a killed run leaves no worker computing on
    # Ctrl-C is the parent's to handle: it records the stop and shuts the pool down
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # one thread per process: the pool already uses every core


_WORKER_CODECS: dict[str, Codec] = {}


def _worker_codec(name: str, params: dict[str, Any], device: str = "cpu") -> Codec:
    key = json.dumps([name, params, device], sort_keys=True, default=str)
    if key not in _WORKER_CODECS:  # one instance per worker: a neural codec loads its weights once
        cls = CODECS.get(name)
        _WORKER_CODECS[key] = cls(cls.Params(**params)).to(device)
    return _WORKER_CODECS[key]


def on_device(device: str, name: str, params: dict[str, Any], setting: int | Target,
              images: Sequence[np.ndarray] | ImageFiles, identity: dict[str, Any] | None) -> ChunkResult:
    """``_worker``'s chunk with the codec on ``device``: a neural codec's chunk on a GPU
    worker of a cluster (one batch through its transforms there)."""
    codec = _worker_codec(name, params, device)
    images = materialize(images)
    if isinstance(setting, Target):
        return transcode_chunk_at_target(codec, setting, images, identity)
    return transcode_chunk(codec, OperatingPoint(setting), images, identity)


def _worker(name: str, params: dict[str, Any], setting: int | Target, images: Sequence[np.ndarray] | ImageFiles,
            identity: dict[str, Any] | None) -> ChunkResult:
    """A pool worker's chunk (a file-backed chunk is read here, in the worker)."""
    return on_device("cpu", name, params, setting, images, identity)


def _bpp_worker(name: str, params: dict[str, Any], quality: int,
                images: Sequence[np.ndarray] | ImageFiles) -> list[float]:
    return chunk_bpp(_worker_codec(name, params), quality, materialize(images))


def ahead(pool: Executor | None) -> int:
    """Chunks in flight at once: enough to keep every worker busy, few enough that a set of
    any size never sits in memory (a submitted chunk holds its images until collected)."""
    return 2 * getattr(pool, "_max_workers", 2) + 2 if pool is not None else 0


def stream(tasks: Iterable[Callable[[], Any]], submit: Callable[[Callable[[], Any]], Any],
           on_result: Callable[[Any], None], window: int) -> None:
    """Run ``tasks`` in order through ``submit`` (a Future, or a value when done inline)
    with at most ``window`` pending; results reach ``on_result`` in the tasks' order."""
    pending: deque[Any] = deque()
    try:
        for task in tasks:
            pending.append(submit(task))
            while len(pending) > window:
                f = pending.popleft()
                on_result(f.result() if isinstance(f, Future) else f)
        while pending:
            f = pending.popleft()
            on_result(f.result() if isinstance(f, Future) else f)
    finally:
        for f in pending:
            if isinstance(f, Future):
                f.cancel()


def set_bpp(codec: Codec, quality: int, images: Sequence[np.ndarray], pool: Executor | None) -> list[float]:
    """Per-image bpp of a whole set at ``quality``, its chunks spread over ``pool`` (a
    bounded number at a time)."""
    out: list[float] = []
    use_pool = pool is not None and codec.poolable
    params = codec.params.model_dump()

    def chunk(i: int) -> Callable[[], Any]:
        return lambda: (pool.submit(_bpp_worker, codec.name, params, quality, chunk_of(images, i, i + CHUNK)) if use_pool
                        else chunk_bpp(codec, quality, images[i : i + CHUNK]))

    stream((chunk(i) for i in range(0, len(images), CHUNK)), lambda t: t(), out.extend,
           ahead(pool) if use_pool else 0)
    return out


SetJob = tuple[str, dict[str, Any], int | Target, dict[str, Any] | None, bool]


def sets_on_device(device: str, jobs: list[SetJob], images: Sequence[np.ndarray] | ImageFiles) -> list[ChunkResult]:
    """A chunk for several sets of one split (``(codec name, params, setting, identity, keeps
    pixels)`` each), the codecs on ``device``: the images read once, then coded by each in
    turn; decoded pixels go back only for an entry that keeps them."""
    images = materialize(images)
    out = []
    for name, params, setting, identity, keep in jobs:
        result = on_device(device, name, params, setting, images, identity)
        out.append(result if keep else without_pixels(result))
    return out


def _worker_sets(jobs: list[SetJob], images: Sequence[np.ndarray] | ImageFiles) -> list[ChunkResult]:
    """A pool worker's chunk for several sets of one split (``sets_on_device`` on the CPU)."""
    return sets_on_device("cpu", jobs, images)


def submit_chunks(jobs: Sequence[tuple[Codec, int | Target, dict[str, Any] | None, bool]],
                  images: Sequence[np.ndarray], start: int,
                  pool: Executor | None) -> Future[list[ChunkResult]] | list[ChunkResult]:
    """Images ``start:start + CHUNK`` of one split for several sets (``(codec, setting,
    identity, keeps pixels)`` each), read once: to the pool as one task when every codec can
    be pooled (a Future), else coded here."""
    if pool is not None and all(codec.poolable for codec, *_ in jobs):
        spec = [(codec.name, codec.params.model_dump(), setting, identity, keep)
                for codec, setting, identity, keep in jobs]
        return pool.submit(_worker_sets, spec, chunk_of(images, start, start + CHUNK))
    chunk = images[start : start + CHUNK]  # a file-backed split's slice reads its files, once
    out = []
    for codec, setting, identity, keep in jobs:
        result = (transcode_chunk_at_target(codec, setting, chunk, identity) if isinstance(setting, Target)
                  else transcode_chunk(codec, OperatingPoint(setting), chunk, identity))
        out.append(result if keep else without_pixels(result))
    return out


def submit_chunk(codec: Codec, setting: int | Target, images: Sequence[np.ndarray], start: int, pool: Executor | None,
                 identity: dict[str, Any] | None) -> Future[ChunkResult] | ChunkResult:
    """Images ``start:start + CHUNK`` to the pool (a Future; a file-backed split's chunk goes
    as file names and the worker reads them), or transcoded here (a codec that cannot be pooled)."""
    if pool is not None and codec.poolable:
        return pool.submit(_worker, codec.name, codec.params.model_dump(), setting,
                           chunk_of(images, start, start + CHUNK), identity)
    images = images[start : start + CHUNK]
    if isinstance(setting, Target):
        return transcode_chunk_at_target(codec, setting, images, identity)
    return transcode_chunk(codec, OperatingPoint(setting), images, identity)


def make_pool(workers: int) -> Executor | None:
    """A process pool for ``workers`` > 1 (forkserver: the parent holds torch threads).

    Its processes die with this one, SIGKILL included (``bench.lifetime``). On Linux the
    forkserver is signalled when the thread that made the pool exits: make and shut down a
    pool in the same thread (a new pool after that starts a new server)."""
    if workers <= 1:
        return None
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # workers fork from a server that has imported these already: fast starts, and no
        # half-finished import for a Ctrl-C to interrupt; bench.lifetime first, so that the
        # server is tied to this process before the slow imports
        context.set_forkserver_preload(["bench.lifetime", "bench.transcode", "bench.codecs.pillow",
                                        "bench.codecs.heif", "torch"])
        _start_forkserver()
    else:
        context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(os.getpid(),))


def _start_forkserver() -> None:
    """Start the forkserver now, from this thread, with ``bench.lifetime.SERVER_ENV`` in its
    environment (and nobody else's: the resource tracker is started before it)."""
    from multiprocessing import forkserver, resource_tracker  # POSIX only

    resource_tracker.ensure_running()
    before = os.environ.get(SERVER_ENV)
    os.environ[SERVER_ENV] = str(os.getpid())
    try:
        forkserver.ensure_running()
    finally:
        if before is None:
            del os.environ[SERVER_ENV]
        else:
            os.environ[SERVER_ENV] = before


def transcode_set(
    key: str, codec: Codec, point: OperatingPoint | Target, images: Sequence[np.ndarray],
    pool: Executor | None, on_images: Callable[[int], None] = lambda n: None,
) -> Transcoded:
    """Transcode ``images`` (in order) with per-image rate, timing and fidelity, at a
    quality or at a ``Target`` bitrate searched per image; chunks go to ``pool`` (a bounded
    number at a time) when there is one and the codec can be pooled."""
    setting = point if isinstance(point, Target) else point.quality
    results: list[ChunkResult] = []

    def collect(result: ChunkResult) -> None:
        results.append(result)
        on_images(len(result.streams))

    def chunk(i: int) -> Callable[[], Any]:
        return lambda: submit_chunk(codec, setting, images, i, pool, None)

    stream((chunk(i) for i in range(0, len(images), CHUNK)), lambda t: t(), collect,
           ahead(pool) if pool is not None and codec.poolable else 0)

    def cat(field: str) -> list[Any]:
        return [v for r in results for v in getattr(r, field)]

    shapes = image_shapes(images)
    return Transcoded(
        key=key, decoded=cat("decoded"), streams=cat("streams"), bits=np.array(cat("bits"), dtype=np.float64),
        rate_source="estimate" if codec.rate_is_estimate else "bitstream",
        heights=np.array([sh[0] for sh in shapes]), widths=np.array([sh[1] for sh in shapes]),
        psnr=np.array(cat("psnr")), ms_ssim=np.array(cat("ms_ssim"), dtype=np.float64),
        encode_s=np.array(cat("encode_s")), decode_s=np.array(cat("decode_s")),
        qualities=(np.array(cat("qualities"), dtype=np.int64) if results and results[0].qualities is not None
                   else None),
    )
