"""Content-addressed caches on disk: transcoded image sets, trained weights, and the
checkpoints of trainings under way.

Every entry is written under a temporary name and renamed into place, so a reader sees a
complete entry or none, whatever happens to the writer.

A transcode entry is its bitstreams (``streams.bin``) and per-image records
(``meta.json``: bits, sizes, PSNR, MS-SSIM, timings). The decoded pixels are not kept —
they are 10–40× the streams, petabytes at ImageNet-train scale — but decoded again from the
streams when a cell reads them (``DecodedStreams``: image by image, in the training
loader's workers; a neural codec in batches on its device). An entry made to keep them
(``keep_pixels``; ``bench.transcodes.PIXELS`` says which) also has ``decoded.npz``, which
readers then prefer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench.errors import CodecError
from bench.metrics.rate import mean_bpp, total_bpp

if TYPE_CHECKING:
    from bench.train import Checkpoint


class LazyDecoded(Sequence[np.ndarray]):
    """A cached set's decoded images, read from its ``decoded.npz`` one by one when used."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n = path, n
        self._npz: Any = None

    def __len__(self) -> int:
        return self.n

    def _get(self, i: int) -> np.ndarray:
        if not -self.n <= i < self.n:
            raise IndexError(i)
        if self._npz is None:
            self._npz = np.load(self.path)
        return self._npz[f"i{i % self.n:07d}"]

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(self.n))]
        return self._get(i)

    def __del__(self) -> None:
        if self._npz is not None:
            self._npz.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "n": self.n, "_npz": None}


class DecodedStreams(Sequence[np.ndarray]):
    """A cached set's decoded images, decoded from its streams by ``codec`` when used: an
    index decodes one stream, a slice decodes its streams in one call (one batch for a
    neural codec). Sizes come from the entry's records, so nothing is decoded to learn them.

    Decoding is deterministic for the traditional codecs; a neural codec decodes on its
    own device (a stream must be decoded where it was made), so a loader runs these in
    worker processes only when the codec is on the CPU (``in_workers``)."""

    def __init__(self, streams: Sequence[bytes], codec: Any, shapes: Sequence[tuple[int, int, int]]) -> None:
        self.streams, self.codec, self.shapes = streams, codec, list(shapes)

    def __len__(self) -> int:
        return len(self.streams)

    @property
    def in_workers(self) -> bool:
        """Whether loader worker processes (forked, CPU-only) can decode these."""
        device = getattr(self.codec, "device", None)
        return device is None or torch.device(device).type == "cpu"

    def _check(self, images: list[np.ndarray], idx: range) -> list[np.ndarray]:
        for j, im in zip(idx, images, strict=True):
            if im.shape != self.shapes[j]:
                raise CodecError(f"{self.codec.name} decoded a {im.shape} image from cached stream {j} "
                                 f"of a {self.shapes[j]} original")
        return images

    def __getitem__(self, i: int | slice) -> Any:
        idx = range(len(self))[i]
        if isinstance(idx, int):
            return self._check(self.codec.decode([self.streams[idx]]), range(idx, idx + 1))[0]
        return self._check(list(self.codec.decode(list(self.streams[i]))), idx) if len(idx) else []


class LazyStreams(Sequence[bytes]):
    """A cached set's bitstreams, read from its ``streams.bin`` when used."""

    def __init__(self, path: Path, offsets: list[int]) -> None:
        self.path, self.offsets = path, offsets
        self.lengths = [b - a for a, b in zip(offsets, offsets[1:])]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int | slice) -> Any:
        idx = range(len(self))[i]
        if isinstance(idx, int):
            idx = range(idx, idx + 1)
        if len(idx) == 0:
            return []
        lo, hi = self.offsets[idx.start], self.offsets[idx[-1] + 1]
        with open(self.path, "rb") as f:
            f.seek(lo)
            blob = f.read(hi - lo) if idx.step == 1 else None
            if blob is None:  # a strided slice: one read per stream
                out = []
                for j in idx:
                    f.seek(self.offsets[j])
                    out.append(f.read(self.lengths[j]))
            else:
                out = [blob[self.offsets[j] - lo : self.offsets[j + 1] - lo] for j in idx]
        return out if isinstance(i, slice) else out[0]


class _NoCodec(Sequence[np.ndarray]):
    """The images of an entry read without its codec: they cannot be decoded."""

    def __init__(self, key: str, n: int) -> None:
        self.key, self.n = key, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int | slice) -> Any:
        raise CodecError(f"transcode {self.key[:12]} keeps only its streams: read it with its codec to decode them")


@dataclass
class Transcoded:
    """One image set through one codec at one operating point, with per-image records.
    Read from the cache, its decoded images and streams are read from disk on use."""

    key: str
    decoded: Sequence[np.ndarray]
    streams: Sequence[bytes]
    heights: np.ndarray
    widths: np.ndarray
    psnr: np.ndarray
    ms_ssim: np.ndarray
    encode_s: np.ndarray
    decode_s: np.ndarray
    #: Per-image rate in bits: 8 × the stream's bytes, or a neural codec's likelihood
    #: estimate when ``rate_source`` is ``"estimate"`` (its ``entropy_estimation`` option).
    bits: np.ndarray
    rate_source: str = "bitstream"
    #: Per-image quality, when each image was coded at its own (a per-image target).
    qualities: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.decoded)

    @property
    def pixels(self) -> list[int]:
        return [int(h * w) for h, w in zip(self.heights, self.widths)]

    @property
    def bpp(self) -> np.ndarray:
        """Per-image bits per pixel."""
        return self.bits / np.asarray(self.pixels, dtype=np.float64)

    def summary(self) -> dict[str, float]:
        """Averages over images: bpp (mean of per-image bpp), bpp_total (total bits / total
        pixels), psnr and ms_ssim (means of per-image values), encode/decode seconds, and
        where the rate comes from (``rate_source``)."""
        bits = self.bits.tolist()
        return {
            "rate_source": self.rate_source,
            "bpp": mean_bpp(bits, self.pixels),
            "bpp_total": total_bpp(bits, self.pixels),
            "psnr": float(np.mean(self.psnr)),
            "ms_ssim": float(np.mean(self.ms_ssim)) if not np.all(np.isnan(self.ms_ssim)) else float("nan"),
            "encode_s_mean": float(np.mean(self.encode_s)),
            "decode_s_mean": float(np.mean(self.decode_s)),
        }


def _atomic_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))


def _commit_dir(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)
    except OSError:  # another writer finished first: its entry is equally valid
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            raise


class TranscodeWriter:
    """A transcode entry written chunk by chunk (nothing of a set is held in memory), made
    visible by one rename at ``commit``; ``abort`` (or a crash) leaves only a temporary
    folder no reader looks at."""

    def __init__(self, final: Path, key: str, info: dict[str, Any], keep_pixels: bool = False) -> None:
        self.final, self.key, self.info = final, key, info
        self.tmp = _atomic_dir(final)
        self._streams = open(self.tmp / "streams.bin", "wb")
        self._zip = (zipfile.ZipFile(self.tmp / "decoded.npz", "w", compression=zipfile.ZIP_STORED, allowZip64=True)
                     if keep_pixels else None)
        self.n = 0
        self.meta: dict[str, list[Any]] = {k: [] for k in ("heights", "widths", "psnr", "ms_ssim", "encode_s",
                                                            "decode_s", "bits", "qualities")}
        self.offsets = [0]

    def add(self, decoded: Sequence[np.ndarray], streams: Sequence[bytes],
            shapes: Sequence[tuple[int, ...]] | None = None, **per_image: Sequence[Any]) -> None:
        """One chunk, in order: its decoded images (or, for an entry that keeps bitstreams
        only, just their ``shapes``), streams and per-image records."""
        if shapes is None or decoded:
            shapes = [im.shape for im in decoded]
        if self._zip is not None and len(decoded) != len(streams):
            raise ValueError(f"an entry that keeps pixels got {len(decoded)} images for {len(streams)} streams")
        for i, (shape, s) in enumerate(zip(shapes, streams, strict=True)):
            if self._zip is not None:
                with self._zip.open(f"i{self.n:07d}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(decoded[i]), allow_pickle=False)
            self._streams.write(s)
            self.offsets.append(self.offsets[-1] + len(s))
            self.meta["heights"].append(int(shape[0]))
            self.meta["widths"].append(int(shape[1]))
            self.n += 1
        for k, values in per_image.items():
            if values is not None:
                self.meta[k].extend(float(v) if k != "qualities" else int(v) for v in values)

    def _close(self) -> None:
        self._streams.close()
        if self._zip is not None:
            self._zip.close()

    def commit(self, rate_source: str) -> None:
        self._close()
        qualities = self.meta.pop("qualities")
        meta = {"info": self.info, "offsets": self.offsets, **self.meta, "rate_source": rate_source,
                "ms_ssim": [None if np.isnan(v) else v for v in self.meta["ms_ssim"]],
                "qualities": qualities if qualities else None}
        (self.tmp / "meta.json").write_text(json.dumps(meta))
        if self.final.exists():
            shutil.rmtree(self.final)
        _commit_dir(self.tmp, self.final)

    def abort(self) -> None:
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Cache:
    """The cache root: ``transcode/``, ``models/`` and ``datasets/`` below it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- transcodes ---------------------------------------------------------------------
    def _transcode_dir(self, key: str) -> Path:
        return self.root / "transcode" / key[:2] / key

    def has_transcode(self, key: str) -> bool:
        return (self._transcode_dir(key) / "meta.json").is_file()

    def transcode_writer(self, key: str, info: dict[str, Any], keep_pixels: bool = False) -> TranscodeWriter:
        return TranscodeWriter(self._transcode_dir(key), key, info, keep_pixels)

    def get_transcode(self, key: str, codec: Any = None) -> Transcoded:
        """A cached set; its streams are read from disk when used, and its images decoded
        from them by ``codec`` (or read from the entry's kept pixels, where it has them)."""
        d = self._transcode_dir(key)
        meta = json.loads((d / "meta.json").read_text())
        n = len(meta["offsets"]) - 1
        streams = LazyStreams(d / "streams.bin", meta["offsets"])
        if (d / "decoded.npz").is_file():
            decoded: Sequence[np.ndarray] = LazyDecoded(d / "decoded.npz", n)
        elif codec is not None:
            decoded = DecodedStreams(streams, codec, [(h, w, 3) for h, w in zip(meta["heights"], meta["widths"])])
        else:
            decoded = _NoCodec(key, n)
        return Transcoded(
            key=key, decoded=decoded, streams=streams,
            heights=np.asarray(meta["heights"]), widths=np.asarray(meta["widths"]),
            psnr=np.asarray(meta["psnr"], dtype=np.float64),
            ms_ssim=np.asarray([np.nan if v is None else v for v in meta["ms_ssim"]], dtype=np.float64),
            encode_s=np.asarray(meta["encode_s"]), decode_s=np.asarray(meta["decode_s"]),
            bits=np.asarray(meta["bits"], dtype=np.float64), rate_source=meta["rate_source"],
            qualities=np.asarray(meta["qualities"], dtype=np.int64) if meta.get("qualities") is not None else None,
        )

    # -- rate-control choices -----------------------------------------------------------
    def _choice_path(self, key: str) -> Path:
        return self.root / "ratecontrol" / f"{key}.json"

    def get_choice(self, key: str) -> dict[str, Any] | None:
        path = self._choice_path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def put_choice(self, key: str, choice: dict[str, Any]) -> None:
        path = self._choice_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_text(json.dumps(choice))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    # -- trainings under way -----------------------------------------------------------
    def checkpoint(self, key: str) -> Checkpoint:
        """Where the training of the weights ``key`` saves its epochs (``bench.train.Checkpoint``)."""
        from bench.train import Checkpoint

        return Checkpoint(self.root / "checkpoints" / f"{key}.pt")

    # -- trained weights ----------------------------------------------------------------
    def _model_path(self, key: str) -> Path:
        return self.root / "models" / f"{key}.pt"

    def has_model(self, key: str) -> bool:
        return self._model_path(key).is_file()

    def put_model(self, key: str, state: dict[str, torch.Tensor]) -> None:
        path = self._model_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def get_model(self, key: str) -> dict[str, torch.Tensor]:
        return torch.load(self._model_path(key), map_location="cpu", weights_only=True)
