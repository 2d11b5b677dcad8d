"""Labelled image classification read from folders, lazily (a split of 1.28 M files streams).

``root`` is the dataset's folder; every other path is relative to it unless absolute.

Layouts, per split:

- **class folders** (torchvision ``ImageFolder``; ImageNet train, RESISC45, EuroSAT, and
  ImageNet val reorganised into synset folders): ``root/<folder>/<class>/**/<image>``, the
  split folders named by ``folders`` (``train`` and ``val`` by default; ``.`` for class
  folders straight under ``root``);
- **split list files** (MINC-2500's ``labels/train1.txt``): ``lists`` maps a split to a file
  of image paths relative to ``root``, one per line, each optionally followed by its class
  (after a tab, or a space when neither has spaces); without a class, the image's folder
  name is its class;
- **a flat folder and its labels** (ImageNet validation): ``labels`` maps a split whose folder
  holds the images themselves to the ILSVRC2012 devkit (its folder, or its
  ``data/ILSVRC2012_validation_ground_truth.txt`` with ``meta.mat`` beside it: line *n* is the
  1-based ILSVRC2012_ID of ``ILSVRC2012_val_<n>``, a WordNet id through ``meta.mat``), or to
  Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``, the first token the synset).

The class order (what a label means) is fixed by ``classes``:

- ``folders`` (default): the sorted names of the classes of every split, which is torchvision
  ``ImageFolder``'s order (sorted folder names) when every split has every class;
- ``imagenet``: ImageNet-1k's 1000 WordNet ids in the standard index order
  (``bench.models.imagenet``), the indices pretrained ImageNet models output; every class must
  be one of them;
- ``classes_file``: a file of class names, one per line, in order.

A class found that the order does not hold is an error naming it. ``class_map`` (or
``class_map_file``, ``dataset name: model name`` lines) renames classes to the names a model
knows them by (``tabby: n02123045``): the renamed classes are the split's ``classes``, so a
classifier matches them by name (``bench.tasks.classification``) and the map is part of the
split's content fingerprint. With ``classes: imagenet`` the renamed classes are the synsets.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from bench.datasets.base import Dataset, DatasetParams, ImageSet, LazyImages
from bench.datasets.labelpng import read_classes_file
from bench.errors import DatasetError
from bench.images import IMAGE_SUFFIXES, load_image
from bench.registry import did_you_mean

SPLITS = ("train", "val")
Split = Literal["train", "val"]
DEVKIT_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
KAGGLE_HEADER = ["ImageId", "PredictionString"]


def spread(entries: list[Any], n: int | None) -> list[Any]:
    """``n`` of ``entries`` spread evenly over their order (all when None or fewer): a
    subset of class folders keeps every class's share."""
    if n is None or n >= len(entries):
        return entries
    return [entries[int(i)] for i in np.unique(np.linspace(0, len(entries) - 1, n).round().astype(int))]


class ImageFolderParams(DatasetParams):
    #: The dataset's folder; the other paths are relative to it unless absolute.
    root: str
    #: Split → its folder: class folders, or the images themselves when ``labels`` has the split.
    folders: dict[Split, str] = Field(default_factory=lambda: {"train": "train", "val": "val"}, min_length=1)
    #: Split → a list file of image paths (instead of ``folders``).
    lists: dict[Split, str] | None = Field(default=None, min_length=1)
    #: Split → the labels of its flat folder: the ImageNet devkit or ``LOC_val_solution.csv``.
    labels: dict[Split, str] | None = Field(default=None, min_length=1)
    #: The class order: sorted names (``folders``) or ImageNet's 1000 (``imagenet``).
    classes: Literal["folders", "imagenet"] = "folders"
    #: The class order as a file of names, one per line.
    classes_file: str | None = None
    #: Dataset class name → the name a model knows it by.
    class_map: dict[str, str] | None = None
    class_map_file: str | None = None
    #: Read N images of each split, spread evenly over its id order (every class keeps its
    #: share: a training subset for scenario C); all when None.
    max_images: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> ImageFolderParams:
        if self.lists is not None and "folders" in self.model_fields_set:
            raise ValueError("give folders (split folders) or lists (split list files), not both")
        if self.labels is not None and self.lists is not None:
            raise ValueError("labels label a split's flat folder (folders:), not list files")
        for split in self.labels or {}:
            if split not in self.folders:
                raise ValueError(f"labels: split {split!r} has no folder in folders")
        if self.classes_file is not None and self.classes != "folders":
            raise ValueError("give classes: imagenet or classes_file, not both")
        if self.class_map is not None and self.class_map_file is not None:
            raise ValueError("give class_map or class_map_file, not both")
        return self


# --- what a split's folder or file says: (image, class name) pairs ----------------------------


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _is_image(name: str) -> bool:
    return _visible(name) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _images_under(folder: Path) -> list[Path]:
    """Every image below ``folder`` (hidden files and folders left out), in path order."""
    found = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if _visible(d)]
        found += [Path(top) / f for f in files if _is_image(f)]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    """``folder``'s entries by name; a ``DatasetError`` when it cannot be read."""
    try:
        return sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot read folder ({exc.strerror or exc})") from None


def _flat_images(folder: Path) -> list[Path]:
    images = [folder / e.name for e in _scan(folder) if e.is_file() and _is_image(e.name)]
    if not images:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) directly in the folder")
    return images


def _read_lines(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read {what} ({exc})") from None


@dataclass(frozen=True)
class ClassFolders:
    """``folder/<class>/**/<image>``: torchvision ``ImageFolder``."""

    folder: Path

    def missing(self) -> list[str]:
        """What of this source is not there (checked before any work)."""
        return [] if self.folder.is_dir() else [f"{self.folder}: folder not found"]

    def names(self) -> dict[str, str]:
        """Class name → where it comes from (for messages)."""
        entries = _scan(self.folder)
        if stray := [e.name for e in entries if e.is_file() and _is_image(e.name)]:
            raise DatasetError(f"{self.folder}: image {stray[0]} is not in a class folder "
                               f"({self.folder}/<class>/<image>; a flat folder needs labels:)")
        names = {e.name: str(self.folder / e.name) for e in entries if e.is_dir() and _visible(e.name)}
        if not names:
            raise DatasetError(f"{self.folder}: no class folders ({self.folder}/<class>/<image>)")
        return names

    def entries(self) -> list[tuple[Path, str]]:
        out = []
        for name in self.names():
            images = _images_under(self.folder / name)
            if not images:
                raise DatasetError(f"{self.folder / name}: empty class folder (no {', '.join(IMAGE_SUFFIXES)} images)")
            out += [(p, name) for p in images]
        return out


@dataclass(frozen=True)
class ListFile:
    """A file of image paths relative to ``root``, each with its class or in its class's folder."""

    root: Path
    path: Path

    def missing(self) -> list[str]:
        return [] if self.path.is_file() else [f"{self.path}: list file not found"]

    def lines(self) -> list[tuple[str, Path, str]]:
        """(where, image, class name) per non-empty line."""
        out = []
        for n, line in enumerate(_read_lines(self.path, "list file"), 1):
            if not line.strip():
                continue
            where = f"{self.path} line {n}"
            fields = line.strip().split("\t") if "\t" in line else line.split()
            if len(fields) > 2:
                raise DatasetError(f"{where}: {len(fields)} fields; a line is a path and optionally a class "
                                   "(separate them by a tab when a name has spaces)")
            rel = Path(fields[0].strip())
            if rel.is_absolute() or ".." in rel.parts:
                raise DatasetError(f"{where}: {rel} is not a path inside {self.root}")
            name = fields[1].strip() if len(fields) == 2 else rel.parent.name
            if not name:
                raise DatasetError(f"{where}: {rel} has no class "
                                   "(give one after the path, or put the image in its class's folder)")
            out.append((where, self.root / rel, name))
        if not out:
            raise DatasetError(f"{self.path}: list file names no images")
        return out

    def names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for where, _, name in self.lines():
            names.setdefault(name, where)
        return names

    def entries(self) -> list[tuple[Path, str]]:
        lines, seen = self.lines(), {}
        for where, image, _ in lines:
            if image in seen:
                raise DatasetError(f"{where}: {image.relative_to(self.root)} is listed twice (also {seen[image]})")
            if not image.is_file():
                raise DatasetError(f"{where}: image {image} not found")
            seen[image] = where
        return [(image, name) for _, image, name in lines]


def read_meta_mat(path: Path) -> dict[int, str]:
    """ILSVRC2012_ID → WordNet id of the devkit's leaf synsets (the 1000 classes), read as
    torchvision's ``ImageNet`` dataset reads ``data/meta.mat``."""
    if not path.is_file():
        raise DatasetError(f"{path}: devkit meta.mat not found")
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DatasetError(f"{path}: reading the devkit's meta.mat needs scipy (pip install scipy)") from None
    try:
        synsets = loadmat(path, squeeze_me=True)["synsets"]
        fields = ("ILSVRC2012_ID", "WNID", "num_children")
        ids, wnids, children = (np.atleast_1d(synsets[f]) for f in fields)
    except Exception as exc:  # scipy raises several kinds on a file that is not a MAT file
        raise DatasetError(f"{path}: not an ImageNet devkit meta.mat ({type(exc).__name__}: {exc})") from None
    return {int(i): str(w) for i, w, c in zip(ids, wnids, children) if int(c) == 0}


def _image_number(image: Path) -> int:
    match = re.search(r"_(\d+)$", image.stem)
    if match is None:
        raise DatasetError(f"{image}: not named as ImageNet validation images are (ILSVRC2012_val_<n>)")
    return int(match.group(1))


@dataclass(frozen=True)
class DevkitLabels:
    """A flat folder of ``ILSVRC2012_val_<n>`` images and the devkit's ground truth."""

    folder: Path
    truth: Path
    meta: Path

    @classmethod
    def at(cls, folder: Path, labels: Path) -> DevkitLabels:
        """``labels`` is the devkit folder, or its ground-truth file (``meta.mat`` beside it)."""
        if labels.is_dir():
            return cls(folder, labels / "data" / DEVKIT_TRUTH, labels / "data" / "meta.mat")
        return cls(folder, labels, labels.parent / "meta.mat")

    def missing(self) -> list[str]:
        files = ((self.truth, "ground-truth file"), (self.meta, "devkit meta.mat"))
        return ([] if self.folder.is_dir() else [f"{self.folder}: folder not found"]) + [
            f"{path}: {what} not found" for path, what in files if not path.is_file()]

    def synsets(self) -> list[str]:
        """The WordNet id of image 1, 2, ... (line by line)."""
        by_id = read_meta_mat(self.meta)
        lines = _read_lines(self.truth, "ground-truth file")
        while lines and not lines[-1].strip():  # a trailing blank line labels no image
            lines.pop()
        out = []
        for n, line in enumerate(lines, 1):
            try:
                out.append(by_id[int(line)])
            except (ValueError, KeyError):
                raise DatasetError(f"{self.truth} line {n}: {line.strip()!r} is not an ILSVRC2012_ID of "
                                   f"{self.meta} (1..{len(by_id)})") from None
        return out

    def names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for n, synset in enumerate(self.synsets(), 1):
            names.setdefault(synset, f"{self.truth} line {n}")
        return names

    def entries(self) -> list[tuple[Path, str]]:
        synsets, images = self.synsets(), _flat_images(self.folder)
        if len(synsets) != len(images):
            raise DatasetError(f"{self.truth}: {len(synsets)} labels for the {len(images)} images in {self.folder}")
        numbers: dict[int, Path] = {}
        for image in images:
            n = _image_number(image)
            if not 1 <= n <= len(synsets):
                raise DatasetError(f"{image}: image number {n} has no line in {self.truth} (1..{len(synsets)})")
            if n in numbers:
                raise DatasetError(f"{image}: image number {n} again (also {numbers[n].name})")
            numbers[n] = image
        return [(image, synsets[n - 1]) for n, image in numbers.items()]


@dataclass(frozen=True)
class KaggleLabels:
    """A flat folder of images and Kaggle's ``LOC_val_solution.csv`` (one row per image)."""

    folder: Path
    solution: Path

    def missing(self) -> list[str]:
        return ([] if self.folder.is_dir() else [f"{self.folder}: folder not found"]) + (
            [] if self.solution.is_file() else [f"{self.solution}: solution file not found"])

    def rows(self) -> dict[str, tuple[str, str]]:
        """Image id → (its synset, where)."""
        from bench.models.imagenet import imagenet_synsets

        known = set(imagenet_synsets())
        lines = _read_lines(self.solution, "solution file")
        reader = csv.reader(lines)
        if next(reader, None) != KAGGLE_HEADER:
            raise DatasetError(f"{self.solution}: not a LOC_val_solution.csv "
                               f"(its header is not {','.join(KAGGLE_HEADER)})")
        out: dict[str, tuple[str, str]] = {}
        for n, row in enumerate(reader, 2):
            where = f"{self.solution} line {n}"
            if not row:
                continue
            if len(row) != 2 or not row[1].split():
                raise DatasetError(f"{where}: expected ImageId,PredictionString with a synset first")
            image, synset = row[0].strip(), row[1].split()[0]
            if synset not in known:
                raise DatasetError(f"{where}: unknown synset {synset!r} (not an ImageNet-1k class)")
            if image in out:
                raise DatasetError(f"{where}: image {image} again (also {out[image][1]})")
            out[image] = (synset, where)
        return out

    def names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for synset, where in self.rows().values():
            names.setdefault(synset, where)
        return names

    def entries(self) -> list[tuple[Path, str]]:
        rows, stems = self.rows(), {}
        for image in _flat_images(self.folder):
            if image.stem in stems:
                raise DatasetError(f"{image}: image {image.stem} again (also {stems[image.stem].name})")
            stems[image.stem] = image
        if missing := [p for stem, p in stems.items() if stem not in rows]:
            raise DatasetError(f"{missing[0]}: image not in {self.solution}"
                               + (f" (nor are {len(missing) - 1} more)" if len(missing) > 1 else ""))
        if extra := [stem for stem in rows if stem not in stems]:
            raise DatasetError(f"{rows[extra[0]][1]}: image {extra[0]} is not in {self.folder}"
                               + (f" (nor are {len(extra) - 1} more)" if len(extra) > 1 else ""))
        return [(p, rows[stem][0]) for stem, p in stems.items()]


Source = ClassFolders | ListFile | DevkitLabels | KaggleLabels


# --- class order -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassOrder:
    """The split's ``classes`` (renamed by the class map) and each dataset class's label."""

    names: tuple[str, ...]
    label: dict[str, int]


def read_class_map(path: Path) -> dict[str, str]:
    """``dataset name: model name`` per line (split at the last colon; blank lines skipped)."""
    out: dict[str, str] = {}
    for n, line in enumerate(_read_lines(path, "class map file"), 1):
        if not line.strip():
            continue
        name, sep, target = line.rpartition(":")
        if not sep or not name.strip() or not target.strip():
            raise DatasetError(f"{path} line {n}: expected 'dataset name: model name'")
        if name.strip() in out:
            raise DatasetError(f"{path} line {n}: {name.strip()!r} is mapped twice")
        out[name.strip()] = target.strip()
    return out


def _not_in(found: dict[str, str], allowed: set[str], what: str, to_model: dict[str, str]) -> None:
    """A ``DatasetError`` naming every class of ``found`` (name → where) whose name as a
    model knows it is not in ``allowed``."""
    bad = [n for n in found if to_model[n] not in allowed]
    if not bad:
        return
    first = bad[0] if to_model[bad[0]] == bad[0] else f"{bad[0]}' (class_map: '{to_model[bad[0]]}"
    rest = f"; nor are {', '.join(bad[1:10])}{' ...' if len(bad) > 10 else ''}" if len(bad) > 1 else ""
    raise DatasetError(f"{found[bad[0]]}: class '{first}' is not {what}{rest}")


def class_order(found: dict[str, str], classes: str, classes_file: Path | None,
                rename: dict[str, str]) -> ClassOrder:
    """The order of the ``found`` classes (name → where it was seen) that ``classes`` or
    ``classes_file`` fixes, the classes renamed by ``rename``."""
    listed = read_classes_file(classes_file) if classes_file is not None else None
    if listed is not None and len(set(listed)) != len(listed):
        raise DatasetError(f"{classes_file}: class {next(c for c in listed if listed.count(c) > 1)!r} is listed twice")
    for name in rename:
        if name not in found and name not in (listed or ()):
            raise DatasetError(f"class_map: {name!r} is not a class of the dataset.{did_you_mean(name, list(found))}")
    to_model = {n: rename.get(n, n) for n in (*found, *(listed or ()))}
    targets: dict[str, str] = {}
    for name, target in to_model.items():
        if targets.setdefault(target, name) != name:
            raise DatasetError(f"class_map: {targets[target]!r} and {name!r} are both {target!r}")
    if classes == "imagenet":
        from bench.models.imagenet import imagenet_synsets

        synsets = imagenet_synsets()
        position = {s: i for i, s in enumerate(synsets)}
        _not_in(found, set(position), "an ImageNet synset (classes: imagenet)", to_model)
        return ClassOrder(synsets, {n: position[to_model[n]] for n in found})
    if listed is not None:
        _not_in(found, set(listed), f"in classes_file {classes_file}", {n: n for n in found})
    order = listed if listed is not None else tuple(sorted(found))
    return ClassOrder(tuple(to_model[n] for n in order), {n: i for i, n in enumerate(order)})


# --- the plugin ---------------------------------------------------------------------------------


class ImageFolder(Dataset):
    """Labelled images in class folders, split lists, or ImageNet's flat validation folder
    with the devkit's or Kaggle's labels; ids are paths relative to ``root``."""

    name = "imagefolder"
    version = "1"
    description = "labelled images from disk: class folders, split lists, ImageNet val (devkit or Kaggle CSV)"
    Params = ImageFolderParams
    location_params = ("root", "folders", "lists", "labels", "classes_file", "class_map_file")

    def _root(self) -> Path:
        return Path(self.params.root).expanduser()

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self._root() / path

    @property
    def splits(self) -> tuple[str, ...]:
        p = self.params
        if p.lists is not None:
            return tuple(s for s in SPLITS if s in p.lists)
        # the splits named (folders given, or labelled) must be there; of the defaults, those that are
        named = set(p.folders) if "folders" in p.model_fields_set else set(p.labels or ())
        return tuple(s for s in SPLITS if s in p.folders and (s in named or self._path(p.folders[s]).is_dir()))

    def label(self) -> str:
        return f"imagefolder:{Path(os.path.abspath(self._root())).name}"  # the name given, not a link's target

    def split_source(self, split: str) -> Source:
        """Where ``split``'s images and labels are read from."""
        p = self.params
        if p.lists is not None:
            return ListFile(self._root(), self._path(p.lists[split]))
        folder = self._path(p.folders[split])
        if p.labels is None or split not in p.labels:
            return ClassFolders(folder)
        labels = self._path(p.labels[split])
        return KaggleLabels(folder, labels) if labels.suffix.lower() == ".csv" else DevkitLabels.at(folder, labels)

    def _missing(self) -> list[str]:
        out = [m for split in self.splits for m in self.split_source(split).missing()]
        for what, value in (("classes_file", self.params.classes_file), ("class_map_file", self.params.class_map_file)):
            if value is not None and not self._path(value).is_file():
                out.append(f"{self._path(value)}: {what} not found")
        return out

    def problems(self) -> list[str]:
        root = self._root()
        if not root.is_dir():
            return [f"{root}: {'not a folder' if root.exists() else 'folder not found'}"]
        if not self.splits:
            folders = ", ".join(str(self._path(f)) for f in self.params.folders.values())
            return [f"{root}: no split folders ({folders}); name them with folders: or lists:"]
        if missing := self._missing():
            return missing
        try:
            self.class_order()
        except DatasetError as exc:
            return [str(exc)]
        return []

    def class_order(self) -> ClassOrder:
        """The classes of every split, in the order ``classes`` fixes (read from the folders'
        names and the list and label files, not from the images)."""
        found: dict[str, str] = {}
        for split in self.splits:
            for name, where in self.split_source(split).names().items():
                found.setdefault(name, where)
        p = self.params
        rename = p.class_map or (read_class_map(self._path(p.class_map_file)) if p.class_map_file else {})
        return class_order(found, p.classes, self._path(p.classes_file) if p.classes_file else None, rename)

    def known_classes(self) -> tuple[str, ...] | None:
        """The splits' ``classes`` before loading (None when they cannot be read: ``problems`` says why)."""
        try:
            return self.class_order().names
        except DatasetError:
            return None

    def load(self, split: str, cache_dir: Path | None = None) -> ImageSet:
        if split not in self.splits:
            raise DatasetError(f"{self.label()} has splits {self.splits}, not {split!r}")
        if missing := self._missing():
            raise DatasetError(missing[0])
        order = self.class_order()
        entries = spread(self.split_source(split).entries(), self.params.max_images)
        root = self._root()
        ids = [(p.relative_to(root) if p.is_relative_to(root) else p).as_posix() for p, _ in entries]
        labels = np.array([order.label[name] for _, name in entries], dtype=np.int64)
        images = LazyImages([p for p, _ in entries], load_image, cache_dir)  # read on use
        return ImageSet(self.label(), split, ids, images, labels=labels, classes=order.names)
