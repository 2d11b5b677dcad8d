"""COCO-format detection datasets: an instances JSON and the folder its images are in.

Category ids are mapped to contiguous labels in increasing id order (COCO's 80 ids run
from 1 to 90 with gaps); ``targets["category_ids"][label]`` gives the id back. Boxes are
read as COCO's ``[x, y, width, height]`` and kept as ``x0, y0, x1, y1``; each object's
``area`` (the segment area, which COCO sorts objects into size ranges by) and ``iscrowd``
are kept for the metric. Images have no classification label.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from bench.datasets.base import Dataset, DatasetParams, ImageSet, LazyImages
from bench.errors import DatasetError
from bench.images import load_image


class CocoParams(DatasetParams):
    #: Folder that the JSON's ``file_name`` entries are relative to.
    images: str
    #: The instances JSON (``instances_val2017.json``).
    annotations: str
    #: The split these two give (``val`` unless they are the training images).
    split: str = Field(default="val", pattern=r"^(train|val)$")
    #: Optionally a training split as well (needed by scenario C and by models trained here).
    train_images: str | None = None
    train_annotations: str | None = None
    #: Read only the first N images (by image id); all when None.
    max_images: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _train_pair(self) -> CocoParams:
        if (self.train_images is None) != (self.train_annotations is None):
            raise ValueError("give train_images and train_annotations together")
        if self.train_images is not None and self.split == "train":
            raise ValueError("split is 'train' already; train_images/train_annotations would be a second one")
        return self


def read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def _list_of_dicts(doc: Any, key: str, path: Path) -> list[dict[str, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise DatasetError(f"{path}: not a COCO instances file (no {key!r} list)")
    items = doc[key]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DatasetError(f"{path}: {key}[{i}] is not an object")
    return items


def _field(item: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    value = item.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DatasetError(f"{path}: {where} has no valid {name!r} (got {value!r})")
    return value


def read_categories(doc: Any, path: Path) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Category ids in increasing order and their names."""
    cats = _list_of_dicts(doc, "categories", path)
    if not cats:
        raise DatasetError(f"{path}: 'categories' is empty")
    pairs = sorted((_field(c, "id", int, f"categories[{i}]", path), str(c.get("name", c["id"])))
                   for i, c in enumerate(cats))
    ids = [p[0] for p in pairs]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: category ids repeat ({sorted(i for i in ids if ids.count(i) > 1)[0]})")
    return tuple(ids), tuple(p[1] for p in pairs)


class Coco(Dataset):
    """A COCO-format detection set (instances JSON + image folder); boxes and labels
    for the detection task, checked against the images before any work."""

    name = "coco"
    version = "1"
    description = "COCO-format detection data: instances JSON + image folder (boxes, labels, areas, crowd)"
    Params = CocoParams
    location_params = ("images", "annotations", "train_images", "train_annotations")
    target_names: ClassVar[tuple[str, ...]] = ("boxes", "box_labels", "box_areas", "box_crowd")

    def _sources(self) -> dict[str, tuple[Path, Path]]:
        p = self.params
        out = {p.split: (Path(p.images).expanduser(), Path(p.annotations).expanduser())}
        if p.train_images is not None and p.train_annotations is not None:
            out["train"] = (Path(p.train_images).expanduser(), Path(p.train_annotations).expanduser())
        return out

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in ("train", "val") if s in self._sources())

    def label(self) -> str:
        return f"coco:{Path(self.params.annotations).stem}"

    def problems(self) -> list[str]:
        out = []
        for images, annotations in self._sources().values():
            if not annotations.is_file():
                out.append(f"{annotations}: annotation file not found")
            if not images.is_dir():
                out.append(f"{images}: image folder not found")
        return out

    def load(self, split: str, cache_dir: Path | None = None) -> ImageSet:
        sources = self._sources()
        if split not in sources:
            raise DatasetError(f"{self.label()} has splits {self.splits}, not {split!r}")
        root, path = sources[split]
        doc = read_json(path)
        cat_ids, classes = read_categories(doc, path)
        for other, (_, other_path) in sources.items():
            if other != split and read_categories(read_json(other_path), other_path) != (cat_ids, classes):
                raise DatasetError(f"{path}: categories differ from those of {other_path}")
        entries = self._images(doc, path)
        if self.params.max_images is not None:
            entries = entries[: self.params.max_images]
        boxes, labels, areas, crowd = self._annotations(doc, path, [e["id"] for e in entries], cat_ids)
        missing = [e for e in entries if not (root / e["file_name"]).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DatasetError(f"{path}: image {missing[0]['id']} file {root / missing[0]['file_name']} not found{more}")
        images = LazyImages([root / e["file_name"] for e in entries], load_image, cache_dir)  # read on use
        for e, shape in zip(entries, images.shapes):
            declared = (e.get("height"), e.get("width"))
            if None not in declared and declared != shape[:2]:
                raise DatasetError(f"{path}: image {e['id']} ({e['file_name']}) is {shape[1]}x{shape[0]}, "
                                   f"the annotations say {declared[1]}x{declared[0]}")
        return ImageSet(
            dataset=self.label(), split=split, ids=[e["file_name"] for e in entries], images=images,
            labels=None, classes=classes,
            targets={"boxes": boxes, "box_labels": labels, "box_areas": areas, "box_crowd": crowd,
                     "category_ids": cat_ids},
        )

    @staticmethod
    def _images(doc: Any, path: Path) -> list[dict[str, Any]]:
        entries = []
        seen: set[int] = set()
        for i, e in enumerate(_list_of_dicts(doc, "images", path)):
            image_id = _field(e, "id", int, f"images[{i}]", path)
            _field(e, "file_name", str, f"images[{i}] (id {image_id})", path)
            if image_id in seen:
                raise DatasetError(f"{path}: image id {image_id} appears twice")
            seen.add(image_id)
            entries.append(e)
        return sorted(entries, key=lambda e: e["id"])

    @staticmethod
    def _annotations(doc: Any, path: Path, image_ids: list[int], cat_ids: tuple[int, ...]) -> tuple[list, list, list, list]:
        """Per image (in ``image_ids`` order): boxes, labels, areas and crowd flags."""
        all_ids = {e["id"] for e in doc["images"]}
        label_of = {c: i for i, c in enumerate(cat_ids)}
        slot = {image_id: k for k, image_id in enumerate(image_ids)}
        per: list[list[tuple[list[float], int, float, bool]]] = [[] for _ in image_ids]
        for i, a in enumerate(_list_of_dicts(doc, "annotations", path)):
            where = f"annotation {a.get('id', f'#{i}')}"
            image_id = _field(a, "image_id", int, where, path)
            if image_id not in all_ids:
                raise DatasetError(f"{path}: {where} refers to image_id {image_id}, which is not in 'images'")
            category = _field(a, "category_id", int, where, path)
            if category not in label_of:
                raise DatasetError(f"{path}: {where} has category_id {category}, which is not in 'categories'")
            bbox = a.get("bbox")
            if (not isinstance(bbox, list) or len(bbox) != 4
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
                    or bbox[2] < 0 or bbox[3] < 0):
                raise DatasetError(f"{path}: {where} has a malformed bbox {bbox!r} (expected [x, y, width, height])")
            if image_id not in slot:  # beyond max_images
                continue
            x, y, w, h = (float(v) for v in bbox)
            area = a.get("area", w * h)
            if not isinstance(area, (int, float)) or isinstance(area, bool):
                raise DatasetError(f"{path}: {where} has a malformed area {area!r}")
            per[slot[image_id]].append(([x, y, x + w, y + h], label_of[category], float(area), bool(a.get("iscrowd", 0))))
        boxes = [np.array([o[0] for o in objs], np.float32).reshape(-1, 4) for objs in per]
        labels = [np.array([o[1] for o in objs], np.int64) for objs in per]
        areas = [np.array([o[2] for o in objs], np.float64) for objs in per]
        crowd = [np.array([o[3] for o in objs], bool) for objs in per]
        return boxes, labels, areas, crowd
