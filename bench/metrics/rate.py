"""Rate from the real bytes of a bitstream."""

from __future__ import annotations

from collections.abc import Sequence


def bpp(stream: bytes, height: int, width: int) -> float:
    """Bits per pixel of the original image: ``8 * len(stream) / (height * width)``."""
    return 8.0 * len(stream) / (height * width)


def mean_bpp(bits: Sequence[int], pixels: Sequence[int]) -> float:
    """Mean of the per-image bpp (every image weighs the same)."""
    return sum(b / p for b, p in zip(bits, pixels, strict=True)) / len(bits)


def total_bpp(bits: Sequence[int], pixels: Sequence[int]) -> float:
    """Total bits over total pixels (large images weigh more)."""
    return sum(bits) / sum(pixels)
