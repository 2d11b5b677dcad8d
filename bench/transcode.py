"""The transcode stage: each (image set, codec, operating point) encoded and decoded once.

Traditional codecs fan out over a process pool, one chunk of images per task; each image
is timed on its own. Fidelity is measured in the parent on the 8-bit reconstructions.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np

from bench.cache import Transcoded
from bench.codecs import CODECS, Codec, OperatingPoint
from bench.errors import CodecError
from bench.metrics.fidelity import ms_ssim, psnr

CHUNK = 32

ChunkResult = tuple[list[bytes], list[np.ndarray], list[float], list[float]]


def transcode_chunk(codec: Codec, point: OperatingPoint, images: Sequence[np.ndarray]) -> ChunkResult:
    """Encode and decode each image on its own, timing both."""
    streams, decoded, enc_s, dec_s = [], [], [], []
    for im in images:
        t0 = time.perf_counter()
        (stream,) = codec.encode([im], point)
        t1 = time.perf_counter()
        (rec,) = codec.decode([stream])
        t2 = time.perf_counter()
        if rec.shape != im.shape:
            raise CodecError(f"{codec.name} decoded a {rec.shape} image from a {im.shape} original")
        streams.append(stream)
        decoded.append(rec)
        enc_s.append(t1 - t0)
        dec_s.append(t2 - t1)
    return streams, decoded, enc_s, dec_s


def _worker(name: str, params: dict[str, Any], quality: int, images: Sequence[np.ndarray]) -> ChunkResult:
    cls = CODECS.get(name)
    return transcode_chunk(cls(cls.Params(**params)), OperatingPoint(quality), images)


def make_pool(workers: int) -> Executor | None:
    """A process pool for ``workers`` > 1 (forkserver: the parent holds torch threads)."""
    if workers <= 1:
        return None
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def transcode_set(
    key: str, codec: Codec, point: OperatingPoint, images: Sequence[np.ndarray],
    pool: Executor | None, on_images: Callable[[int], None] = lambda n: None,
) -> Transcoded:
    """Transcode ``images`` and measure PSNR / MS-SSIM of every reconstruction."""
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
    streams = [s for r in results for s in r[0]]
    decoded = [d for r in results for d in r[1]]
    return Transcoded(
        key=key, decoded=decoded, streams=streams,
        heights=np.array([im.shape[0] for im in images]), widths=np.array([im.shape[1] for im in images]),
        psnr=np.array([psnr(a, b) for a, b in zip(images, decoded)]),
        ms_ssim=np.array([ms_ssim(a, b) for a, b in zip(images, decoded)]),
        encode_s=np.array([t for r in results for t in r[2]]),
        decode_s=np.array([t for r in results for t in r[3]]),
    )
