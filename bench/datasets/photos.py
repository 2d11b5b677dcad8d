"""Real photographs: the ones that ship inside scikit-image, scikit-learn and matplotlib,
or any folder of images a user points at."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from bench.datasets.base import Dataset, DatasetParams, ImageSet, LazyImages
from bench.errors import DatasetError
from bench.images import IMAGE_SUFFIXES, load_image

#: (package, path inside the package) of real photographs shipped in wheels.
SHIPPED_PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/camera.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/coins.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/motorcycle_right.png"),
    ("skimage", "data/rocket.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)


def package_files(files: Sequence[tuple[str, str]], what: str) -> list[Path]:
    """Paths of ``(package, relative path)`` files that ship inside installed packages; a
    ``DatasetError`` naming the missing package or file otherwise (``what`` names the set)."""
    paths = []
    for package, rel in files:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise DatasetError(f"{what}: package {package!r} is not installed (it ships {rel})")
        path = Path(spec.origin).parent / rel
        if not path.is_file():
            raise DatasetError(f"{what}: {path} is missing from the installed {package}")
        paths.append(path)
    return paths


def shipped_photo_paths() -> list[Path]:
    """Paths of the shipped photos; a ``DatasetError`` naming the missing package otherwise."""
    return package_files(SHIPPED_PHOTOS, "photos")


class PhotosParams(DatasetParams):
    #: A folder of images (searched recursively); the shipped photos when omitted.
    path: str | None = None


class Photos(Dataset):
    """Unlabelled real photos, evaluated by agreement with the model's own predictions
    on the originals (top-1 agreement: same top-1 class; top-5: original top-1 in the top 5)."""

    name = "photos"
    version = "1"
    description = "real photos (shipped in scikit-image/scikit-learn/matplotlib, or a folder); labels = own predictions"
    Params = PhotosParams
    location_params = ("path",)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("val",)

    @property
    def has_labels(self) -> bool:
        return False

    def label(self) -> str:
        return "photos" if self.params.path is None else f"photos:{Path(self.params.path).name}"

    def _folder_files(self) -> list[Path]:
        root = Path(self.params.path).expanduser()
        if not root.exists():
            raise DatasetError(f"{root}: folder not found")
        if not root.is_dir():
            raise DatasetError(f"{root}: not a folder")
        if not os.access(root, os.R_OK | os.X_OK):
            raise DatasetError(f"{root}: folder is not readable")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DatasetError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
        return files

    def files(self) -> list[Path]:
        return shipped_photo_paths() if self.params.path is None else self._folder_files()

    def problems(self) -> list[str]:
        try:
            self.files()
        except DatasetError as exc:
            return [str(exc)]
        return []

    def load(self, split: str, cache_dir: Path | None = None) -> ImageSet:
        if split != "val":
            raise DatasetError(f"photos has only a 'val' split, not {split!r}")
        files = self.files()
        root = Path(self.params.path).expanduser() if self.params.path else None
        ids = [str(p.relative_to(root)) if root else p.name for p in files]
        images = LazyImages(files, load_image, cache_dir)
        return ImageSet(self.label(), split, ids, images, labels=None, classes=None)
