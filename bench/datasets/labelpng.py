"""Segmentation datasets laid out as images plus single-channel label PNGs (ADE20K,
Cityscapes, Pascal VOC and most of mmsegmentation's datasets).

An image ``<images>/<key><image_suffix>`` goes with ``<labels>/<key><label_suffix>``
(``key`` may include sub-folders, as Cityscapes' city folders). A stored value ``v`` is
class ``v + label_offset``; values that become negative, and ``ignore_index`` itself,
are unlabelled. ADE20K: ``label_offset: -1`` (0 = "other" is ignored, 1..150 become
0..149: mmsegmentation's ``reduce_zero_label``). Cityscapes: the ``*_labelTrainIds.png``
maps, 19 classes, ignore index 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field, model_validator

from bench.datasets.base import Dataset, DatasetParams, ImageSet
from bench.errors import DatasetError
from bench.images import load_image

#: Label-map modes read as class indices (palette images give their indices, as VOC's do).
LABEL_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I")


class LabelPngParams(DatasetParams):
    #: Folder of images (searched recursively for names ending in ``image_suffix``).
    images: str
    #: Folder of label maps, laid out as the images.
    labels: str
    #: Class names, index = class id; or ``classes_file`` with one name per line.
    classes: tuple[str, ...] | None = Field(default=None, min_length=1)
    classes_file: str | None = None
    ignore_index: int = Field(default=255, ge=0, le=65535)
    #: Added to every stored value (ADE20K: -1); values that become negative are ignored.
    label_offset: int = Field(default=0, ge=-65535, le=65535)
    image_suffix: str = ".jpg"
    label_suffix: str = ".png"
    #: The split these folders give (``val`` unless they are the training images).
    split: str = Field(default="val", pattern=r"^(train|val)$")
    #: Optionally a training split as well (needed by scenario C and by models trained here).
    train_images: str | None = None
    train_labels: str | None = None
    #: Read only the first N images (in path order); all when None.
    max_images: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> LabelPngParams:
        if (self.classes is None) == (self.classes_file is None):
            raise ValueError("give exactly one of classes (a list of names) and classes_file")
        if (self.train_images is None) != (self.train_labels is None):
            raise ValueError("give train_images and train_labels together")
        if self.train_images is not None and self.split == "train":
            raise ValueError("split is 'train' already; train_images/train_labels would be a second one")
        if not self.image_suffix or not self.label_suffix:
            raise ValueError("image_suffix and label_suffix must not be empty")
        return self


def read_classes_file(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: classes file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read classes file ({exc})") from None
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise DatasetError(f"{path}: classes file has no class names")
    return names


def read_label_map(path: Path) -> np.ndarray:
    """The stored values of a single-channel label image, as int64."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in LABEL_MODES:
                raise DatasetError(f"{path}: a label map needs one channel (mode {', '.join(LABEL_MODES)}), "
                                   f"not mode {img.mode}")
            return np.asarray(img).astype(np.int64)
    except FileNotFoundError:
        raise DatasetError(f"{path}: label map not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable label image ({exc})") from None


class LabelPng(Dataset):
    """Images and label PNGs (ADE20K / Cityscapes / VOC layout) for semantic segmentation."""

    name = "labelpng"
    version = "1"
    description = "segmentation data as images + label PNGs (ADE20K, Cityscapes, VOC layouts)"
    Params = LabelPngParams
    location_params = ("images", "labels", "train_images", "train_labels", "classes_file")
    target_names: ClassVar[tuple[str, ...]] = ("masks",)

    def _sources(self) -> dict[str, tuple[Path, Path]]:
        p = self.params
        out = {p.split: (Path(p.images).expanduser(), Path(p.labels).expanduser())}
        if p.train_images is not None and p.train_labels is not None:
            out["train"] = (Path(p.train_images).expanduser(), Path(p.train_labels).expanduser())
        return out

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in ("train", "val") if s in self._sources())

    def label(self) -> str:
        return f"labelpng:{Path(self.params.labels).name}"

    def classes(self) -> tuple[str, ...]:
        if self.params.classes is not None:
            return self.params.classes
        return read_classes_file(Path(self.params.classes_file).expanduser())

    def problems(self) -> list[str]:
        out = []
        for images, labels in self._sources().values():
            for folder, what in ((images, "image"), (labels, "label")):
                if not folder.is_dir():
                    out.append(f"{folder}: {what} folder not found")
        try:
            classes = self.classes()
        except DatasetError as exc:
            out.append(str(exc))
        else:
            if self.params.ignore_index < len(classes):
                out.append(f"ignore_index {self.params.ignore_index} is a class id ({len(classes)} classes)")
        return out

    def _pairs(self, images: Path, labels: Path) -> list[tuple[Path, Path]]:
        suffix = self.params.image_suffix
        found = sorted(p for p in images.rglob(f"*{suffix}") if p.is_file())
        if not found:
            raise DatasetError(f"{images}: no images ending in {suffix!r}")
        if self.params.max_images is not None:
            found = found[: self.params.max_images]
        pairs = []
        for image in found:
            key = str(image.relative_to(images))[: -len(suffix)]
            label = labels / f"{key}{self.params.label_suffix}"
            if not label.is_file():
                raise DatasetError(f"{label}: label map for {image} not found")
            pairs.append((image, label))
        return pairs

    def _classes_of(self, path: Path, raw: np.ndarray, n: int) -> np.ndarray:
        ignore = self.params.ignore_index
        ignored = raw == ignore
        values = raw + self.params.label_offset
        ignored |= values < 0
        bad = np.unique(values[~ignored & (values >= n)])
        if bad.size:
            shown = ", ".join(str(int(v - self.params.label_offset)) for v in bad[:5])
            raise DatasetError(f"{path}: stored values {shown} are beyond the {n} classes "
                               f"(offset {self.params.label_offset}, ignore index {ignore})")
        values[ignored] = ignore
        return values.astype(np.uint8 if max(ignore, n - 1) <= 255 else np.int32)

    def load(self, split: str, cache_dir: Path | None = None) -> ImageSet:
        sources = self._sources()
        if split not in sources:
            raise DatasetError(f"{self.label()} has splits {self.splits}, not {split!r}")
        classes = self.classes()
        images, masks, ids = [], [], []
        root = sources[split][0]
        for image_path, label_path in self._pairs(*sources[split]):
            image = load_image(image_path)
            raw = read_label_map(label_path)
            if raw.shape != image.shape[:2]:
                raise DatasetError(f"{label_path}: label map is {raw.shape[1]}x{raw.shape[0]}, "
                                   f"its image {image_path.name} is {image.shape[1]}x{image.shape[0]}")
            images.append(image)
            masks.append(self._classes_of(label_path, raw, len(classes)))
            ids.append(str(image_path.relative_to(root)))
        same = len({m.shape for m in masks}) == 1
        return ImageSet(
            dataset=self.label(), split=split, ids=ids, images=images, labels=None, classes=classes,
            targets={"masks": np.stack(masks) if same else masks, "mask_classes": classes,
                     "ignore_index": self.params.ignore_index},
        )
