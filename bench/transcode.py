"""The transcode stage: each (image set, codec, operating point) encoded and decoded once.

Traditional codecs fan out over a process pool, one chunk of images per task; each image
is timed on its own, and its fidelity is measured where it was decoded.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from bench.cache import Transcoded
from bench.codecs import CODECS, Codec, OperatingPoint
from bench.errors import CodecError
from bench.metrics.fidelity import ms_ssim, psnr

CHUNK = 32


class ChunkResult(NamedTuple):
    streams: list[bytes]
    decoded: list[np.ndarray]
    encode_s: list[float]
    decode_s: list[float]
    psnr: list[float]
    ms_ssim: list[float]


def transcode_chunk(codec: Codec, point: OperatingPoint, images: Sequence[np.ndarray]) -> ChunkResult:
    """Encode and decode each image on its own, timing both, and measure its fidelity."""
    out = ChunkResult([], [], [], [], [], [])
    for im in images:
        t0 = time.perf_counter()
        (stream,) = codec.encode([im], point)
        t1 = time.perf_counter()
        (rec,) = codec.decode([stream])
        t2 = time.perf_counter()
        if rec.shape != im.shape:
            raise CodecError(f"{codec.name} decoded a {rec.shape} image from a {im.shape} original")
        out.streams.append(stream)
        out.decoded.append(rec)
        out.encode_s.append(t1 - t0)
        out.decode_s.append(t2 - t1)
        out.psnr.append(psnr(im, rec))
        out.ms_ssim.append(ms_ssim(im, rec))
    return out


def _init_worker() -> None:
    # one thread per process: the pool already uses every core
    import torch

    torch.set_num_threads(1)


def _worker(name: str, params: dict[str, Any], quality: int, images: Sequence[np.ndarray]) -> ChunkResult:
    cls = CODECS.get(name)
    return transcode_chunk(cls(cls.Params(**params)), OperatingPoint(quality), images)


def make_pool(workers: int) -> Executor | None:
    """A process pool for ``workers`` > 1 (forkserver: the parent holds torch threads)."""
    if workers <= 1:
        return None
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=_init_worker)


def transcode_set(
    key: str, codec: Codec, point: OperatingPoint, images: Sequence[np.ndarray],
    pool: Executor | None, on_images: Callable[[int], None] = lambda n: None,
) -> Transcoded:
    """Transcode ``images`` (in order) with per-image rate, timing and fidelity."""
    chunks = [images[i : i + CHUNK] for i in range(0, len(images), CHUNK)]
    results: list[ChunkResult] = []
    if pool is None or codec.kind != "traditional":
        for chunk in chunks:
            results.append(transcode_chunk(codec, point, chunk))
            on_images(len(chunk))
    else:
        params = codec.params.model_dump()
        futures = [pool.submit(_worker, codec.name, params, point.quality, chunk) for chunk in chunks]
        for fut, chunk in zip(futures, chunks):
            results.append(fut.result())
            on_images(len(chunk))

    def cat(field: str) -> list[Any]:
        return [v for r in results for v in getattr(r, field)]

    return Transcoded(
        key=key, decoded=cat("decoded"), streams=cat("streams"),
        heights=np.array([im.shape[0] for im in images]), widths=np.array([im.shape[1] for im in images]),
        psnr=np.array(cat("psnr")), ms_ssim=np.array(cat("ms_ssim"), dtype=np.float64),
        encode_s=np.array(cat("encode_s")), decode_s=np.array(cat("decode_s")),
    )
