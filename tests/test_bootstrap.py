"""Bootstrap intervals over images: known answers, pairing, the deltas' intervals, the bands."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from bench.metrics.bd import bd_batch, bd_metric, bd_rate
from bench.metrics.bootstrap import REPLICATES, interval, replicate_weights, resampled, weighted_means
from bench.metrics.segmentation import ImageConfusions, confusion_matrix, segmentation_scores
from bench.report.leaderboard import leaderboard_frame
from bench.report.ranking import ranking_frame
from bench.tasks.classification import Hits

matplotlib.use("Agg")


def test_replicates_are_draws_with_replacement_the_same_for_every_call() -> None:
    chunks = list(replicate_weights(300))
    weights = np.concatenate(chunks)
    assert weights.shape == (REPLICATES, 300) and (weights.sum(axis=1) == 300).all()
    assert (np.concatenate(list(replicate_weights(300))) == weights).all()  # paired: same draws
    # each image is drawn once per replicate on average, about 37 % of images not at all
    assert abs(weights.mean() - 1) < 1e-12 and abs((weights == 0).mean() - math.exp(-1)) < 0.01


def test_a_hit_rate_s_interval_is_the_binomial_one() -> None:
    """For a proportion p of n images, the 95 % interval is about p ± 1.96 √(p(1−p)/n)."""
    n, p = 400, 0.7
    flags = np.zeros(n, bool)
    flags[: int(p * n)] = True
    hits = Hits({"top1": flags})
    assert hits.metrics() == {"top1": p}
    low, high = interval(hits.replicates()["top1"])
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    assert low < p < high
    assert abs((high - low) / 2 - half) < 0.1 * half
    assert abs((low + high) / 2 - p) < 0.2 * half


def test_a_mean_s_interval_is_the_normal_one() -> None:
    values = np.random.default_rng(3).normal(30.0, 2.0, 500)
    reps = resampled(len(values), lambda w: {"psnr": weighted_means(values, w)})["psnr"]
    low, high = interval(reps)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert abs((high - low) / 2 - half) < 0.1 * half
    # a NaN value (MS-SSIM of a small image) is left out of every mean, not propagated
    values[7] = np.nan
    assert np.isfinite(resampled(len(values), lambda w: {"m": weighted_means(values, w)})["m"]).all()


def test_an_undefined_replicate_gives_no_interval() -> None:
    assert all(math.isnan(v) for v in interval([0.1, math.nan, 0.3]))
    assert all(math.isnan(v) for v in interval(None))


def test_segmentation_replicates_are_the_metric_of_the_resampled_set() -> None:
    rng = np.random.default_rng(0)
    truth = [rng.integers(0, 3, (8, 8)) for _ in range(5)]
    preds = [np.where(rng.random((8, 8)) < 0.7, t, rng.integers(0, 3, (8, 8))) for t in truth]
    confusions = [confusion_matrix(t, p, 3) for t, p in zip(truth, preds)]
    items = ImageConfusions([ImageConfusions.row(c) for c in confusions], 3)
    assert items.metrics() == segmentation_scores(sum(confusions))
    weights = np.array([[1, 1, 1, 1, 1], [2, 0, 0, 3, 0], [0, 0, 5, 0, 0]])
    got = items.resample(weights)
    for b, w in enumerate(weights):
        want = segmentation_scores(sum(k * c for k, c in zip(w, confusions)))
        assert got["mIoU"][b] == pytest.approx(want["mIoU"], abs=1e-12)
        assert got["pixel_acc"][b] == pytest.approx(want["pixel_acc"], abs=1e-12)


def test_many_deltas_at_once_equal_the_one_at_a_time_functions() -> None:
    rng = np.random.default_rng(1)
    b = 400
    for k_a, k_t in [(2, 2), (3, 4), (6, 5)]:
        ra = np.sort(rng.uniform(0.1, 2, (b, k_a)), 1)
        ma = 3 * np.log(ra) + 30 + rng.normal(0, 0.3, (b, k_a))  # noisy: some not monotonic
        rt = np.sort(rng.uniform(0.1, 2, (b, k_t)), 1)
        mt = 3 * np.log(rt) + 31 + rng.normal(0, 0.3, (b, k_t))
        ma[0, 1] = ma[0, 0]  # two points with one metric: bd_rate merges them
        rate, metric = bd_batch(ra, ma, rt, mt)
        for i in range(b):
            for got, delta in ((rate[i], bd_rate), (metric[i], bd_metric)):
                try:
                    want = delta(ra[i], ma[i], rt[i], mt[i]).value
                except ValueError:
                    want = math.nan
                assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-9)


def _fidelity_row(codec: str, quality: int, bpp: np.ndarray, psnr: np.ndarray) -> dict:
    """A fidelity cell's row as the store holds it (per-image values in its record)."""
    return {"key": f"{codec}-{quality}", "task": "fidelity", "model": "", "dataset": "d", "scenario": "B",
            "codec": codec, "quality": quality, "seed": 0, "target_bpp": None, "bpp": float(bpp.mean()),
            "bpp_total": float(bpp.mean()), "psnr": float(psnr.mean()), "ms_ssim": None, "rate_source": "bitstream",
            "n_images": len(bpp), "metrics": {"psnr": float(psnr.mean())},
            "record": {"per_image": {"bpp": bpp.tolist(), "psnr": psnr.tolist(), "ms_ssim": [None] * len(bpp)}}}


def test_the_ranking_s_intervals_are_paired_and_mark_significance() -> None:
    """A codec 1 dB better on every image than the anchor, at the same rates, is 1 dB better
    in every replicate (its interval is a point: the draws are paired); one equal to the
    anchor is not significantly different; one 0.01 dB better on half the images and 0.01
    worse on the other half is not either."""
    rng = np.random.default_rng(2)
    n = 60
    rows = []
    for q, scale in ((10, 0.3), (50, 0.8), (90, 2.0)):
        bpp = scale * rng.uniform(0.8, 1.2, n)
        psnr = 25 + 4 * np.log2(bpp / 0.3) + rng.normal(0, 1.5, n)
        jitter = np.where(np.arange(n) % 2 == 0, 0.01, -0.01)
        rows += [_fidelity_row("anchor", q, bpp, psnr), _fidelity_row("better", q, bpp, psnr + 1.0),
                 _fidelity_row("same", q, bpp, psnr.copy()), _fidelity_row("noise", q, bpp, psnr + jitter)]
    grid = {"codecs": [{"codec": "anchor"}], "analysis": {"anchor": "anchor"}}
    ranking = ranking_frame(rows, grid)
    psnr = ranking[ranking.metric == "psnr"].set_index("codec")
    better = psnr.loc["better"]
    assert better.bd_metric == pytest.approx(1.0, abs=1e-9)
    assert better.bd_metric_ci_low == pytest.approx(1.0, abs=1e-9) and better.bd_metric_ci_high == pytest.approx(1.0, abs=1e-9)
    assert better.bd_rate_ci_high < 0 and bool(better.significant)
    assert not bool(psnr.loc["same"].significant) and psnr.loc["same"].bd_rate_ci_low == 0
    noise = psnr.loc["noise"]
    assert noise.bd_rate_ci_low < 0 < noise.bd_rate_ci_high and not bool(noise.significant)
    assert pd.isna(psnr.loc["anchor"].significant)
    # the leaderboard's intervals hold each point's value
    board = leaderboard_frame(rows)
    assert ((board.ci_low <= board.value) & (board.value <= board.ci_high)).all()


def test_the_rate_accuracy_plot_draws_the_intervals_as_bands(tmp_path) -> None:
    from bench.report.plots import rate_accuracy

    n = 50
    rng = np.random.default_rng(4)
    rows = []
    for q, bpp in ((10, 0.2), (50, 0.6)):
        for scenario, top1 in (("B", 0.6), ("C", 0.8)):
            reps = np.clip(top1 + rng.normal(0, 0.03, REPLICATES), 0, 1)
            rows.append({"key": f"{scenario}{q}", "task": "classification", "model": "m", "dataset": "d",
                         "scenario": scenario, "codec": "jpeg", "quality": q, "seed": 0, "target_bpp": None,
                         "bpp": bpp, "bpp_total": bpp, "psnr": 30.0, "ms_ssim": None, "rate_source": "bitstream",
                         "n_images": n, "metrics": {"top1": top1},
                         "record": {"bootstrap": {"metrics": {"top1": reps.tolist()}}}})
    df = leaderboard_frame(rows)
    assert df.ci_low.notna().all() and (df.ci_low < df.value).all()
    import matplotlib.pyplot as plt

    shown = []
    original = plt.Axes.fill_between

    def spy(self, x, y1, y2=0, **kw):  # the band of each curve, as drawn
        shown.append((list(x), list(y1), list(y2)))
        return original(self, x, y1, y2, **kw)

    plt.Axes.fill_between = spy
    try:
        path = rate_accuracy(df, "classification", "m", "d", tmp_path)
    finally:
        plt.Axes.fill_between = original
    assert path.is_file() and len(shown) == 2  # one band per curve (B and C)
    b = df[df.scenario == "B"].sort_values("bpp")
    assert [tuple(v) for v in shown] and any(s[1] == b.ci_low.tolist() and s[2] == b.ci_high.tolist() for s in shown)
