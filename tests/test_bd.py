"""Bjøntegaard deltas against the `bjontegaard` package and against known answers."""

from __future__ import annotations

import warnings

import bjontegaard
import numpy as np
import pytest

from bench.metrics.bd import bd_metric, bd_rate

# Rate-PSNR points of two codecs on Kodak (bpp, dB), as bench reports them.
ANCHOR = ([0.25, 0.45, 0.75, 1.30], [26.9, 29.4, 31.6, 34.4])
TEST = ([0.20, 0.38, 0.66, 1.15], [27.3, 29.9, 32.4, 35.0])


@pytest.mark.parametrize("method", ["pchip", "akima", "cubic"])
def test_matches_the_bjontegaard_package(method: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_rate = bjontegaard.bd_rate(*ANCHOR, *TEST, method=method)
        ref_psnr = bjontegaard.bd_psnr(*ANCHOR, *TEST, method=method)
    assert bd_rate(*ANCHOR, *TEST, method=method).value == pytest.approx(ref_rate, abs=0.05)
    assert bd_metric(*ANCHOR, *TEST, method=method).value == pytest.approx(ref_psnr, abs=1e-3)


def test_known_answers() -> None:
    rate = np.array([0.1, 0.2, 0.4, 0.8])
    psnr = np.array([28.0, 30.0, 32.0, 34.0])
    # the same curve at half the rate: exactly -50 % rate, +2 dB at equal rate (2 dB per doubling)
    assert bd_rate(rate, psnr, rate / 2, psnr).value == pytest.approx(-50.0, abs=1e-9)
    assert bd_metric(rate, psnr, rate / 2, psnr).value == pytest.approx(2.0, abs=1e-9)
    assert bd_rate(rate, psnr, rate, psnr).value == pytest.approx(0.0, abs=1e-12)


def test_warnings_for_small_overlap_and_non_monotonic_curves() -> None:
    r = bd_rate([0.1, 0.2, 0.4], [28, 30, 32], [0.1, 0.2, 0.4], [31, 33, 35])
    assert r.overlap == pytest.approx(1 / 7) and any("overlap" in w for w in r.warnings)
    r = bd_metric([0.1, 0.2, 0.4, 0.8], [0.5, 0.7, 0.6, 0.8], [0.1, 0.2, 0.4, 0.8], [0.6, 0.7, 0.8, 0.9])
    assert any("not monotonic" in w for w in r.warnings)
    assert np.isnan(bd_rate([0.1, 0.2], [20, 21], [0.1, 0.2], [30, 31]).value)


def test_per_item_deltas_are_averaged() -> None:
    from bench.metrics.bd import bd_per_item

    rate = [0.1, 0.2, 0.4, 0.8]
    psnr = [28.0, 30.0, 32.0, 34.0]
    halved = ([r / 2 for r in rate], psnr)
    # item 1: the test codec needs half the rate (-50 %); item 2: the same curve (0 %)
    got = bd_per_item(bd_rate, [(rate, psnr), (rate, psnr)], [halved, (rate, psnr)])
    assert got.value == pytest.approx(-25.0, abs=1e-9) and got.overlap == pytest.approx(1.0)
    # each item agrees with the bjontegaard package; the mean of theirs is ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.mean([bjontegaard.bd_rate(*ANCHOR, *TEST, method="pchip"),
                       bjontegaard.bd_rate(*TEST, *ANCHOR, method="pchip")])
    assert bd_per_item(bd_rate, [ANCHOR, TEST], [TEST, ANCHOR]).value == pytest.approx(ref, abs=0.05)
    # an item without overlap is left out of the mean and counted in the warnings
    apart = bd_per_item(bd_metric, [(rate, psnr), (rate, psnr)], [halved, ([10, 20], [50, 51])])
    assert apart.value == pytest.approx(2.0) and any("1 of 2 items have no delta" in w for w in apart.warnings)
    with pytest.raises(ValueError, match="same, non-zero number of items"):
        bd_per_item(bd_rate, [ANCHOR], [])


def test_bd_rate_with_a_saturated_metric_keeps_the_lowest_rate_per_value() -> None:
    """Task metrics saturate (100 % agreement at the two highest rates): BD-rate integrates
    over the metric axis, so equal values keep their lowest rate, and the merge is noted."""
    rate = np.array([0.2, 0.4, 0.8, 1.6])
    acc = np.array([0.7, 0.9, 1.0, 1.0])
    got = bd_rate(rate, acc, rate / 2, acc)
    assert got.value == pytest.approx(-50.0, abs=1e-9)
    assert any("1 point(s) with the same metric as a lower rate left out" in w for w in got.warnings)
    assert got.value == pytest.approx(bd_rate(rate[:3], acc[:3], rate[:3] / 2, acc[:3]).value, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2 points with different metric values"):
        bd_rate(rate, [1.0, 1.0, 1.0, 1.0], rate, acc)
