"""The study's example grids (examples/study/) are valid grids: on a machine without the
datasets and weights, `bench validate` reports only missing files, never a bad name or
parameter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import bench

EXAMPLES = sorted((Path(__file__).parent.parent / "examples" / "study").glob("*.yaml"))
MISSING = re.compile(r"not found|not cached|is not in ")


def test_there_are_study_examples() -> None:
    assert {p.stem for p in EXAMPLES} == {"imagenet", "coco", "ade20k"}


@pytest.mark.parametrize("grid", EXAMPLES, ids=lambda p: p.stem)
def test_a_study_example_fails_only_on_missing_files(grid: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no data and no weights under ~
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert bench("validate", "--grid", grid) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines and all(MISSING.search(ln) for ln in lines), lines
