"""``bench plan``: the bill before a run — what is still to do (from the same keys a run
makes), the cache bytes and times from probes on the real images — and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import bench, tiny_grid, write_grid


def _grid() -> dict:
    grid = tiny_grid(name="planned")
    grid["codecs"].append({"codec": "bmshj2018-hyperprior", "label": "hp", "weights": "embedded", "qualities": [1]})
    return grid


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_plan_counts_the_work_and_estimates_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = write_grid(tmp_path / "grid.yaml", _grid())
    out = tmp_path / "out"
    assert bench("plan", "--grid", grid, "--out", out, "--json", tmp_path / "bill.json") == 0
    printed = capsys.readouterr().out
    bill = json.loads((tmp_path / "bill.json").read_text())
    assert not (out / "cache" / "transcode").exists() and not (out / "planned").exists()  # nothing made
    assert (bill["cells"], bill["pending"]) == (1 + 2 * 4, 9)  # A, then B and C at each of 4 settings
    # 4 codec settings × (val 30 + train 60) images, one set per split
    assert sum(r["sets"] for r in bill["transcode"]["rows"]) == 8
    assert sum(r["images"] for r in bill["transcode"]["rows"]) == 4 * 90
    trainings = {r["scenario"]: r for r in bill["training"]["rows"]}
    assert trainings["A"]["trainings"] == 1 and trainings["A"]["image_epochs"] == 60 * 2
    assert trainings["C"]["trainings"] == 4 and trainings["C"]["image_epochs"] == 4 * 60 * 1
    assert sum(r["images"] for r in bill["evaluation"]["rows"]) == 9 * 30
    # traditional codecs are decoded again when read: B's val, C's val and train per epoch
    assert sum(r["images"] for r in bill["decoding"]["rows"]) == 3 * (30 + 30 + 60)
    assert "8 sets, 360 images to encode and decode" in printed and "expected: cache" in printed

    assert bench("run", "--grid", grid, "--out", out, "--quiet") == 0
    actual = _bytes(out / "cache" / "transcode")
    estimate = bill["expected"]["cache_bytes"]
    assert 0.7 * actual < estimate < 1.3 * actual, (estimate, actual)

    assert bench("plan", "--grid", grid, "--out", out) == 0  # after the run: nothing left
    again = capsys.readouterr().out
    assert "9 cells, 0 to compute" in again and "transcode: 0 sets" in again and "training: 0 trainings" in again


def test_plan_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = write_grid(tmp_path / "grid.yaml", _grid())
    assert bench("plan", "--grid", grid, "--sample", "0") == 2
    assert "--sample 0: must be at least 1" in capsys.readouterr().err
