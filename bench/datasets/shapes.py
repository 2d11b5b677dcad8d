"""The embedded ``shapes`` dataset: generated from a seed, cached on disk once made."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from pydantic import Field

from bench.datasets.base import Dataset, DatasetParams, ImageSet
from bench.keys import stable_hash
from bench.datasets.synthetic import CLASSES, GENERATOR_VERSION, ShapesSpec, ShapesSplit, generate


class ShapesParams(DatasetParams):
    seed: int = 0
    n_train: int = Field(default=2000, ge=1, le=1_000_000)
    n_val: int = Field(default=500, ge=1, le=1_000_000)
    size: int = Field(default=128, ge=32, le=1024, multiple_of=8)


class Shapes(Dataset):
    """Textured scenes with 1–3 objects of 10 classes (5 shapes × plain/striped fill):
    a class label (largest object), boxes and a segmentation map for every image."""

    name = "shapes"
    version = str(GENERATOR_VERSION)  # a new generator means new images: new cache keys
    description = "embedded synthetic scenes, 10 classes; labels, boxes and masks; generated from a seed"
    Params = ShapesParams
    target_names = ("boxes", "box_labels", "masks")

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "val")

    def _spec(self) -> ShapesSpec:
        p = self.params
        return ShapesSpec(seed=p.seed, n_train=p.n_train, n_val=p.n_val, size=p.size)

    def _generate_cached(self, split: str, cache_dir: Path | None) -> ShapesSplit:
        if cache_dir is None:
            return generate(self._spec(), split)
        path = Path(cache_dir) / "datasets" / f"shapes-{stable_hash(self.identity(), 16)}-{split}.npz"
        if path.exists():
            with np.load(path) as z:
                counts = z["box_counts"]
                cuts = np.cumsum(counts)[:-1]
                return ShapesSplit(
                    images=z["images"], labels=z["labels"],
                    boxes=np.split(z["boxes"], cuts), box_labels=np.split(z["box_labels"], cuts),
                    masks=z["masks"],
                )
        data = generate(self._spec(), split)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, images=data.images, labels=data.labels, masks=data.masks,
                boxes=np.concatenate(data.boxes).reshape(-1, 4).astype(np.float32),
                box_labels=np.concatenate(data.box_labels).astype(np.int64),
                box_counts=np.array([len(b) for b in data.boxes], dtype=np.int64),
            )
        os.replace(tmp, path)
        return data

    def load(self, split: str, cache_dir: Path | None = None) -> ImageSet:
        if split not in self.splits:
            raise ValueError(f"shapes has splits {self.splits}, not {split!r}")
        data = self._generate_cached(split, cache_dir)
        n = len(data.images)
        return ImageSet(
            dataset=self.label(), split=split, ids=[f"{split}-{i:06d}" for i in range(n)],
            images=list(data.images), labels=np.asarray(data.labels, dtype=np.int64), classes=CLASSES,
            targets={"boxes": data.boxes, "box_labels": data.box_labels, "masks": data.masks},
        )
