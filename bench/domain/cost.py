"""What a compressed-domain model saves: parameters, FLOPs and measured latency of
decode-then-infer against inference on the latents (Duan et al. 2023, Tables I–X).

Both paths start from the same bitstreams. Decode-then-infer runs the codec's full decode
(entropy decoding and the synthesis transform g_s) and the pixel model; the compressed
path runs entropy decoding only (``latents``) and the compressed-domain model. FLOPs are
counted by ``torch.utils.flop_counter`` (multiply–adds × 2) on one batch and given per
image; latency is the best of ``repeats`` timed passes on the run's device, per image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.domain.train import latent_set
from bench.models.base import Model


def count_parameters(*nets: nn.Module) -> int:
    return sum(p.numel() for net in nets for p in net.parameters())


def count_flops(fn: Callable[[], Any]) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    return int(counter.get_total_flops())


def best_time(fn: Callable[[], Any], device: str, repeats: int = 3) -> float:
    """Seconds of the fastest of ``repeats`` calls (after one warm-up call)."""
    def once() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    once()
    return min(once() for _ in range(repeats))


def cost_record(task: Any, codec: Any, quality: int, streams: Sequence[bytes], pixel: nn.Module, model: Model,
                latent_net: nn.Module, inputs: Sequence[str], device: str) -> dict[str, float]:
    """Parameters, GFLOPs and ms per image of both paths on ``streams`` (one batch)."""
    from bench.tasks import as_task

    task = as_task(task)
    pixel.eval()
    latent_net.eval()
    n = len(streams)
    decoded = codec.decode(streams)
    lat, _ = latent_set(codec.latents(streams), inputs)
    x = lat.batch(range(n)).to(device)
    sizes = lat.sizes
    decode_s = best_time(lambda: codec.decode(streams), device)
    entropy_s = best_time(lambda: codec.latents(streams), device)
    pixel_s = best_time(lambda: task.forward(pixel, model, decoded, device), device)
    latent_s = best_time(lambda: latent_net(x, sizes), device)
    synthesis = codec.synthesis(quality)
    y = codec.latents(streams[:1])[0].y_hat[None].to(device)
    synthesis_flops = count_flops(lambda: synthesis(y))
    pixel_flops = count_flops(lambda: task.forward(pixel, model, decoded, device)) / n
    latent_flops = count_flops(lambda: latent_net(x, sizes)) / n
    decode_infer = (decode_s + pixel_s) / n
    compressed = (entropy_s + latent_s) / n
    return {
        "params_decode_infer": count_parameters(synthesis, pixel),
        "params_compressed": count_parameters(latent_net),
        "gflops_decode_infer": (synthesis_flops + pixel_flops) / 1e9,
        "gflops_compressed": latent_flops / 1e9,
        "ms_entropy_decode": 1e3 * entropy_s / n,
        "ms_synthesis": 1e3 * max(decode_s - entropy_s, 0.0) / n,
        "ms_pixel_model": 1e3 * pixel_s / n,
        "ms_latent_model": 1e3 * latent_s / n,
        "ms_decode_infer": 1e3 * decode_infer,
        "ms_compressed": 1e3 * compressed,
        "speedup": decode_infer / compressed,
        "speedup_without_entropy_decoding": (max(decode_s - entropy_s, 0.0) + pixel_s) / latent_s,
        "cost_images": n,
    }

