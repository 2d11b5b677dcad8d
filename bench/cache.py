"""Content-addressed caches on disk: transcoded image sets and trained weights.

Every entry is written under a temporary name and renamed into place, so a reader sees a
complete entry or none, whatever happens to the writer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.metrics.rate import mean_bpp, total_bpp


@dataclass
class Transcoded:
    """One image set through one codec at one operating point, with per-image records."""

    key: str
    decoded: list[np.ndarray]
    streams: list[bytes]
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
    def n_bytes(self) -> list[int]:
        return [len(s) for s in self.streams]

    @property
    def pixels(self) -> list[int]:
        return [int(h * w) for h, w in zip(self.heights, self.widths)]

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


class Cache:
    """The cache root: ``transcode/``, ``models/`` and ``datasets/`` below it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- transcodes ---------------------------------------------------------------------
    def _transcode_dir(self, key: str) -> Path:
        return self.root / "transcode" / key[:2] / key

    def has_transcode(self, key: str) -> bool:
        return (self._transcode_dir(key) / "meta.json").is_file()

    def put_transcode(self, t: Transcoded, info: dict[str, Any]) -> None:
        final = self._transcode_dir(t.key)
        if final.exists():
            shutil.rmtree(final)
        tmp = _atomic_dir(final)
        try:
            offsets = np.cumsum([0] + t.n_bytes).tolist()
            (tmp / "streams.bin").write_bytes(b"".join(t.streams))
            np.savez(tmp / "decoded.npz", **{f"i{i:07d}": im for i, im in enumerate(t.decoded)})
            meta = {
                "info": info, "offsets": offsets,
                "heights": t.heights.tolist(), "widths": t.widths.tolist(),
                "psnr": t.psnr.tolist(), "ms_ssim": [None if np.isnan(v) else v for v in t.ms_ssim.tolist()],
                "encode_s": t.encode_s.tolist(), "decode_s": t.decode_s.tolist(),
                "bits": t.bits.tolist(), "rate_source": t.rate_source,
                "qualities": t.qualities.tolist() if t.qualities is not None else None,
            }
            (tmp / "meta.json").write_text(json.dumps(meta))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _commit_dir(tmp, final)

    def get_transcode(self, key: str) -> Transcoded:
        d = self._transcode_dir(key)
        meta = json.loads((d / "meta.json").read_text())
        blob = (d / "streams.bin").read_bytes()
        off = meta["offsets"]
        streams = [blob[off[i] : off[i + 1]] for i in range(len(off) - 1)]
        with np.load(d / "decoded.npz") as z:
            decoded = [z[f"i{i:07d}"] for i in range(len(streams))]
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
