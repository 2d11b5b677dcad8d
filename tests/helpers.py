"""Small grids and a CLI runner shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.cli import main


def tiny_grid(**overrides: Any) -> dict[str, Any]:
    """A grid that runs A/B/C on a few dozen 32×32 scenes in seconds."""
    grid: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "codecs": [{"codec": "jpeg", "qualities": [5, 80]}, {"codec": "webp", "qualities": [10]}],
        "experiments": [{
            "task": "classification",
            "dataset": {"name": "shapes", "n_train": 60, "n_val": 30, "size": 32},
            "model": {"name": "tiny-resnet", "widths": [8, 16]},
            "scenarios": ["A", "B", "C"],
            "train": {"epochs": 2, "batch_size": 20, "lr": 0.003},
            "finetune": {"epochs": 1, "batch_size": 20, "lr": 0.001},
        }],
    }
    grid.update(overrides)
    return grid


def write_grid(path: Path, grid: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def bench(*args: str | Path) -> int:
    return main([str(a) for a in args])
