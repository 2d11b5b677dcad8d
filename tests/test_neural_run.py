"""Neural codecs inside a run: embedded weights, per-quality availability, estimated rates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cache import Cache
from bench.codecs import CODECS
from bench.store import Store
from tests.helpers import bench, tiny_grid, write_grid


def neural_grid() -> dict:
    grid = tiny_grid(name="neural")
    grid["codecs"] = [
        {"codec": "jpeg", "qualities": [10]},
        {"codec": "bmshj2018-hyperprior", "weights": "embedded", "qualities": [1, 3]},
        {"codec": "bmshj2018-hyperprior", "label": "hyperprior-estimate", "weights": "embedded",
         "entropy_estimation": True, "qualities": [1]},
    ]
    grid["experiments"][0]["dataset"].update(n_train=24, n_val=12)
    grid["experiments"][0]["scenarios"] = ["A", "B"]
    grid["experiments"][0].pop("finetune", None)  # no C
    return grid


@pytest.fixture(scope="module")
def neural_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("neural")
    grid = write_grid(tmp / "grid.yaml", neural_grid())
    assert bench("run", "--grid", grid, "--out", tmp / "out", "--quiet") == 0
    return tmp / "out" / "neural"


def test_embedded_neural_codec_runs_with_real_bitstream_rates(neural_run: Path) -> None:
    lb = pd.read_csv(neural_run / "leaderboard.csv")
    b = lb[(lb.scenario == "B") & (lb.metric == "top1")].set_index(["codec", "quality"])
    assert set(b.index) == {("jpeg", 10), ("bmshj2018-hyperprior", 1), ("bmshj2018-hyperprior", 3),
                            ("hyperprior-estimate", 1)}
    assert b.loc[("bmshj2018-hyperprior", 1), "rate_source"] == "bitstream"
    assert b.loc[("jpeg", 10), "rate_source"] == "bitstream"
    # a higher quality costs more bits and gives a better reconstruction
    assert b.loc[("bmshj2018-hyperprior", 3), "bpp"] > b.loc[("bmshj2018-hyperprior", 1), "bpp"]
    assert b.loc[("bmshj2018-hyperprior", 3), "psnr"] > b.loc[("bmshj2018-hyperprior", 1), "psnr"]

    # the recorded bpp is the bytes of the cached streams, per image, averaged
    store = Store(neural_run / "results.sqlite")
    try:
        [row] = [r for r in store.cells() if r["codec"] == "bmshj2018-hyperprior" and r["quality"] == 1]
    finally:
        store.close()
    cache = Cache(neural_run.parent / "cache")
    entries = [json.loads(p.read_text()) | {"key": p.parent.name}
               for p in (cache.root / "transcode").glob("*/*/meta.json")]
    [entry] = [e for e in entries if e["info"]["codec"]["codec"] == "bmshj2018-hyperprior"
               and e["info"]["quality"] == 1 and e["info"]["split"] == "val"
               and not e["info"]["codec"]["params"]["entropy_estimation"]]
    t = cache.get_transcode(entry["key"])
    assert t.rate_source == "bitstream" and all(s.startswith(b"BN") for s in t.streams)
    per_image = [8 * len(s) / (h * w) for s, h, w in zip(t.streams, t.heights, t.widths)]
    assert row["bpp"] == pytest.approx(float(np.mean(per_image)), rel=1e-12)


def test_estimated_rates_are_labelled_everywhere(neural_run: Path) -> None:
    lb = pd.read_csv(neural_run / "leaderboard.csv")
    est = lb[lb.codec == "hyperprior-estimate"]
    real = lb[(lb.codec == "bmshj2018-hyperprior") & (lb.quality == 1)]
    assert len(est) and set(est.rate_source) == {"estimate"}
    # the same model and images: the reconstruction is identical, only the rate's source differs
    assert est.psnr.iloc[0] == pytest.approx(real.psnr.iloc[0], abs=1e-9)
    assert est.bpp.iloc[0] != real.bpp.iloc[0] and est.bpp.iloc[0] > 0
    store = Store(neural_run / "results.sqlite")
    try:
        rows = {r["codec"]: r["rate_source"] for r in store.cells() if r["scenario"] == "B"}
    finally:
        store.close()
    assert rows["hyperprior-estimate"] == "estimate" and rows["jpeg"] == "bitstream"


def test_missing_weights_for_one_quality_are_named_before_any_work(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    model = ScaleHyperprior(16, 24)
    model.update(force=True)
    torch.save(model.state_dict(), tmp_path / "hp-q1.pt")
    grid = tiny_grid(name="missing")
    grid["codecs"] = [{"codec": "bmshj2018-hyperprior", "weights": str(tmp_path / "hp-q{quality}.pt"),
                       "qualities": [1, 2]}]
    path = write_grid(tmp_path / "grid.yaml", grid)
    assert bench("run", "--grid", path, "--out", tmp_path / "out", "--quiet") == 2
    err = capsys.readouterr().err
    assert "codecs[0].qualities[1] (bmshj2018-hyperprior at 2): unavailable" in err
    assert "hp-q2.pt not found" in err and "qualities[0]" not in err
    assert not (tmp_path / "out" / "missing" / "results.sqlite").exists()


def test_codecs_move_to_the_run_device() -> None:
    codec = CODECS.get("bmshj2018-hyperprior")(weights="embedded")
    assert codec.to("cpu") is codec and codec.device == torch.device("cpu")
    jpeg = CODECS.get("jpeg")()
    assert jpeg.to("cpu") is jpeg
    assert jpeg.rate_bits(b"12345") == 40.0 and not jpeg.rate_is_estimate


def test_pool_workers_and_the_main_process_give_the_same_rates(neural_run: Path, tmp_path: Path) -> None:
    """The run above shared neural transcoding out to worker processes (``--workers`` is
    the core count); one process alone must produce the same bytes and reconstructions."""
    grid = neural_grid()
    grid["experiments"][0]["scenarios"] = ["B"]
    grid["experiments"][0].pop("finetune", None)  # no C
    grid["codecs"] = grid["codecs"][1:2]
    path = write_grid(tmp_path / "grid.yaml", grid)
    assert bench("run", "--grid", path, "--out", tmp_path / "out", "--workers", "1", "--quiet") == 0
    cols = ["codec", "quality", "bpp", "psnr", "value"]
    alone = pd.read_csv(tmp_path / "out" / "neural" / "leaderboard.csv")[cols]
    pooled = pd.read_csv(neural_run / "leaderboard.csv")
    pooled = pooled[(pooled.scenario == "B") & (pooled.codec == "bmshj2018-hyperprior")][cols]
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), pooled.reset_index(drop=True), check_dtype=False)


def test_ls_says_which_weights_a_neural_codec_can_use(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.codecs import neural

    monkeypatch.setattr(neural, "hub_checkpoints_dir", lambda: tmp_path)  # an empty hub cache
    assert bench("ls", "codecs") == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "ok  (weights: embedded, qualities 1, 2, 3, 4, 5, 6, 7; zoo weights not cached" in lines["bmshj2018-hyperprior"]
    assert "ok  (weights: embedded, qualities 1, 2, 3;" in lines["mbt2018-mean"]
    assert "unavailable: zoo weights not cached: none of the zoo files" in lines["bmshj2018-factorized"]
    assert lines["jpeg"].split()[1] == "ok"


@pytest.mark.parametrize("workers", [1, 2])
def test_weights_replaced_during_a_run_fail_instead_of_caching_under_the_old_key(
        tmp_path: Path, workers: int) -> None:
    from compressai.models import ScaleHyperprior

    from bench.config import load_grid
    from bench.errors import CodecError
    from bench.grid import resolve
    from bench.runner import RunOptions, run

    def checkpoint(seed: int) -> None:
        torch.manual_seed(seed)
        model = ScaleHyperprior(16, 24)
        model.update(force=True)
        torch.save(model.state_dict(), tmp_path / "hp-q1.pt")

    checkpoint(0)
    grid = tiny_grid(name="swap")
    grid["codecs"] = [{"codec": "bmshj2018-hyperprior", "weights": str(tmp_path / "hp-q{quality}.pt"),
                       "qualities": [1]}]
    grid["experiments"][0]["scenarios"] = ["B"]
    grid["experiments"][0].pop("finetune", None)  # no C
    plan = resolve(load_grid(write_grid(tmp_path / "grid.yaml", grid)))
    checkpoint(1)  # the file changes after the keys were made
    with pytest.raises(CodecError, match="changed while the run was going"):
        run(plan, RunOptions(out=tmp_path / "out", workers=workers, quiet=True))
    assert not list((tmp_path / "out" / "cache" / "transcode").glob("*/*/meta.json"))
