"""Bad input: one line naming the culprit, exit status 2, nothing partial stored."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.codecs import CODECS
from tests.helpers import bench, tiny_grid, write_grid


def photo_grid(folder: Path) -> dict:
    return tiny_grid(
        name="photos",
        codecs=[{"codec": "jpeg", "qualities": [30]}],
        experiments=[{"task": "classification", "dataset": {"name": "photos", "path": str(folder)},
                      "model": {"name": "efficientnet-lite0"}, "scenarios": ["B"]}],
    )


def photo_folder(tmp_path: Path, n: int = 2) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bench: error:")]
    assert len(err) == 1, err
    return err[0]


def stored_cells(out: Path, name: str) -> int:
    db = out / name / "results.sqlite"
    if not db.exists():
        return 0
    return sqlite3.connect(db).execute("SELECT COUNT(*) FROM cells").fetchone()[0]


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_broken_image_in_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    folder = photo_folder(tmp_path)
    bad = folder / "bad image.png"
    good = (folder / "p0.png").read_bytes()
    bad.write_bytes({"empty": b"", "truncated": good[: len(good) // 2], "garbage": b"\x89PNG not really"}[damage])
    grid = write_grid(tmp_path / "g.yaml", photo_grid(folder))
    assert bench("run", "--grid", grid, "--out", tmp_path / "out", "--quiet") == 2
    line = one_error_line(capsys)
    assert str(bad) in line
    assert stored_cells(tmp_path / "out", "photos") == 0


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_unusable_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    target = tmp_path / "nowhere"
    if kind == "a file":
        target.write_text("not a folder")
    grid = write_grid(tmp_path / "g.yaml", photo_grid(target))
    assert bench("run", "--grid", grid, "--out", tmp_path / "out") == 2
    line = one_error_line(capsys)
    assert str(target) in line and ("folder not found" in line or "not a folder" in line)
    assert not (tmp_path / "out").exists()  # validation failed before any work


def test_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    grid = write_grid(tmp_path / "g.yaml", photo_grid(tmp_path / "empty"))
    assert bench("validate", "--grid", grid) == 2
    assert "no images" in one_error_line(capsys)


def test_unwritable_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    grid = write_grid(tmp_path / "g.yaml", photo_grid(photo_folder(tmp_path)))
    assert bench("run", "--grid", grid, "--out", blocker / "out", "--quiet") == 2
    line = one_error_line(capsys)
    assert str(blocker / "out" / "photos") in line and "not writable" in line


def test_missing_bpgenc(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find
    grid = photo_grid(photo_folder(tmp_path))
    grid["codecs"] = [{"codec": "bpg", "qualities": [35]}]
    path = write_grid(tmp_path / "g.yaml", grid)
    assert bench("run", "--grid", path, "--out", tmp_path / "out") == 2
    line = one_error_line(capsys)
    assert "codecs[0] (bpg): unavailable: bpgenc not found" in line


def test_failure_keeps_finished_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = photo_folder(tmp_path)
    grid = photo_grid(folder)
    path = write_grid(tmp_path / "g.yaml", grid)
    assert bench("run", "--grid", path, "--out", tmp_path / "out", "--quiet") == 0
    assert stored_cells(tmp_path / "out", "photos") == 1
    (folder / "p1.png").write_bytes(b"")  # the data set breaks before the next run
    grid["codecs"][0]["qualities"] = [30, 60]
    write_grid(path, grid)
    capsys.readouterr()
    assert bench("run", "--grid", path, "--out", tmp_path / "out", "--quiet") == 2
    assert f"{folder / 'p1.png'}: empty file" in one_error_line(capsys)
    assert stored_cells(tmp_path / "out", "photos") == 1


def test_console_script_exit_status(tmp_path: Path) -> None:
    grid = tiny_grid()
    grid["codecs"][0]["codec"] = "jpg"
    path = write_grid(tmp_path / "bad name.yaml", grid)
    exe = shutil.which("bench", path=str(Path(sys.executable).parent))
    assert exe is not None, "the bench console script is not installed next to this python"
    proc = subprocess.run([exe, "run", "--grid", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"bench: error: {path}: codecs[0].codec: Unknown codec 'jpg'. Did you mean: jpeg? "
        f"Known: {', '.join(CODECS.names())}."
    )
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cuda:99"])
def test_bad_device(tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str) -> None:
    path = write_grid(tmp_path / "g.yaml", photo_grid(photo_folder(tmp_path)))
    assert bench("run", "--grid", path, "--out", tmp_path / "out", "--device", device) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"bench: error: --device {device}: ")
    assert stored_cells(tmp_path / "out", "photos") == 0
