"""Weight files: what a model or codec build reads or downloads, checked before any work.

A plugin lists its files with ``weight_files()`` (``Model.weight_files``,
``Codec.weight_files``); ``unavailable_reason`` reports the first missing one in one line,
so a grid with a missing file fails ``bench validate`` and ``bench run`` before any work;
``bench fetch`` downloads the missing ones once, where there is a network, so that workers
never download (concurrently, or at all).

Downloaded files go where torch hub keeps them (``<torch hub dir>/checkpoints``, under
``$TORCH_HOME``); their names carry the first digits of their sha256 (``resnet50-11ad3fa6.pth``),
which a download is checked against, as torch hub's ``check_hash`` does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.config import Grid

#: How ``bench fetch`` is named in messages (the grid file is not known where they are made).
FETCH_HINT = 'run "bench fetch --grid FILE" where there is a network'


def hub_checkpoints_dir() -> Path:
    """Where torch hub (torchvision's weights, CompressAI's zoo) keeps downloaded weights."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class WeightFile:
    """One file a build needs: a download (``url``) into the hub cache, or a local file
    (``url`` None: the user's checkpoint, a file shipped in a wheel)."""

    path: Path
    url: str | None
    #: What the file is, for messages: ``torchvision resnet50 weights IMAGENET1K_V2``.
    what: str
    #: Leading hex digits of the file's sha256, from its name (torch hub's convention).
    sha256_prefix: str | None = None
    #: What else the user can do when the file is missing: ``set checkpoint: to a local state dict``.
    alternative: str | None = None

    @classmethod
    def download(cls, url: str, what: str, alternative: str | None = None) -> WeightFile:
        """The hub-cache file that ``url`` downloads to, named as torch hub names it."""
        import torch.hub

        name = os.path.basename(urlparse(url).path)
        match = torch.hub.HASH_REGEX.search(name)
        return cls(hub_checkpoints_dir() / name, url, what, match.group(1) if match else None, alternative)

    @classmethod
    def local(cls, path: str | Path, what: str) -> WeightFile:
        return cls(Path(path), None, what)

    @property
    def present(self) -> bool:
        return self.path.is_file()

    def missing(self, subject: str | None = None) -> str | None:
        """None when the file is there; else one complete line: what is missing (``subject``,
        default ``what``), where, and what to do."""
        if self.present:
            return None
        subject = subject or self.what
        if self.url is None:
            return f"{subject} {self.path} not found"
        otherwise = f", or {self.alternative}" if self.alternative else ""
        return (f"{subject}: {self.path.name} is not in {self.path.parent}; {FETCH_HINT}, "
                f"or place it there (from {self.url}){otherwise}")

    def fetch(self, progress: bool = False) -> None:
        """Download the file to ``path``: into a temporary file beside it, hash-checked, then
        renamed (torch hub's ``download_url_to_file``), so a failed or interrupted download
        leaves nothing behind. A ``BenchError`` in one line naming the URL and the destination."""
        if self.url is None:
            raise BenchError(f"{self.missing()} (a local file: there is nothing to download)")
        import torch.hub

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(self.url, str(self.path), self.sha256_prefix, progress=progress)
        except Exception as exc:  # noqa: BLE001 - no network, HTTP errors, a wrong hash, a full disk
            raise BenchError(f"{self.what}: cannot download {self.url} to {self.path}: {_one_line(exc)}") from exc

    def build_failure(self, exc: BaseException) -> BenchError:
        """The error of a build that could not download or read this file, in one line."""
        if self.present:  # a failed download leaves nothing, so the file was there and is unreadable
            return BenchError(f"{self.what}: {self.path} cannot be read ({_one_line(exc)}); delete it and "
                              f"{FETCH_HINT}")
        otherwise = f", or {self.alternative}" if self.alternative else ""
        return BenchError(f"{self.what} could not be downloaded ({_one_line(exc)}); place {self.path.name} "
                          f"(from {self.url}) at {self.path}, {FETCH_HINT}{otherwise}")


def missing_weights(files: Iterable[WeightFile]) -> str | None:
    """The first missing file's line (``WeightFile.missing``), or None when all are there."""
    return next((line for f in files if (line := f.missing()) is not None), None)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def grid_weight_files(grid: Grid, source: str = "grid") -> list[WeightFile]:
    """Every weight file the grid's models and codecs read or download, each once, in grid
    order. Names and parameters must resolve (a ``ConfigError`` with every problem); a
    missing file is no problem here, it is what this is for. A codec with target bitrates
    lists every quality of its range, as the rate search may use any of them."""
    from pydantic import ValidationError

    from bench.codecs import CODECS
    from bench.config import format_validation_error
    from bench.errors import ConfigError
    from bench.models import MODELS

    problems: list[str] = []
    found: dict[Path, WeightFile] = {}

    def plugin(registry: Any, name: str, params: dict[str, Any], where: str) -> Any | None:
        try:
            cls = registry.get(name)
            return cls(cls.Params(**params))
        except BenchError as exc:
            problems.append(f"{where}: {exc}")
        except ValidationError as exc:
            problems.extend(format_validation_error(exc, cls.Params, prefix=(where,)))
        return None

    def add(where: str, files: Callable[[], list[WeightFile]]) -> None:
        try:
            for f in files():
                found.setdefault(f.path, f)
        except BenchError as exc:
            problems.append(f"{where}: {exc}")

    for i, entry in enumerate(grid.codecs):
        codec = plugin(CODECS, entry.codec, entry.params, f"codecs[{i}]")
        if codec is None:
            continue
        targets = entry.targets_bpp if entry.targets_bpp is not None else grid.targets_bpp
        qualities: list[int | None] = [q for q in entry.qualities if codec.check_quality(q) is None]
        for q in qualities + ([None] if targets else []):
            add(f"codecs[{i}] ({entry.codec})", functools.partial(codec.weight_files, q))
    for i, exp in enumerate(grid.experiments):
        if exp.model is None:
            continue
        model = plugin(MODELS, exp.model.name, exp.model.params, f"experiments[{i}].model")
        if model is not None:
            add(f"experiments[{i}].model ({exp.model.name})", model.weight_files)
    if problems:
        raise ConfigError(problems, source)
    return list(found.values())


def fetch_all(files: Iterable[WeightFile], dry_run: bool = False,
              progress: bool = False) -> Iterator[tuple[WeightFile, str, str | None]]:
    """Each file with its state once handled: ``present``, ``missing`` (a dry run fetches
    nothing), ``fetched`` or ``failed`` (with the one-line reason)."""
    for f in files:
        if f.present:
            yield f, "present", None
        elif dry_run:
            yield f, "missing", None
        else:
            try:
                f.fetch(progress=progress)
            except BenchError as exc:
                yield f, "failed", str(exc)
            else:
                yield f, "fetched", None
