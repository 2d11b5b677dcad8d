"""``bench report``: one self-contained HTML page per run, that a real browser renders."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from bench.config import parse_grid
from bench.grid import resolve
from bench.report import load_rows
from bench.runner import RunOptions, run
from tests.helpers import bench, tiny_grid

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    run(resolve(parse_grid(tiny_grid())), RunOptions(out=tmp / "out", workers=1, quiet=True))
    folder = tmp / "out" / "tiny"
    assert bench("report", folder) == 0
    return folder


def test_report_is_self_contained(folder: Path) -> None:
    page = (folder / "report.html").read_text()
    _, last = load_rows(folder)
    assert "<title>tiny" in page and "finished" in page

    pngs = sorted((folder / "plots").glob("*.png"))
    assert len(pngs) >= 3
    assert page.count("data:image/png;base64,") == len(pngs)
    for png in pngs:  # each plot's own bytes, not just some image
        assert base64.b64encode(png.read_bytes()).decode() in page
        assert png.name in page

    lb = pd.read_csv(folder / "leaderboard.csv")
    row = lb[(lb.scenario == "B") & (lb.codec == "jpeg")].iloc[0]
    assert "<td>jpeg</td>" in page and "<td>webp</td>" in page
    assert f"<td>{row.bpp:.4g}</td>" in page and f"<td>{row.psnr:.4g}</td>" in page

    grid_yaml = yaml.safe_dump(last["grid"], sort_keys=False)
    assert "n_train: 60" in grid_yaml and "n_train: 60" in page and "tiny-resnet" in page
    for key in last["provenance"]:
        assert f">{key}</td>" in page
    assert "cells_total" in page  # the summary

    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "@import" not in page and "url(" not in page


def test_plots_then_ranking_and_missing_outputs_rebuilt(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny"
    shutil.copytree(folder, copy)
    shutil.rmtree(copy / "plots")
    (copy / "leaderboard.csv").unlink()
    (copy / "ranking.csv").write_text("codec,bd_rate,bd_accuracy\njpeg,12.3456789,-0.01234\n")
    assert bench("report", copy) == 0
    page = (copy / "report.html").read_text()
    assert (copy / "leaderboard.csv").is_file() and list((copy / "plots").glob("*.png"))
    assert page.count("data:image/png;base64,") == len(list((copy / "plots").glob("*.png")))
    ranking = page.index("Ranking (Bjøntegaard deltas against the anchor)")
    assert page.index("<h2>Plots") < ranking < page.index("<h2>Leaderboard")  # curves before tables
    assert "<td>12.35</td>" in page


def browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.fail("no headless browser to render report.html: install Debian's `chromium` package "
                "(apt-get install chromium)")


def screenshot(html: Path, tmp: Path) -> np.ndarray:
    shot = tmp / f"{html.stem}.png"
    cmd = [browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,2000", f"--screenshot={shot}", html.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    return np.asarray(Image.open(shot).convert("RGB")).astype(int)


def test_report_renders_in_chromium(folder: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    a = screenshot(folder / "report.html", tmp_path)
    assert time.monotonic() - t0 < 120  # about 2 s here, up to 5 s on a loaded machine
    assert a.shape == (2000, 1280, 3)
    assert (a.min(axis=2) < 245).mean() > 0.02  # not a blank page (measured 0.057)
    assert a.std() > 10  # measured 28.5; a white page is 0
    pixels = a.reshape(-1, 3)
    colours = pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2]
    # The plots' coloured curves must have rendered. Measured on this report: 620 distinct
    # colours, 234 among strongly saturated pixels; the same page with its <img> data URIs
    # emptied (text, tables, broken-image icons) gives 335 and 10.
    assert len(np.unique(colours)) > 450
    saturated = colours[pixels.max(axis=1) - pixels.min(axis=1) > 60]
    assert len(np.unique(saturated)) > 50


def test_report_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("report", tmp_path) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bench: error:")]
    assert len(err) == 1 and str(tmp_path) in err[0] and "results.sqlite" in err[0]
    assert not (tmp_path / "report.html").exists()
