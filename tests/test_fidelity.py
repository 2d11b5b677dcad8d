"""Rate–distortion experiments (``task: fidelity``): no model, CompressAI-layout curves out,
published curves in."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from bench.config import parse_grid
from bench.errors import ConfigError
from bench.grid import resolve
from bench.references import load_reference, parse_reference
from tests.helpers import bench, write_grid

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reference"
#: CompressAI's published Pillow curves are at qualities 5, 10, ..., 95.
PUBLISHED_QUALITIES = list(range(5, 100, 5))


def rd_grid(kodak: Path, **experiment: object) -> dict:
    return {
        "name": "rd",
        "codecs": [{"codec": "jpeg", "qualities": [10, 75]}, {"codec": "webp", "qualities": [30, 90]}],
        "analysis": {"anchor": "jpeg"},
        "experiments": [{"task": "fidelity", "dataset": {"name": "photos", "path": str(kodak)}, **experiment}],
    }


@pytest.fixture(scope="module")
def kodak_run(tmp_path_factory: pytest.TempPathFactory, kodak_dir: Path) -> Path:
    """An RD-only grid over the 24 Kodak images with two published curves, run once."""
    tmp = tmp_path_factory.mktemp("rd")
    grid = rd_grid(kodak_dir, references=[{"file": str(REFERENCE / "vtm.json")},
                                          {"file": str(REFERENCE / "jpeg.json"), "label": "JPEG published"}])
    assert bench("run", "--grid", write_grid(tmp / "rd.yaml", grid), "--out", tmp / "out", "--quiet",
                 "--workers", "2") == 0
    return tmp / "out" / "rd"


def test_the_curves_match_compressai_s_published_kodak_values(kodak_run: Path) -> None:
    """Pillow's defaults reproduce CompressAI's published JPEG and WebP points on Kodak:
    within 0.5 % in bpp and 0.15 dB in PSNR at every point the run has."""
    for codec in ("jpeg", "webp"):
        ours = json.loads((kodak_run / "compressai" / "photos-kodak" / f"{codec}.json").read_text())
        published = json.loads((REFERENCE / f"{codec}.json").read_text())["results"]
        assert ours["name"] == codec and set(published) <= set(ours["results"])
        for i, q in enumerate(ours["results"]["quality"]):
            j = PUBLISHED_QUALITIES.index(q)
            bpp, psnr = ours["results"]["bpp"][i], ours["results"]["psnr-rgb"][i]
            assert abs(bpp / published["bpp"][j] - 1) < 0.005, (codec, q, bpp, published["bpp"][j])
            assert abs(psnr - published["psnr-rgb"][j]) < 0.15, (codec, q, psnr, published["psnr-rgb"][j])
        assert ours["results"]["bpp"] == sorted(ours["results"]["bpp"])
        assert all(t > 0 for t in ours["results"]["encoding_time"] + ours["results"]["decoding_time"])


def test_a_fidelity_run_has_rd_rows_and_no_model(kodak_run: Path) -> None:
    board = pd.read_csv(kodak_run / "leaderboard.csv")
    assert set(board.task) == {"fidelity"} and set(board.scenario) == {"B"}
    assert board.model.isna().all()  # written empty: there is no model
    assert set(board.metric) == {"psnr", "ms_ssim"}
    psnr = board[board.metric == "psnr"]
    assert (psnr.value == psnr.psnr).all() and len(psnr) == 4  # 2 codecs x 2 qualities
    db = sqlite3.connect(kodak_run / "results.sqlite")
    assert db.execute("SELECT count(*) FROM cells").fetchone()[0] == 4


def test_published_curves_are_ranked_and_drawn_from_the_run_s_record(kodak_run: Path) -> None:
    ranking = pd.read_csv(kodak_run / "ranking.csv")
    psnr = ranking[ranking.metric == "psnr"].set_index("codec")
    assert set(psnr.index) == {"jpeg", "webp", "VTM", "JPEG published"}
    assert len(ranking) == 8  # 4 curves x (psnr, ms_ssim), each once
    assert psnr.loc["jpeg", "bd_rate"] == 0
    # VTM needs far fewer bits than JPEG for the same PSNR; published JPEG is ours within a few %
    assert psnr.loc["VTM", "bd_rate"] < -50
    assert abs(psnr.loc["JPEG published", "bd_rate"]) < 5
    assert psnr.loc["VTM", "points"] == 8
    # the report is drawn from the store: the curves' content is in the run's record
    db = sqlite3.connect(kodak_run / "results.sqlite")
    grid = json.loads(db.execute("SELECT grid FROM runs").fetchone()[0])
    labels = [c["label"] for c in grid["reference_curves"]]
    assert labels == ["VTM", "JPEG published"] and all(len(c["sha256"]) == 64 for c in grid["reference_curves"])
    assert (kodak_run / "plots" / "rate_psnr_photos-kodak.png").is_file()
    assert not list((kodak_run / "plots").glob("rate_accuracy_*"))  # no task, no rate–accuracy plot


def test_the_export_folder_holds_only_the_latest_run_s_curves(kodak_run: Path, tmp_path: Path) -> None:
    from bench.report import RunRows, load_rows, write_compressai

    loaded = load_rows(kodak_run)
    only_jpeg = RunRows([r for r in loaded.rows if r["codec"] == "jpeg"], loaded.run)
    folder = tmp_path / "run"
    folder.mkdir()
    write_compressai(folder, loaded)
    assert {p.name for p in (folder / "compressai" / "photos-kodak").iterdir()} == {"jpeg.json", "webp.json"}
    write_compressai(folder, only_jpeg)
    assert {p.name for p in (folder / "compressai" / "photos-kodak").iterdir()} == {"jpeg.json"}
    assert [p.name for p in folder.iterdir()] == ["compressai"]  # no temporary folder left


def test_an_anchor_can_be_a_published_curve(kodak_dir: Path) -> None:
    grid = rd_grid(kodak_dir, references=[{"file": str(REFERENCE / "vtm.json")}])
    grid["analysis"] = {"anchor": "VTM"}
    plan = resolve(parse_grid(grid))
    assert [r.label for r in plan.experiments[0].references] == ["VTM"]
    assert plan.record()["reference_curves"][0]["dataset"] == "photos:kodak"


@pytest.mark.parametrize(("change", "message"), [
    ({"model": {"name": "tiny-resnet"}}, "measures the codecs alone (remove 'model')"),
    ({"scenarios": ["A", "B"]}, "has scenario B only"),
    ({"train": {"epochs": 1, "lr": 0.1}}, "trains nothing"),
    ({"finetune": {"epochs": 1, "lr": 0.1}}, "unknown key for a fidelity experiment"),
    ({"references": [{"file": "/nonexistent/vtm.json"}]}, "/nonexistent/vtm.json: reference curve file not found"),
    ({"references": [{"file": str(REFERENCE / "vtm.json"), "label": "jpeg"}]}, "label 'jpeg' is used twice"),
])
def test_a_bad_fidelity_experiment_is_refused_before_any_work(kodak_dir: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve(parse_grid(rd_grid(kodak_dir, **change)))
    assert message in str(err.value)


def test_a_task_experiment_still_needs_a_model_and_scenarios(kodak_dir: Path) -> None:
    grid = rd_grid(kodak_dir)
    grid["experiments"] = [{"task": "classification", "dataset": {"name": "photos", "path": str(kodak_dir)}}]
    with pytest.raises(ConfigError) as err:
        resolve(parse_grid(grid))
    text = str(err.value)
    assert "experiments[0].model: required key is missing" in text
    assert "experiments[0].scenarios: required key is missing" in text
    grid["experiments"][0]["task"] = "fidelty"
    with pytest.raises(ConfigError, match="or 'fidelity'"):
        resolve(parse_grid(grid))


def test_an_unknown_anchor_names_the_published_curves_too(kodak_dir: Path) -> None:
    grid = rd_grid(kodak_dir, references=[{"file": str(REFERENCE / "vtm.json")}])
    grid["analysis"] = {"anchor": "VTMM"}
    with pytest.raises(ConfigError, match="Did you mean: VTM"):
        resolve(parse_grid(grid))


def test_reference_files_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not JSON"):
        load_reference(bad)
    for doc, message in [
        ({"name": "x"}, "expected CompressAI's results layout"),
        ({"name": "x", "results": {"bpp": [0.1, 0.2]}}, "results has no 'psnr-rgb'"),
        ({"name": "x", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [30.0]}}, "1 values for 2 bpp values"),
        ({"name": "x", "results": {"bpp": [0.1, "a"], "psnr-rgb": [30.0, 31.0]}}, "expected a list of numbers"),
        ({"results": {"bpp": [0.1], "psnr-rgb": [30.0]}}, "no 'name'"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_reference(doc)
    curve = parse_reference({"name": "x", "results": {"bpp": [0.4, 0.1], "psnr-rgb": [33.0, 28.0]}})
    assert curve.bpp == (0.1, 0.4) and curve.psnr == (28.0, 33.0) and curve.ms_ssim is None


def test_the_markdown_report_has_a_rate_distortion_table(kodak_run: Path) -> None:
    from bench.report.markdown import markdown_report

    text = markdown_report(kodak_run)
    assert "**rate–distortion · photos:kodak · seed 0** (24 images)" in text
    board = pd.read_csv(kodak_run / "leaderboard.csv")
    jpeg10 = board[(board.codec == "jpeg") & (board.quality == 10) & (board.metric == "psnr")].iloc[0]
    assert f"| jpeg | 10 | {jpeg10.bpp:.4f} | {jpeg10.psnr:.2f} | {jpeg10.ms_ssim:.4f} |" in text
    assert "| B | 1 | VTM | jpeg B |" in text
