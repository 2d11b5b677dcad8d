"""Shared fixtures: the Kodak images that sit beside the repository in ../shared/data/kodak,
and torch on one thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.images import load_image

KODAK_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"
KODAK_COUNT = 24


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    """The Kodak folder; a missing or incomplete one fails the test (it is test data, not optional)."""
    found = sorted(KODAK_DIR.glob("kodim*.png")) if KODAK_DIR.is_dir() else []
    if len(found) != KODAK_COUNT:
        pytest.fail(f"expected {KODAK_COUNT} Kodak PNGs in {KODAK_DIR}, found {len(found)}")
    return KODAK_DIR


@pytest.fixture(scope="session")
def kodak_images(kodak_dir: Path) -> list[np.ndarray]:
    """All 24 Kodak images as (H, W, 3) uint8 arrays, read once per session."""
    return [load_image(p) for p in sorted(kodak_dir.glob("kodim*.png"))]


@pytest.fixture(scope="session")
def kodak_crop(kodak_images: list[np.ndarray]) -> np.ndarray:
    """A 192x256 crop of kodim23 (parrots: edges and flat areas) for fast codec tests."""
    return np.ascontiguousarray(kodak_images[22][100:292, 200:456])


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for a module's tests (``pytest.mark.usefixtures``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
