"""Rate control: the codec quality that reaches a target bitrate.

A codec's quality knob is not a rate: equal settings give different bpp on different
images and codecs. To compare codecs at the same bitrates, search each codec's quality
for a target bpp — per image (every image gets its own quality) or per dataset (one
quality for all, the mean of per-image bpp closest to the target).

The search is a bisection over the codec's qualities, which assumes rate grows with
quality, followed by a scan of the qualities around the bracket, because file sizes are
not monotonic in quality everywhere (JPEG's and WebP's are not, by a few bytes, at some
settings). Every encoded point is kept; the chosen one is the point closest to the target
among those within ``tolerance`` of it (relative), else the closest of all, flagged. What
is recorded is the achieved rate of the chosen stream, never the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.codecs.base import Codec, OperatingPoint

#: Qualities scanned on each side of the bisection's bracket.
NEIGHBOURHOOD = 2
#: Highest target a grid may ask for (bpp): 24 is uncompressed RGB.
MAX_TARGET = 24.0


@dataclass(frozen=True)
class Target:
    """An operating point given as a bitrate: the codec's quality is searched for it."""

    bpp: float
    #: ``dataset`` (one quality for the set) or ``image`` (a quality per image).
    mode: str = "dataset"
    tolerance: float = 0.1

    def identity(self) -> dict[str, float | str]:
        """What the coded streams depend on: the tolerance only flags the choice (the
        closest setting is chosen either way), so it is not part of any key."""
        return {"bpp": self.bpp, "mode": self.mode}

    def __str__(self) -> str:
        return f"{self.bpp:g}bpp"


@dataclass(frozen=True)
class RateChoice:
    """The chosen quality, its achieved bpp, and what the search saw."""

    quality: int
    bpp: float
    target: float
    #: Whether the achieved bpp is within the tolerance of the target.
    within_tolerance: bool
    #: Every (quality, bpp) the search encoded, in the order it encoded them.
    tried: tuple[tuple[int, float], ...] = field(default=())

    @property
    def relative_error(self) -> float:
        return (self.bpp - self.target) / self.target


def _choose(points: dict[int, float], target: float, tolerance: float, order: list[int]) -> RateChoice:
    def error(q: int) -> float:
        return abs(points[q] - target) / target

    close = [q for q in points if error(q) <= tolerance]
    pool = close or list(points)
    # closest first; on a tie the lower rate, then the higher quality
    best = min(pool, key=lambda q: (error(q), points[q], -q))
    return RateChoice(best, points[best], target, bool(close), tuple((q, points[q]) for q in order))


def search_quality(rate: Callable[[int], float], qualities: Sequence[int], target: float,
                   tolerance: float = 0.1, descending: bool = False) -> RateChoice:
    """The quality among ``qualities`` whose ``rate(quality)`` (bpp) is closest to ``target``.

    ``rate`` is called at most once per quality (bisection, then the neighbourhood of the
    bracket). Rate mostly rises with quality; ``descending`` for knobs where it falls
    (a quantiser, as BPG's).
    """
    if target <= 0:
        raise ValueError(f"target bpp must be positive (got {target})")
    qs = sorted(set(qualities), reverse=descending)
    if not qs:
        raise ValueError("no qualities to search")
    points: dict[int, float] = {}
    order: list[int] = []

    def at(i: int) -> float:
        q = qs[i]
        if q not in points:
            points[q] = float(rate(q))
            order.append(q)
        return points[q]

    lo, hi = 0, len(qs) - 1
    if at(lo) >= target or at(hi) <= target:  # the target is outside the codec's range
        return _choose(points, target, tolerance, order)
    while hi - lo > 1:  # invariant: rate(lo) < target < rate(hi), where rate is monotonic
        mid = (lo + hi) // 2
        if at(mid) < target:
            lo = mid
        else:
            hi = mid
    for i in range(max(0, lo - NEIGHBOURHOOD), min(len(qs), hi + NEIGHBOURHOOD + 1)):
        at(i)
    return _choose(points, target, tolerance, order)


def search_dataset(rates: Callable[[int], Sequence[float]], qualities: Sequence[int], target: float,
                   tolerance: float = 0.1, descending: bool = False) -> RateChoice:
    """One quality for a whole set: the mean of the per-image bpp ``rates(quality)`` closest
    to ``target`` (each image weighs the same, as bench's ``bpp`` does)."""
    def mean(q: int) -> float:
        values = list(rates(q))
        if not values:
            raise ValueError("no images to measure")
        return sum(values) / len(values)

    return search_quality(mean, qualities, target, tolerance, descending)


# --- with a bench codec ------------------------------------------------------------------


def searchable_qualities(codec: Codec) -> list[int]:
    """The qualities a search may use: the codec's whole range, less those it cannot run
    here (a neural codec picks among the models it has weights for)."""
    lo, hi = codec.quality_range
    return [q for q in range(lo, hi + 1) if codec.unavailable_reason(q) is None]


def bpp_of(codec: Codec, stream: bytes, image: np.ndarray) -> float:
    """The stream's rate per pixel of the image: its real bytes (or a labelled estimate)."""
    return codec.rate_bits(stream) / (image.shape[0] * image.shape[1])


def image_at_target(codec: Codec, image: np.ndarray, target: float, tolerance: float = 0.1,
                    qualities: Sequence[int] | None = None) -> tuple[RateChoice, bytes]:
    """Per image: the quality closest to ``target`` bpp for ``image``, and its stream."""
    streams: dict[int, bytes] = {}

    def rate(q: int) -> float:
        streams[q] = codec.encode([image], OperatingPoint(q))[0]
        return bpp_of(codec, streams[q], image)

    choice = search_quality(rate, qualities if qualities is not None else searchable_qualities(codec), target,
                            tolerance, codec.quality_descending)
    return choice, streams[choice.quality]


def set_at_target(codec: Codec, images: Sequence[np.ndarray], target: float, tolerance: float = 0.1,
                  qualities: Sequence[int] | None = None) -> tuple[RateChoice, list[bytes]]:
    """Per dataset: one quality for all ``images``, its mean bpp closest to ``target``."""
    streams: dict[int, list[bytes]] = {}

    def rates(q: int) -> list[float]:
        streams[q] = codec.encode(list(images), OperatingPoint(q))
        return [bpp_of(codec, s, im) for s, im in zip(streams[q], images)]

    choice = search_dataset(rates, qualities if qualities is not None else searchable_qualities(codec), target,
                            tolerance, codec.quality_descending)
    return choice, streams[choice.quality]
