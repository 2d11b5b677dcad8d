"""The core loop end to end on a tiny grid: outputs, transcode-once, resume, reproducibility."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cache import Cache
from bench.config import parse_grid
from bench.errors import BenchError
from bench.grid import resolve
from bench.keys import transcode_key
from bench.runner import RunOptions, run
from bench.scenarios.pixel import Finetuned
from tests.helpers import bench, tiny_grid, write_grid

REQUIRED = ["task", "model", "dataset", "scenario", "codec", "quality", "bpp", "bpp_total", "psnr", "ms_ssim",
            "metric", "value", "ci_low", "ci_high", "n_images", "cell"]


def opts(tmp_path: Path, **kw) -> RunOptions:
    return RunOptions(out=tmp_path / "out", workers=kw.pop("workers", 1), quiet=True, **kw)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("run")
    plan = resolve(parse_grid(tiny_grid()))
    summary = run(plan, opts(tmp, workers=2))
    return tmp, plan, summary


def test_outputs_of_a_run(first_run) -> None:
    tmp, plan, summary = first_run
    folder = tmp / "out" / "tiny"
    assert summary["cells_total"] == len(plan.cells) == 7  # A + 3 ops × (B, C)
    assert summary["cells_run"] == 7 and summary["cells_skipped"] == 0
    assert summary["trainings"] == 1 + 3  # A, then one finetune per operating point
    assert summary["encodes"] == 3 * (60 + 30)  # train and val once per operating point
    assert json.loads((folder / "summary.json").read_text()) == summary
    assert "data:image/png;base64," in (folder / "report.html").read_text()  # the run writes its page
    for key in ("cells_total", "cells_run", "cells_skipped", "encodes", "trainings", "wall_s"):
        assert key in summary

    lb = pd.read_csv(folder / "leaderboard.csv")
    assert list(lb.columns[: len(REQUIRED) - 1]) == REQUIRED[:-1] and "cell" in lb.columns
    assert len(lb) == 7 * 2  # top1 and top5 per cell
    assert set(lb.scenario) == {"A", "B", "C"}
    assert lb[lb.scenario == "A"].codec.unique().tolist() == ["none"]
    assert lb[lb.scenario != "A"].bpp.notna().all() and (lb.value.between(0, 1)).all()
    assert ((lb.metric == "top5") | (lb.metric == "top1")).all()
    assert pd.read_parquet(folder / "leaderboard.parquet").equals(pd.read_csv(folder / "leaderboard.csv", float_precision="round_trip").astype(
        pd.read_parquet(folder / "leaderboard.parquet").dtypes.to_dict()))
    ranking = pd.read_csv(folder / "ranking.csv")
    assert len(pd.read_parquet(folder / "ranking.parquet")) == len(ranking) > 0
    top1 = ranking[(ranking.metric == "top1") & (ranking.scenario == "B")].set_index("codec")
    assert top1.loc["jpeg", "anchor"] == "jpeg B" and top1.loc["jpeg", "bd_rate"] == 0.0  # the grid's first codec
    assert top1.loc["webp", "points"] == 1 and "fewer than 2 points" in top1.loc["webp", "warnings"]
    # the visual grid's images: the first val image, original and at each B operating point
    from bench.store import Store

    store = Store(folder / "results.sqlite")
    samples = {(s["codec"], s["setting"]): s for s in store.samples()}
    store.close()
    assert set(samples) == {("jpeg", "5"), ("jpeg", "80"), ("webp", "10")}
    jpeg5 = samples[("jpeg", "5")]
    assert jpeg5["image_id"] == samples[("webp", "10")]["image_id"] and jpeg5["bpp"] < samples[("jpeg", "80")]["bpp"]
    assert jpeg5["original"] == samples[("webp", "10")]["original"] != jpeg5["png"]
    assert jpeg5["set_bpp"] == pytest.approx(lb[(lb.codec == "jpeg") & (lb.quality == 5)].bpp.iloc[0])
    assert (folder / "plots" / "visual_shapes.png").stat().st_size > 10_000
    for png in ("rate_accuracy_classification_tiny-resnet_shapes.png", "rate_psnr_shapes.png"):
        assert (folder / "plots" / png).stat().st_size > 10_000


def test_rate_is_the_bitstream_bytes(first_run) -> None:
    tmp, plan, _ = first_run
    lb = pd.read_csv(tmp / "out" / "tiny" / "leaderboard.csv")
    exp = plan.experiments[0]
    val = exp.dataset.load("val", tmp / "out" / "cache")
    jpeg = exp.codecs[0]
    t = Cache(tmp / "out" / "cache").get_transcode(transcode_key(val.fingerprint, jpeg.codec.identity(), 5))
    per_image = [8 * len(s) / (im.shape[0] * im.shape[1]) for s, im in zip(t.streams, val.images)]
    # the cached streams are what the codec makes of these images; the entry keeps them, not pixels
    assert [len(s) for s in jpeg.codec.encode(val.images[:3], jpeg.points[0])] == [len(s) for s in t.streams[:3]]
    entry = tmp / "out" / "cache" / "transcode" / t.key[:2] / t.key
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "streams.bin"]
    assert (entry / "streams.bin").stat().st_size == sum(len(s) for s in t.streams)
    row = lb[(lb.scenario == "B") & (lb.codec == "jpeg") & (lb.quality == 5)].iloc[0]
    assert row.bpp == pytest.approx(np.mean(per_image), rel=1e-12)
    assert row.bpp_total == pytest.approx(8 * sum(map(len, t.streams)) / (30 * 32 * 32), rel=1e-12)
    assert np.isnan(row.ms_ssim)  # undefined below 161 px; never a made-up number


def test_second_run_recomputes_nothing(first_run) -> None:
    tmp, plan, first = first_run
    again = run(plan, opts(tmp))
    assert again["encodes"] == 0 and again["trainings"] == 0 and again["cells_run"] == 0
    assert again["cells_skipped"] == again["cells_total"] == 7
    assert again["transcodes"] == 0  # (its time against the first run's: benchmarks/warm_rerun.py)


def test_training_is_reproducible(first_run, tmp_path: Path) -> None:
    tmp, plan, _ = first_run
    grid = tiny_grid()
    grid["experiments"][0]["scenarios"] = ["A", "B"]
    grid["experiments"][0].pop("finetune", None)  # no C
    grid["codecs"] = grid["codecs"][:1]
    second = run(resolve(parse_grid(grid)), opts(tmp_path))  # fresh caches: trains again
    assert second["trainings"] == 1
    a = pd.read_csv(tmp / "out" / "tiny" / "leaderboard.csv")
    b = pd.read_csv(tmp_path / "out" / "tiny" / "leaderboard.csv")
    both = a.merge(b, on=["cell", "metric"], suffixes=("_first", "_again"))
    assert len(both) == 3 * 2  # A and two jpeg B cells, two metrics each
    assert (both.value_first == both.value_again).all()


def test_force_recomputes(first_run, tmp_path: Path) -> None:
    grid = tiny_grid()
    grid["codecs"] = [{"codec": "jpeg", "qualities": [50]}]
    grid["experiments"][0]["scenarios"] = ["A", "B"]
    grid["experiments"][0].pop("finetune", None)  # no C
    plan = resolve(parse_grid(grid))
    run(plan, opts(tmp_path))
    forced = run(plan, opts(tmp_path, force=True))
    assert forced["cells_run"] == 2 and forced["trainings"] == 1 and forced["encodes"] == 30


def test_plot_and_leaderboard_rebuild_from_the_store(first_run, capsys: pytest.CaptureFixture[str]) -> None:
    tmp, _, _ = first_run
    folder = tmp / "out" / "tiny"
    before = (folder / "leaderboard.csv").read_text()
    (folder / "leaderboard.csv").unlink()
    for plot in (folder / "plots").iterdir():
        plot.unlink()
    assert bench("leaderboard", folder) == 0
    assert bench("plot", folder) == 0
    assert (folder / "leaderboard.csv").read_text() == before
    pngs = sorted(p.name for p in (folder / "plots").glob("*.png"))
    assert pngs == ["accuracy_psnr_classification_tiny-resnet_shapes.png",
                    "rate_accuracy_classification_tiny-resnet_shapes.png", "rate_psnr_shapes.png",
                    "visual_shapes.png"]
    for png in pngs:  # each plot also as SVG
        svg = (folder / "plots" / png).with_suffix(".svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_a_failing_cell_keeps_finished_cells_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = resolve(parse_grid(tiny_grid()))
    calls = {"n": 0}
    original = Finetuned.run

    def flaky(self, ctx):
        calls["n"] += 1
        if calls["n"] == 2:
            raise BenchError("simulated failure in the second C cell")
        return original(self, ctx)

    monkeypatch.setattr(Finetuned, "run", flaky)
    with pytest.raises(BenchError, match="simulated failure"):
        run(plan, opts(tmp_path))
    db = sqlite3.connect(tmp_path / "out" / "tiny" / "results.sqlite")
    stored = [r[0] for r in db.execute("SELECT scenario FROM cells ORDER BY scenario")]
    assert stored == ["A", "B", "B", "B", "C"]  # finished cells kept, the failed one absent
    assert db.execute("SELECT status FROM runs").fetchone() == ("failed",)
    monkeypatch.setattr(Finetuned, "run", original)
    resumed = run(plan, opts(tmp_path))
    assert resumed["cells_skipped"] == 5 and resumed["cells_run"] == 2
    assert resumed["encodes"] == 0 and resumed["trainings"] == 2  # two finetunes were never stored


def test_run_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tiny_grid()
    grid["codecs"] = [{"codec": "webp", "qualities": [30]}]
    path = write_grid(tmp_path / "g.yaml", grid)
    assert bench("run", "--grid", path, "--out", tmp_path / "o", "--device", "cpu", "--workers", "1", "--quiet") == 0
    out = capsys.readouterr().out
    assert '"cells_run": 3' in out and "leaderboard.csv" in out
