"""The ranking: Bjøntegaard deltas against the anchor, values at target rates, recovery."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.metrics.bd import bd_rate
from bench.report.ranking import anchor_of, ranking_frame

RATES = [0.2, 0.4, 0.8, 1.6]


def _row(scenario: str, codec: str | None, bpp: float | None, top1: float, quality: int | None = None,
         target: float | None = None, psnr: float | None = None) -> dict:
    return {"key": f"{scenario}{codec}{bpp}{target}", "task": "classification", "model": "m", "dataset": "d",
            "scenario": scenario, "codec": codec, "quality": quality, "seed": 0, "bpp": bpp, "bpp_total": bpp,
            "psnr": psnr, "ms_ssim": None, "rate_source": "bitstream" if codec else None, "n_images": 10,
            "metrics": {"top1": top1}, "record": {}, "target_bpp": target}


def _rows() -> list[dict]:
    """jpeg (anchor) and a codec that reaches the same accuracy and PSNR at 0.8× the rate;
    C recovers half of B's drop at every point; D only on the second codec."""
    acc = [0.5, 0.6, 0.7, 0.8]
    psnr = [26.0, 29.0, 32.0, 35.0]
    rows = [_row("A", None, None, 0.9)]
    for i, (r, a, p) in enumerate(zip(RATES, acc, psnr)):
        rows.append(_row("B", "jpeg", r, a, quality=10 * i + 10, psnr=p))
        rows.append(_row("B", "neural", 0.8 * r, a, target=0.8 * r, psnr=p))
        rows.append(_row("C", "jpeg", r, a + (0.9 - a) / 2, quality=10 * i + 10, psnr=p))
        rows.append(_row("D:aa", "neural", 0.8 * r, a + 0.01, target=0.8 * r, psnr=p))
    return rows


def test_deltas_ranks_and_recovery_have_known_answers() -> None:
    frame = ranking_frame(_rows(), {"codecs": [{"codec": "jpeg"}, {"codec": "x", "label": "neural"}]})
    top1 = frame[frame.metric == "top1"].set_index(["scenario", "codec"])
    # a curve shifted to 0.8× the rate: BD-rate −20 %, exactly (PCHIP on log-rate)
    assert top1.loc[("B", "neural"), "bd_rate"] == pytest.approx(-20.0, abs=1e-9)
    assert top1.loc[("B", "jpeg"), "bd_rate"] == 0.0
    assert (top1.loc[("B", "neural"), "rank"], top1.loc[("B", "jpeg"), "rank"]) == (1, 2)
    # same accuracies: the curves overlap fully on the metric axis BD-rate integrates over
    assert top1.loc[("B", "neural"), "bd_metric"] > 0 and top1.loc[("B", "neural"), "overlap"] == 1.0
    assert top1.loc[("B", "jpeg"), "anchor"] == "jpeg B"
    # the share of B's drop from A that C recovers: (C - B) / (A - B) = 0.5 at every point
    assert top1.loc[("C", "jpeg"), "recovered_share"] == pytest.approx(0.5)
    assert top1.loc[("B", "jpeg"), "drop_from_A"] == pytest.approx(np.mean([0.4, 0.3, 0.2, 0.1]))
    # D on the neural codec: the anchor has no D curve, so it is compared with jpeg's B curve,
    # and it recovers 0.01 / (A - B) of the drop at each of its targets
    d = top1.loc[("D:aa", "neural")]
    assert d["anchor"] == "jpeg B" and d["bd_rate"] < -20.0
    assert d["recovered_share"] == pytest.approx(np.mean([0.01 / v for v in (0.4, 0.3, 0.2, 0.1)]))
    # the value and the achieved rate at each target the curve has
    assert top1.loc[("B", "neural"), "value@0.32bpp"] == 0.6
    assert top1.loc[("B", "neural"), "bpp@0.32bpp"] == pytest.approx(0.32)
    assert math.isnan(top1.loc[("B", "jpeg"), "value@0.32bpp"])
    # fidelity: BD-rate on PSNR of the B images
    psnr = frame[(frame.task == "fidelity") & (frame.metric == "psnr")].set_index("codec")
    assert psnr.loc["neural", "bd_rate"] == pytest.approx(-20.0, abs=1e-9)
    assert psnr.loc["neural", "bd_metric"] > 0  # BD-PSNR: more dB at equal rate
    assert psnr.loc["neural", "bd_rate"] == pytest.approx(bd_rate(RATES, [26, 29, 32, 35],
                                                                  [0.8 * r for r in RATES], [26, 29, 32, 35]).value)


def test_anchor_choice_and_warnings() -> None:
    assert anchor_of({"codecs": [{"codec": "webp"}, {"codec": "jpeg"}]}) == "webp"
    assert anchor_of({"codecs": [{"codec": "webp"}], "analysis": {"anchor": "jpeg"}}) == "jpeg"
    rows = _rows()
    rows = [r for r in rows if not (r["codec"] == "neural" and r["bpp"] and r["bpp"] > 0.7)]  # 3 points left
    frame = ranking_frame(rows, {"codecs": [{"codec": "jpeg"}]})
    neural = frame[(frame.metric == "top1") & (frame.scenario == "B") & (frame.codec == "neural")].iloc[0]
    assert neural.points == 3  # 0.16–0.64 bpp against the anchor's 0.2–1.6
    assert "BD-metric: curves overlap over 51% of their extent only (< 75%)" in neural.warnings
    frame = ranking_frame(rows, {"codecs": [{"codec": "none-such"}]})
    assert frame[frame.task != "fidelity"].warnings.str.contains("no none-such curve").all()
    assert frame["rank"].isna().all()


def test_empty_runs_give_an_empty_table() -> None:
    assert ranking_frame([], {"codecs": [{"codec": "jpeg"}]}).empty


def test_per_image_deltas_average_each_images_own() -> None:
    """``analysis.per_item``: each image's rate–PSNR curve; every image of the test codec at
    0.8× its anchor rate gives −20 % per image, whatever the mean curves do."""
    rows = _rows()
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.5, 2.0, size=5)  # five images of different complexity
    for r in rows:
        if r["scenario"] == "B":
            base = r["bpp"] / (0.8 if r["codec"] == "neural" else 1.0)
            r["record"] = {"per_image": {"bpp": list(base * scale * (0.8 if r["codec"] == "neural" else 1.0)),
                                        "psnr": [r["psnr"] + i for i in range(5)], "ms_ssim": [None] * 5}}
    grid = {"codecs": [{"codec": "jpeg"}], "analysis": {"per_item": True}}
    frame = ranking_frame(rows, grid)
    psnr = frame[(frame.task == "fidelity") & (frame.metric == "psnr")].set_index("codec")
    assert psnr.loc["neural", "bd_rate_per_image"] == pytest.approx(-20.0, abs=1e-9)
    assert psnr.loc["jpeg", "bd_rate_per_image"] == pytest.approx(0.0, abs=1e-9)
    assert frame[(frame.task == "fidelity") & (frame.metric == "ms_ssim")].bd_rate_per_image.isna().all()
    assert "bd_rate_per_image" not in ranking_frame(rows, {"codecs": [{"codec": "jpeg"}]}).columns


def test_seeds_are_ranked_apart_and_images_at_one_rate_are_kept() -> None:
    rows = _rows()
    other = [{**r, "seed": 1, "key": r["key"] + "s1", "metrics": {"top1": r["metrics"]["top1"] - 0.3}}
             for r in _rows()]
    frame = ranking_frame(rows + other, {"codecs": [{"codec": "jpeg"}]})
    c = frame[(frame.metric == "top1") & (frame.scenario == "C") & (frame.codec == "jpeg")].set_index("seed")
    # each seed against its own A and B: (0.9-0.3) - B(seed 1) is the same drop as seed 0's
    assert c.loc[0, "drop_from_A"] == pytest.approx(0.25) and c.loc[1, "drop_from_A"] == pytest.approx(0.25)
    assert c.loc[0, "recovered_share"] == pytest.approx(0.5) and c.loc[1, "recovered_share"] == pytest.approx(0.5)
    # per image: an image coded at the same rate by two operating points keeps one point there
    for r in rows:
        if r["scenario"] == "B":
            factor = 0.8 if r["codec"] == "neural" else 1.0
            second = max(r["bpp"], 0.4 * factor)  # image 1 never goes below 0.4 (× factor)
            r["record"] = {"per_image": {"bpp": [r["bpp"], second], "psnr": [r["psnr"], max(r["psnr"], 29.0)],
                                         "ms_ssim": [None, None]}}
    frame = ranking_frame(rows, {"codecs": [{"codec": "jpeg"}], "analysis": {"per_item": True}})
    psnr = frame[(frame.task == "fidelity") & (frame.metric == "psnr")].set_index("codec")
    assert psnr.loc["neural", "per_image_items"] == 2
    assert psnr.loc["neural", "bd_rate_per_image"] == pytest.approx(-20.0, abs=1e-9)
