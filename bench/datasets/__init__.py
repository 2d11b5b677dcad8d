"""Dataset plugins: the embedded ``shapes`` set, shipped ``photos``, user folders."""

from __future__ import annotations

from bench.datasets.base import Dataset, ImageSet, validate_dataset_class
from bench.registry import Registry

DATASETS: Registry[type[Dataset]] = Registry("dataset", group="bench.datasets", validate=validate_dataset_class)
DATASETS.register("shapes", "bench.datasets.shapes:Shapes")
DATASETS.register("photos", "bench.datasets.photos:Photos")

__all__ = ["DATASETS", "Dataset", "ImageSet"]
DATASETS.register("coco", "bench.datasets.coco:Coco")
DATASETS.register("labelpng", "bench.datasets.labelpng:LabelPng")
DATASETS.register("imagefolder", "bench.datasets.imagefolder:ImageFolder")
