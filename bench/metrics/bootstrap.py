"""Bootstrap confidence intervals over images, paired across codecs and scenarios.

A replicate draws the ``n`` val images with replacement; it is a row of counts (how many
times each image is drawn) from a multinomial. The draws depend on ``n`` alone (a fixed
seed), so every cell tested on the same val split — every codec, operating point and
scenario — sees the same replicates: differences between them are paired, as they share
the images. A metric's replicates are the metric of each resampled set (for a mean over
images, a weighted mean; for mAP or mIoU, the metric recomputed from per-image
statistics); its interval is the percentile interval of those values (Efron & Tibshirani
1993, §13.3). A cell computes its metrics' replicates once, when it is evaluated, and
stores them; intervals at any confidence, and the intervals of Bjøntegaard deltas (one
delta per replicate, from the replicated curves), are then drawn from the store alone.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping

import numpy as np

#: Replicates per metric: enough for a 95 % percentile interval's ends to be stable to
#: about a tenth of its width.
REPLICATES = 1000
#: The draws' seed: fixed, so that every cell on one split is resampled the same way.
SEED = 20_261_201
#: Counts held at once while resampling (replicates × images), bounding the memory.
CHUNK_COUNTS = 4_000_000


def replicate_weights(n: int, replicates: int = REPLICATES) -> Iterator[np.ndarray]:
    """The replicates' draw counts, ``(b, n)`` int32 arrays of at most ``CHUNK_COUNTS``
    entries, in order; each row sums to ``n``. The same for every call with the same ``n``."""
    if n < 1:
        return
    rng = np.random.default_rng([SEED, n])
    per_chunk = max(1, min(replicates, CHUNK_COUNTS // n))
    done = 0
    while done < replicates:
        b = min(per_chunk, replicates - done)
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.int32)
        done += b


def resampled(n: int, resample: Callable[[np.ndarray], Mapping[str, np.ndarray]],
              replicates: int = REPLICATES) -> dict[str, np.ndarray]:
    """Each metric of ``resample(weights)`` over every replicate of ``n`` images, as ``(replicates,)``."""
    parts: dict[str, list[np.ndarray]] = {}
    for weights in replicate_weights(n, replicates):
        for name, values in resample(weights).items():
            parts.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    return {name: np.concatenate(v) for name, v in parts.items()}


def weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per replicate, the mean of per-image ``values`` (NaN ones left out) in the resampled set."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    w = weights[:, ok].astype(np.float64)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, w @ values[ok] / total, math.nan)


def interval(replicates: np.ndarray | list[float] | None, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of a metric's replicates; NaN ends when there are none (or
    when a replicate is undefined: a resampled set without any object of a size range)."""
    if replicates is None:
        return math.nan, math.nan
    values = np.asarray(replicates, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


class ItemScores(ABC):
    """A task's per-image statistics over one val set, from which its metrics are computed
    on the whole set (``metrics``) and on resampled sets (``resample``)."""

    #: The number of images.
    n: int

    @abstractmethod
    def metrics(self) -> dict[str, float]:
        """The metrics of the whole set (what the task's ``score`` returns)."""

    @abstractmethod
    def resample(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric over ``(b, n)`` draw counts: ``(b,)`` values."""

    def replicates(self, replicates: int = REPLICATES) -> dict[str, np.ndarray]:
        return resampled(self.n, self.resample, replicates)


class Scores(dict[str, float]):
    """A cell's metrics, with each metric's bootstrap replicates where the task gives them."""

    def __init__(self, metrics: Mapping[str, float], replicates: Mapping[str, np.ndarray] | None = None) -> None:
        super().__init__(metrics)
        self.replicates = dict(replicates) if replicates is not None else None

    @classmethod
    def of(cls, items: ItemScores) -> Scores:
        return cls(items.metrics(), items.replicates())

    def record(self) -> dict[str, object] | None:
        """What a cell's row keeps: the replicates, 6 significant digits each."""
        if self.replicates is None:
            return None
        return {"replicates": REPLICATES, "seed": SEED,
                "metrics": {m: [None if not math.isfinite(v) else float(f"{v:.6g}") for v in values.tolist()]
                            for m, values in self.replicates.items()}}
