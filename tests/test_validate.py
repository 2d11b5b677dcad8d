"""Grid validation: every problem reported together, before any work, naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import load_grid
from bench.errors import ConfigError
from bench.grid import resolve
from tests.helpers import bench, tiny_grid, write_grid

ROOT = Path(__file__).resolve().parents[1]


def problems_of(tmp_path: Path, grid: dict) -> list[str]:
    path = write_grid(tmp_path / "grid.yaml", grid)
    with pytest.raises(ConfigError) as info:
        resolve(load_grid(path), str(path))
    return info.value.problems


def test_default_grid_is_valid() -> None:
    plan = resolve(load_grid(ROOT / "codecs.yaml"))
    scenarios = {(c.task, c.model, c.scenario) for c in plan.cells}
    for task, model in [("classification", "tiny-resnet"), ("detection", "tiny-centernet"),
                        ("segmentation", "tiny-fcn")]:
        assert {(task, model, s) for s in "ABCD"} <= scenarios
    assert ("classification", "efficientnet-lite0", "B") in scenarios
    # scenario D with knowledge transfer on every task, on an embedded codec at its lowest rate
    d = {(c.task, c.variant, c.codec_label, c.quality) for c in plan.cells if c.scenario == "D"}
    assert d == {(task, "aa+kt", "hyperprior", 1) for task in ("classification", "detection", "segmentation")}
    # every codec is evaluated (B) on every embedded task
    b = {(c.task, c.codec_label) for c in plan.cells if c.scenario == "B" and c.dataset.startswith("shapes")}
    assert b == {(t, c) for t in ("classification", "detection", "segmentation")
                 for c in ("jpeg", "webp", "avif", "heic", "hyperprior", "mean-scale", "gmm")}
    # the embedded neural codecs sit next to the traditional ones, three rates each
    neural = {c.label: c.codec.kind for exp in plan.experiments for c in exp.codecs}
    assert {k for k, v in neural.items() if v == "neural"} == {"hyperprior", "mean-scale", "gmm"}
    assert {"jpeg", "webp", "avif", "heic"} <= neural.keys()


def test_typo_in_a_key_suggests_the_field(tmp_path: Path) -> None:
    grid = tiny_grid()
    grid["codecs"][0]["qualites"] = grid["codecs"][0].pop("qualities")
    grid["experiments"][0]["train"]["epoch"] = grid["experiments"][0]["train"].pop("epochs")
    problems = problems_of(tmp_path, grid)
    assert "codecs[0].qualites: unknown key. Did you mean: qualities?" in problems
    assert "codecs[0]: no operating points: give qualities or targets_bpp (here, or targets_bpp for the whole grid)" in problems
    assert "experiments[0].train.epoch: unknown key. Did you mean: epochs?" in problems


def test_all_semantic_problems_are_reported_together(tmp_path: Path) -> None:
    grid = tiny_grid()
    grid["codecs"] = [
        {"codec": "jpg", "qualities": [50]},
        {"codec": "webp", "qualities": [101, 50]},
        {"codec": "heic", "qualities": [50], "chroma": 422},
        {"codec": "bpg", "qualities": [30], "bpgenc": "/nonexistent/bpgenc"},
    ]
    grid["experiments"][0]["model"] = {"name": "tiny-resnt"}
    grid["experiments"].append({"task": "classification", "dataset": {"name": "photos", "path": str(tmp_path / "nope")},
                                "model": {"name": "efficientnet-lite0"}, "scenarios": ["B", "C", "E"]})
    problems = problems_of(tmp_path, grid)
    text = "\n".join(problems)
    assert "codecs[0].codec: Unknown codec 'jpg'. Did you mean: jpeg" in text
    assert "codecs[1].qualities[0]: 101 is outside webp's" in text
    assert "codecs[2].chroma:" in text
    assert "codecs[3] (bpg): unavailable: bpgenc not found" in text
    assert "experiments[0].model.name: Unknown model 'tiny-resnt'. Did you mean: tiny-resnet?" in text
    assert f"experiments[1].dataset: {tmp_path / 'nope'}: folder not found" in text
    assert "experiments[1].scenarios[2]: Unknown scenario 'E'" in text
    assert len(problems) >= 7


def test_scenario_requirements(tmp_path: Path) -> None:
    grid = tiny_grid()
    grid["experiments"][0].pop("finetune")
    grid["experiments"].append({"task": "classification", "dataset": {"name": "photos"},
                                "model": {"name": "efficientnet-lite0"}, "scenarios": ["B", "C"],
                                "train": {"epochs": 1, "lr": 0.1}})
    text = "\n".join(problems_of(tmp_path, grid))
    assert "experiments[0].scenarios (C): scenario C needs a 'finetune' schedule" in text
    assert "experiments[1].scenarios (C): scenario C finetunes on a train split, and dataset 'photos' has none" in text
    assert "experiments[1].train: model 'efficientnet-lite0' is pretrained" in text


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ncodecs: [\n  - codec: jpeg\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+, column \d+: invalid YAML"):
        load_grid(path)


def test_validate_command_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_grid(tmp_path / "good.yaml", tiny_grid())
    assert bench("validate", "--grid", good) == 0
    assert "ok (1 experiments, 7 cells)" in capsys.readouterr().out
    bad = tiny_grid()
    bad["codecs"][0]["codec"] = "jpg"
    bad["experiments"][0]["scenarios"] = ["A", "X"]
    path = write_grid(tmp_path / "bad.yaml", bad)
    assert bench("validate", "--grid", path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith(f"bench: error: {path}: ") for line in err)
    assert bench("validate", "--grid", tmp_path / "missing.yaml") == 2
    assert "missing.yaml: grid file not found" in capsys.readouterr().err
