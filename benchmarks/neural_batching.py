"""Batched neural transcoding against CompressAI's one-image-at-a-time loop.

Sixteen 256x256 Kodak crops go through a scale hyperprior at the zoo's size for quality 3
(N=128, M=192), untrained, twice per round: once as ``compressai.utils.eval_model`` does it
(``model.compress(x)`` then ``model.decompress(...)`` per image) and once through
``bench``'s codec (``encode`` then ``decode`` of the whole list: transforms batched,
entropy coding per image, header and uint8 conversion included). Both use the same
model, whose analysis output is scaled up so that the rate is that of a trained model
(``--embedded`` uses the shipped, smaller N=M=64 ``hyperprior-q3`` weights instead). Rounds
alternate the paths; the best round of each is reported, with the throughput ratio, once
per torch thread count (default: 1 and torch's own). A third path splits the batched work
over a pool of single-thread processes (``--processes``, default 2), as a runner could.

    python benchmarks/neural_batching.py [--rounds 3] [--threads 1,2] [--processes 2] [--embedded]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from compressai.models import ScaleHyperprior

from bench.codecs.base import OperatingPoint
from bench.codecs.neural import WEIGHTS_DIR, CompressAICodec, _to_tensor, load_embedded
from bench.images import load_image

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"
QUALITY, COUNT, SIDE = 3, 16, 256
#: Untrained analysis output scaled so that the rate is in the range of trained models.
SCALE = 4


def crops() -> list[np.ndarray]:
    out = []
    for path in sorted(KODAK.glob("kodim*.png"))[:COUNT]:
        im = load_image(path)
        top, left = (im.shape[0] - SIDE) // 2, (im.shape[1] - SIDE) // 2
        out.append(np.ascontiguousarray(im[top : top + SIDE, left : left + SIDE]))
    return out


def model(embedded: bool) -> tuple[ScaleHyperprior, str]:
    if embedded:
        net, wid = load_embedded("hyperprior", QUALITY)
        return net.eval(), f"embedded weights ({wid}, N={net.N}, M={net.M})"
    torch.manual_seed(0)
    net = ScaleHyperprior(128, 192)
    with torch.no_grad():
        net.g_a[-1].weight.mul_(SCALE)
        net.g_a[-1].bias.mul_(SCALE)
    net.update(force=True)
    return net.eval(), f"untrained weights, N=128, M=192, g_a output scaled x{SCALE}"


def compressai_loop(net: ScaleHyperprior, images: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    with torch.no_grad():
        for im in images:
            x = _to_tensor(im, SIDE, SIDE)[None]
            coded = net.compress(x)
            x_hat = net.decompress(coded["strings"], coded["shape"])["x_hat"]
            out.append(x_hat[0].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    return out


_WORKER: dict[str, Any] = {}


def _init_worker(state: dict[str, torch.Tensor]) -> None:
    torch.set_num_threads(1)
    net = ScaleHyperprior.from_state_dict(state).eval()
    _WORKER["codec"] = CompressAICodec.from_model("bmshj2018-hyperprior", net, QUALITY)


def _transcode_chunk(chunk: list[np.ndarray]) -> list[np.ndarray]:
    codec = _WORKER["codec"]
    return codec.decode(codec.encode(chunk, OperatingPoint(QUALITY)))


def _pooled(pool: Executor, images: list[np.ndarray], parts: int) -> list[np.ndarray]:
    chunks = [images[i::parts] for i in range(parts)]
    return [im for done in pool.map(_transcode_chunk, chunks) for im in done]


def report(times: dict[str, list[float]], baseline: str) -> None:
    for name, ts in times.items():
        ratio = min(times[baseline]) / min(ts)
        print(f"{name:34s} best {min(ts):6.2f} s  median {statistics.median(ts):6.2f} s  "
              f"{COUNT / min(ts):5.2f} images/s  {ratio:4.2f}x  (rounds: {', '.join(f'{t:.2f}' for t in ts)})")


def measure(net: ScaleHyperprior, images: list[np.ndarray], rounds: int, pool: Executor | None, processes: int) -> None:
    codec = CompressAICodec.from_model("bmshj2018-hyperprior", net, QUALITY)
    point = OperatingPoint(QUALITY)
    paths = {
        "compressai loop": lambda: compressai_loop(net, images),
        "bench batched": lambda: codec.decode(codec.encode(images, point)),
    }
    if pool is not None:
        paths[f"bench batched, {processes} procs x 1 thread"] = lambda: _pooled(pool, images, processes)
    for run in paths.values():  # warm-up: oneDNN builds its kernels per shape
        run()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, run in paths.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    streams = codec.encode(images, point)
    bpp = 8 * sum(len(s) for s in streams) / (COUNT * SIDE * SIDE)
    diff = max(int(np.abs(a.astype(int) - b.astype(int)).max())
               for a, b in zip(paths["bench batched"](), compressai_loop(net, images)))
    print(f"-- {torch.get_num_threads()} torch thread(s) in this process, max_batch {codec.batch_limit()}; "
          f"rate {bpp:.3f} bpp incl. headers; largest pixel difference batched vs loop: {diff}")
    report(times, "compressai loop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}", help="torch thread counts to try")
    parser.add_argument("--processes", type=int, default=2, help="single-thread worker processes (0: none)")
    parser.add_argument("--embedded", action="store_true", help=f"use {WEIGHTS_DIR}/hyperprior-q{QUALITY}.pt")
    args = parser.parse_args()
    images = crops()
    net, what = model(args.embedded)
    print(f"{COUNT} Kodak crops {SIDE}x{SIDE}, bmshj2018-hyperprior q{QUALITY}, {what}")
    pool = None
    if args.processes > 1:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(args.processes, mp_context=multiprocessing.get_context(method),
                                   initializer=_init_worker, initargs=(net.state_dict(),))
    try:
        for threads in dict.fromkeys(int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            measure(net, images, args.rounds, pool, args.processes)
    finally:
        if pool is not None:
            pool.shutdown()


if __name__ == "__main__":
    main()
