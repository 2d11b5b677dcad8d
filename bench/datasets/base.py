"""Datasets: named, parameterised sources of image sets with their targets."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, overload

import numpy as np
from pydantic import BaseModel, ConfigDict

from bench.errors import ImageError


class DatasetParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileDigests:
    """Each image file's pixel digest and shape, remembered in the cache by the file's path,
    size, inode, modification and status-change times: a file that is changed in any way is
    read again, an unchanged one is not (a split of 1.28 M files is fingerprinted once)."""

    #: Rows written per transaction: a run beside this one waits for one batch at most,
    #: and a kill loses at most one batch of what this pass learnt.
    BATCH = 500

    def __init__(self, cache_dir: Path, loader: str) -> None:
        self.path = Path(cache_dir) / "file-digests.sqlite"
        #: The reader and the harness's decoding version: pixels are what a reader makes of
        #: a file, so another reader (or a new version of bench's) remembers its own digests.
        self.loader = loader
        self.pending = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db: sqlite3.Connection | None = sqlite3.connect(self.path, timeout=30)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS digests (loader TEXT NOT NULL, path TEXT NOT NULL, "
                            "stat TEXT NOT NULL, digest TEXT NOT NULL, shape TEXT NOT NULL, "
                            "PRIMARY KEY (loader, path))")
        except sqlite3.Error:  # a locked or broken memo only costs a read of every file
            self.db = None

    #: A file modified less than this long ago is not remembered (as git's "racy clean"
    #: check): file times are coarser than a write, so a second change within the same tick
    #: would leave the same times behind.
    RACY_NS = 2_000_000_000

    @staticmethod
    def _stat(path: Path) -> str:
        st = path.stat()
        return f"{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"

    def get(self, path: Path, stat: str) -> tuple[str, tuple[int, ...]] | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute("SELECT stat, digest, shape FROM digests WHERE loader = ? AND path = ?",
                                  (self.loader, str(path.resolve()))).fetchone()
        except sqlite3.Error:
            return None
        if row is None or row[0] != stat:
            return None
        return row[1], tuple(json.loads(row[2]))

    def put(self, path: Path, stat: str, digest: str, shape: tuple[int, ...]) -> None:
        changed = max(int(t) for t in stat.split(":")[2:])
        age = time.time_ns() - changed
        if self.db is None or not 0 <= age or age < self.RACY_NS:  # just written, or dated in the future
            return
        try:
            self.db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)",
                            (self.loader, str(path.resolve()), stat, digest, json.dumps(list(shape))))
            self.pending += 1
            if self.pending >= self.BATCH:
                self.db.commit()
                self.pending = 0
        except sqlite3.Error:
            self.db = None

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.commit()
            except sqlite3.Error:
                pass
            self.db.close()


def loader_identity(load: Callable[[Path], np.ndarray]) -> str:
    """A file reader's name (a ``functools.partial`` with its arguments) and the harness's
    decoding version: what file digests are remembered under."""
    from bench.keys import HARNESS

    name = f"{getattr(load, '__module__', '')}.{getattr(load, '__qualname__', '')}"
    return f"{name if name != '.' else repr(load)}@{HARNESS['transcode']}"


def _stat_or_fail(path: Path) -> str:
    try:
        return FileDigests._stat(path)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _pixel_digest(im: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(im.shape).encode())
    h.update(np.ascontiguousarray(im).tobytes())
    return h.hexdigest()


class LazyImages(Sequence[np.ndarray]):
    """Images read from their files when asked for (a slice reads just that slice), so a
    split of any size streams through the stages in bounded batches. One pass at creation
    reads every file once: its content fingerprint and every image's size come from it,
    and a broken file fails there, before any work. With ``cache_dir`` the pass reads only
    the files that changed since they were last read (``FileDigests``)."""

    def __init__(self, paths: Sequence[Path], load: Callable[[Path], np.ndarray],
                 cache_dir: Path | None = None) -> None:
        self.paths, self._load = list(paths), load
        memo = FileDigests(cache_dir, loader_identity(load)) if cache_dir is not None else None
        h = hashlib.sha256()
        shapes = []
        try:
            for p in self.paths:
                stat = _stat_or_fail(p) if memo is not None else ""
                known = memo.get(p, stat) if memo is not None else None
                if known is None:
                    im = load(p)
                    known = _pixel_digest(im), tuple(im.shape)
                    if memo is not None:
                        memo.put(p, stat, *known)
                h.update(known[0].encode())
                shapes.append(known[1])
        finally:
            if memo is not None:
                memo.close()
        self.fingerprint, self.shapes = h.hexdigest()[:24], shapes

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(i, slice):
            return [self._load(p) for p in self.paths[i]]
        return self._load(self.paths[i])


@dataclass(frozen=True)
class ImageFiles:
    """A slice of a file-backed split as file names: what a chunk sent to a worker carries,
    so the worker reads the pixels itself (``read`` there) instead of the driver shipping them."""

    paths: tuple[Path, ...]
    load: Callable[[Path], np.ndarray]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self) -> list[np.ndarray]:
        return [self.load(p) for p in self.paths]


def materialize(images: Sequence[np.ndarray] | ImageFiles) -> Sequence[np.ndarray]:
    """The pixels of a chunk: read now when it came as file names."""
    return images.read() if isinstance(images, ImageFiles) else images


def chunk_of(images: Sequence[np.ndarray], start: int, stop: int) -> Sequence[np.ndarray] | ImageFiles:
    """Images ``start:stop`` to hand to a worker: file names for a file-backed split, else pixels."""
    if isinstance(images, LazyImages):
        return ImageFiles(tuple(images.paths[start:stop]), images._load)
    return images[start:stop]


def image_shapes(images: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
    """Every image's shape, without reading lazily-held images again."""
    shapes = getattr(images, "shapes", None)
    return list(shapes) if shapes is not None else [im.shape for im in images]


@dataclass
class ImageSet:
    """One split of a dataset: RGB uint8 images (in memory, or ``LazyImages`` read from
    their files on use) plus their targets."""

    dataset: str
    split: str
    ids: list[str]
    images: Sequence[np.ndarray]
    #: Classification labels, or None when the dataset has none (agreement is measured).
    labels: np.ndarray | None
    classes: tuple[str, ...] | None
    #: Task-specific targets (``boxes``, ``box_labels``, ``masks``), by name.
    targets: dict[str, Any] = field(default_factory=dict)
    #: Content hash of the images, in order: the set's identity in every transcode key.
    fingerprint: str = ""
    #: Content hash of the labels, classes and targets (``bench.keys.fingerprint``): with
    #: ``fingerprint``, what every model and cell key holds of the split.
    targets_fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = getattr(self.images, "fingerprint", None) or fingerprint_images(self.images)
        if not self.targets_fingerprint:
            from bench.keys import fingerprint

            self.targets_fingerprint = fingerprint({"labels": self.labels, "classes": self.classes,
                                                    "targets": self.targets})

    def __len__(self) -> int:
        return len(self.images)

    @property
    def pixels(self) -> list[int]:
        return [int(s[0] * s[1]) for s in image_shapes(self.images)]


def fingerprint_images(images: Sequence[np.ndarray]) -> str:
    """The content hash of images in order (the same whether held in memory or in files)."""
    h = hashlib.sha256()
    for im in images:
        h.update(_pixel_digest(im).encode())
    return h.hexdigest()[:24]


class Dataset(ABC):
    """A dataset plugin. ``load`` is deterministic for given parameters."""

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str] = ""
    Params: ClassVar[type[DatasetParams]] = DatasetParams
    #: Task targets every split carries (``boxes``, ``box_labels``, ``masks``), checked
    #: against the tasks before any work starts.
    target_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: DatasetParams | None = None, **kwargs: Any) -> None:
        self.params = params if params is not None else self.Params(**kwargs)

    @property
    @abstractmethod
    def splits(self) -> tuple[str, ...]:
        """The splits this dataset has (``("train", "val")`` or just ``("val",)``)."""

    @property
    def has_labels(self) -> bool:
        return True

    def problems(self) -> list[str]:
        """What prevents loading (missing folders, ...), checked before any work starts."""
        return []

    @abstractmethod
    def load(self, split: str, cache_dir: Path | None = None) -> ImageSet:
        """Read ``split`` fully; raises ``ImageError``/``DatasetError`` naming the culprit."""

    #: Parameters that say where the data is, not what it is: left out of ``identity`` (the
    #: content is fingerprinted), so a dataset moved to another folder keeps its results.
    location_params: ClassVar[tuple[str, ...]] = ()

    def identity(self) -> dict[str, Any]:
        """What, besides the content, a split's results depend on: part of every key."""
        params = self.params.model_dump(mode="json", exclude=set(self.location_params))
        return {"dataset": self.name, "version": self.version, "params": params}

    def source(self) -> tuple[str, str]:
        """What tells two datasets' splits apart before they are read (location included)."""
        return self.name, json.dumps(self.params.model_dump(mode="json"), sort_keys=True)

    def label(self) -> str:
        return self.name


def validate_dataset_class(name: str, obj: object) -> None:
    """Registry check: a complete ``Dataset`` subclass called like one, registered under its ``name``."""
    from bench.registry import PluginKind

    PluginKind(Dataset, {"name": str, "version": str})(name, obj)
