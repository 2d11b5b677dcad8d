"""Bjøntegaard deltas: BD-rate and BD-metric (BD-PSNR, BD-accuracy, BD-mAP, ...).

The JVET convention: interpolate with PCHIP (Akima and the original cubic fit are
selectable), log10 of the rate, integrate over the overlapping interval only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.interpolate import Akima1DInterpolator, PchipInterpolator

Method = Literal["pchip", "akima", "cubic"]
MIN_OVERLAP = 0.75


@dataclass(frozen=True)
class BDResult:
    """A Bjøntegaard delta with what a reader must know to trust it."""

    value: float
    #: Overlap of the two curves on the integration axis, relative to their joint extent.
    overlap: float
    warnings: tuple[str, ...] = field(default=())


class _Cubic:
    """Bjøntegaard's original third-order polynomial fit."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.antiderivative = np.polyint(np.polyfit(x, y, 3))

    def integrate(self, a: float, b: float) -> float:
        return float(np.polyval(self.antiderivative, b) - np.polyval(self.antiderivative, a))


def _interpolator(x: np.ndarray, y: np.ndarray, method: Method):
    if method == "pchip":
        return PchipInterpolator(x, y)
    if method == "akima":
        return Akima1DInterpolator(x, y)
    if method == "cubic":
        return _Cubic(x, y)
    raise ValueError(f"unknown interpolation {method!r}: expected pchip, akima or cubic")


def _curve(rate: Sequence[float], metric: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    r, m = np.asarray(rate, dtype=np.float64), np.asarray(metric, dtype=np.float64)
    if r.shape != m.shape or r.ndim != 1:
        raise ValueError(f"{name}: rate and metric need the same number of points")
    if len(r) < 2 or (r <= 0).any() or not np.isfinite(r).all() or not np.isfinite(m).all():
        raise ValueError(f"{name}: needs at least 2 points with positive, finite rates and finite metrics")
    order = np.argsort(r)
    r, m = r[order], m[order]
    notes = []
    if (np.diff(m) <= 0).any():
        notes.append(f"{name}: metric is not monotonic in rate; the delta is unreliable")
    return r, m, notes


def _delta(x_a: np.ndarray, y_a: np.ndarray, x_t: np.ndarray, y_t: np.ndarray, method: Method,
           notes: list[str]) -> BDResult:
    lo, hi = max(x_a.min(), x_t.min()), min(x_a.max(), x_t.max())
    extent = max(x_a.max(), x_t.max()) - min(x_a.min(), x_t.min())
    overlap = max(hi - lo, 0.0) / extent if extent > 0 else 0.0
    if overlap == 0:
        return BDResult(math.nan, 0.0, tuple(notes + ["curves do not overlap"]))
    if overlap < MIN_OVERLAP:
        notes.append(f"curves overlap over {overlap:.0%} of their extent only (< {MIN_OVERLAP:.0%})")
    fa, ft = _interpolator(x_a, y_a, method), _interpolator(x_t, y_t, method)
    avg = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    return BDResult(float(avg), overlap, tuple(notes))


def _by_metric(metric: np.ndarray, rate: np.ndarray, name: str, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The curve as log-rate over the metric, for BD-rate's integral. Points with the same
    metric (a task metric that saturates: 100 % agreement at two rates) keep the lowest rate,
    the one a codec would be run at, and the merge is noted."""
    order = np.lexsort((rate, metric))
    metric, rate = metric[order], rate[order]
    keep = np.concatenate([[True], np.diff(metric) > 0])
    if not keep.all():
        notes.append(f"{name}: {int((~keep).sum())} point(s) with the same metric as a lower rate left out of BD-rate")
    if keep.sum() < 2:
        raise ValueError(f"{name}: needs at least 2 points with different metric values for BD-rate")
    return metric[keep], np.log10(rate[keep])


def bd_rate(anchor_rate: Sequence[float], anchor_metric: Sequence[float], test_rate: Sequence[float],
            test_metric: Sequence[float], method: Method = "pchip") -> BDResult:
    """Average rate difference of ``test`` against ``anchor`` at equal metric, in percent
    (negative: the test codec needs less rate)."""
    ra, ma, na = _curve(anchor_rate, anchor_metric, "anchor")
    rt, mt, nt = _curve(test_rate, test_metric, "test")
    (ma, la), (mt, lt) = _by_metric(ma, ra, "anchor", na), _by_metric(mt, rt, "test", nt)
    d = _delta(ma, la, mt, lt, method, na + nt)
    return BDResult((10**d.value - 1) * 100 if math.isfinite(d.value) else math.nan, d.overlap, d.warnings)


def bd_metric(anchor_rate: Sequence[float], anchor_metric: Sequence[float], test_rate: Sequence[float],
              test_metric: Sequence[float], method: Method = "pchip") -> BDResult:
    """Average metric difference of ``test`` against ``anchor`` at equal rate (BD-PSNR,
    BD-accuracy, ...), in the metric's own unit."""
    ra, ma, na = _curve(anchor_rate, anchor_metric, "anchor")
    rt, mt, nt = _curve(test_rate, test_metric, "test")
    return _delta(np.log10(ra), ma, np.log10(rt), mt, method, na + nt)


Curve = tuple[Sequence[float], Sequence[float]]


def bd_per_item(delta: Callable[..., BDResult], anchor: Sequence[Curve], test: Sequence[Curve],
                method: Method = "pchip") -> BDResult:
    """A Bjøntegaard delta per item (an image's or a class's own rate–metric curves),
    averaged: the mean of the items' finite deltas, the mean overlap, and the items'
    warnings counted. ``delta`` is :func:`bd_rate` or :func:`bd_metric`."""
    if len(anchor) != len(test) or not anchor:
        raise ValueError(f"per-item deltas need the same, non-zero number of items ({len(anchor)} and {len(test)})")
    results = [delta(*a, *t, method=method) for a, t in zip(anchor, test)]
    finite = [r.value for r in results if math.isfinite(r.value)]
    notes: dict[str, int] = {}
    for r in results:
        for w in r.warnings:
            key = w.split(" over ")[0] if "overlap" in w else w
            notes[key] = notes.get(key, 0) + 1
    warnings = [f"{n} of {len(results)} items: {w}" for w, n in notes.items()]
    if len(finite) < len(results):
        warnings.append(f"{len(results) - len(finite)} of {len(results)} items have no delta (no overlap)")
    value = float(np.mean(finite)) if finite else math.nan
    return BDResult(value, float(np.mean([r.overlap for r in results])), tuple(warnings))


# --- many curves at once: the deltas of bootstrap replicates ------------------------------

def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """PCHIP's derivatives at the knots of each row, as ``scipy``'s ``PchipInterpolator``
    sets them (Fritsch–Carlson; its one-sided three-point ends)."""
    h = np.diff(x, axis=1)
    m = np.diff(y, axis=1) / h
    if x.shape[1] == 2:
        return np.concatenate([m, m], axis=1)
    d = np.zeros_like(y)
    w1, w2 = 2 * h[:, 1:] + h[:, :-1], h[:, 1:] + 2 * h[:, :-1]
    flat = (np.sign(m[:, 1:]) != np.sign(m[:, :-1])) | (m[:, 1:] == 0) | (m[:, :-1] == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 / m[:, :-1] + w2 / m[:, 1:]) / (w1 + w2)
        d[:, 1:-1] = np.where(flat, 0.0, 1.0 / harmonic)

    def edge(h0: np.ndarray, h1: np.ndarray, m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        e = np.where(np.sign(e) != np.sign(m0), 0.0, e)
        return np.where((np.sign(m0) != np.sign(m1)) & (np.abs(e) > 3 * np.abs(m0)), 3 * m0, e)

    d[:, 0] = edge(h[:, 0], h[:, 1], m[:, 0], m[:, 1])
    d[:, -1] = edge(h[:, -1], h[:, -2], m[:, -1], m[:, -2])
    return d


def _pchip_integrals(x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Each row's PCHIP integral from ``lo`` to ``hi`` (within the row's knots)."""
    d = _pchip_slopes(x, y)
    h = np.diff(x, axis=1)
    m = np.diff(y, axis=1) / h
    c2 = (3 * m - 2 * d[:, :-1] - d[:, 1:]) / h
    c3 = (d[:, :-1] + d[:, 1:] - 2 * m) / h**2
    a = np.clip(lo[:, None], x[:, :-1], x[:, 1:]) - x[:, :-1]
    b = np.clip(hi[:, None], x[:, :-1], x[:, 1:]) - x[:, :-1]

    def antiderivative(t: np.ndarray) -> np.ndarray:
        return y[:, :-1] * t + d[:, :-1] * t**2 / 2 + c2 * t**3 / 3 + c3 * t**4 / 4

    return (antiderivative(b) - antiderivative(a)).sum(axis=1)


def _sorted_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by ``x``; and which rows have strictly increasing, finite ``x``."""
    order = np.argsort(x, axis=1, kind="stable")
    x, y = np.take_along_axis(x, order, 1), np.take_along_axis(y, order, 1)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1) & (np.diff(x, axis=1) > 0).all(axis=1)
    return x, y, ok


def _batch_delta(x_a: np.ndarray, y_a: np.ndarray, x_t: np.ndarray, y_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_delta`` (PCHIP) of each row pair: the mean difference over the overlap (NaN where
    the curves do not overlap), and which rows are regular (finite, strictly increasing
    once sorted): the others are left to the one-at-a-time functions."""
    x_a, y_a, ok_a = _sorted_rows(x_a, y_a)
    x_t, y_t, ok_t = _sorted_rows(x_t, y_t)
    lo, hi = np.maximum(x_a[:, 0], x_t[:, 0]), np.minimum(x_a[:, -1], x_t[:, -1])
    regular = ok_a & ok_t
    ok = regular & (hi > lo)
    out = np.full(len(x_a), math.nan)
    if ok.any():
        ia = _pchip_integrals(x_a[ok], y_a[ok], lo[ok], hi[ok])
        it = _pchip_integrals(x_t[ok], y_t[ok], lo[ok], hi[ok])
        out[ok] = (it - ia) / (hi[ok] - lo[ok])
    return out, regular


def bd_batch(anchor_rate: np.ndarray, anchor_metric: np.ndarray, test_rate: np.ndarray, test_metric: np.ndarray,
             method: Method = "pchip") -> tuple[np.ndarray, np.ndarray]:
    """BD-rate (%) and BD-metric of many curve pairs at once: row ``b`` of each ``(B, k)``
    array is one curve's points (the replicates of a bootstrap). Equal to ``bd_rate`` and
    ``bd_metric`` row by row; a row those would refuse (too few distinct points, no
    overlap) or that needs their special handling (two points with the same metric,
    which ``bd_rate`` merges) is computed by them one at a time, NaN where they refuse."""
    ra, ma = np.asarray(anchor_rate, dtype=np.float64), np.asarray(anchor_metric, dtype=np.float64)
    rt, mt = np.asarray(test_rate, dtype=np.float64), np.asarray(test_metric, dtype=np.float64)
    n = len(ra)
    rate, metric = np.full(n, math.nan), np.full(n, math.nan)
    fast = np.zeros(n, bool)
    if method == "pchip" and min(ra.shape[1], rt.shape[1]) >= 2 and (ra > 0).all() and (rt > 0).all():
        with np.errstate(divide="ignore", invalid="ignore"):
            log_rate, ok_rate = _batch_delta(ma, np.log10(ra), mt, np.log10(rt))
            bd_m, ok_metric = _batch_delta(np.log10(ra), ma, np.log10(rt), mt)
        fast = ok_rate & ok_metric
        rate[fast], metric[fast] = (10 ** log_rate[fast] - 1) * 100, bd_m[fast]  # NaN: no overlap
    for b in np.flatnonzero(~fast):
        for out, delta in ((rate, bd_rate), (metric, bd_metric)):
            try:
                out[b] = delta(ra[b], ma[b], rt[b], mt[b], method=method).value
            except ValueError:
                out[b] = math.nan
    return rate, metric
