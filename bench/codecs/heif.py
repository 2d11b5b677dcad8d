"""HEVC-intra still images (HEIC) through pillow-heif: libheif with the x265 encoder.

The stream is the whole HEIF file, container included (about 450 bytes at any image
size), because that is what decoding reads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np

from bench.codecs.base import Codec, CodecParams, OperatingPoint
from bench.errors import CodecError
from bench.images import rgb8_problem

try:
    import pillow_heif
except ImportError:  # an optional dependency: the codec reports itself unavailable
    pillow_heif = None

X265Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
]

#: Passed to x265 on every encode. ``info=0`` keeps x265 from writing its ~2 kB
#: "encoder settings" SEI (text) into the stream. The libheif bundled here (1.23) already
#: sets it and drops user-data SEI itself; older libheif did not, and those bytes would
#: count as rate. Setting it ourselves keeps the rate honest whichever libheif is installed.
X265_FIXED = {"x265:info": "0"}


def _heif_backend() -> tuple[str, str | None]:
    """(version, unavailable reason) of pillow-heif's HEVC encoder here."""
    if pillow_heif is None:
        return "unavailable", "pillow-heif is not installed (pip install pillow-heif)"
    x265 = pillow_heif.libheif_info().get("encoders", {}).get("x265")
    if not x265:
        return "unavailable", f"libheif {pillow_heif.libheif_version()} has no x265 encoder"
    # "x265 HEVC encoder (4.3+1-e9b8812)" -> "4.3+1-e9b8812"
    x265_version = x265.rsplit("(", 1)[-1].rstrip(")")
    version = f"pillow_heif-{pillow_heif.__version__}+libheif-{pillow_heif.libheif_version()}+x265-{x265_version}"
    return version, None


_VERSION, _UNAVAILABLE = _heif_backend()


class HEIC(Codec):
    """HEVC intra coding in a HEIF file (pillow-heif quality 0..100; libheif maps it to x265 CRF)."""

    class Params(CodecParams):
        chroma: Literal[420, 444] = 420
        #: x265 preset; "slow" is libheif's own default.
        preset: X265Preset = "slow"
        #: x265 tune; "ssim" is libheif's own default.
        tune: Literal["psnr", "ssim", "grain", "fastdecode"] = "ssim"

    name = "heic"
    version = _VERSION
    quality_range: ClassVar[tuple[int, int]] = (0, 100)

    def unavailable_reason(self, quality: int | None = None) -> str | None:
        return _UNAVAILABLE

    def enc_params(self) -> dict[str, str]:
        """libheif encoder parameters; every one is set explicitly so defaults cannot drift."""
        p = self.params
        return {"chroma": str(p.chroma), "preset": p.preset, "tune": p.tune, **X265_FIXED}

    def encode(self, images: Sequence[np.ndarray], point: OperatingPoint) -> list[bytes]:
        if (problem := self.unavailable_reason()) is not None:
            raise CodecError(f"{self.name}: {problem}")
        if (problem := self.check_quality(point.quality)) is not None:
            raise CodecError(problem)
        return [self._encode_one(image, point.quality) for image in images]

    def _encode_one(self, image: np.ndarray, quality: int) -> bytes:
        if (problem := rgb8_problem(image)) is not None:
            raise CodecError(f"{self.name}: {problem}")
        h, w = image.shape[:2]
        buf = io.BytesIO()
        try:
            pillow_heif.encode(
                "RGB", (w, h), np.ascontiguousarray(image).tobytes(), buf,
                quality=quality,
                enc_params=self.enc_params(),  # a fresh dict: pillow-heif writes into it
                # pinned rather than read from pillow_heif.options, which any caller can change
                save_nclx_profile=True,
                tile_size=0,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise CodecError(f"{self.name}: encoding failed ({exc})") from exc
        return buf.getvalue()

    def decode(self, streams: Sequence[bytes]) -> list[np.ndarray]:
        if pillow_heif is None:
            raise CodecError(f"{self.name}: {_UNAVAILABLE}")
        return [self._decode_one(stream, i) for i, stream in enumerate(streams)]

    def _decode_one(self, stream: bytes, index: int) -> np.ndarray:
        where = f"{self.name} stream {index}"
        if not stream:
            raise CodecError(f"{where}: empty stream")
        try:
            heif = pillow_heif.open_heif(io.BytesIO(stream), convert_hdr_to_8bit=True)
            if heif.mode != "RGB":
                raise CodecError(f"{where}: decoded to mode {heif.mode}, expected RGB")
            return np.array(heif, dtype=np.uint8)  # a copy: the decoder's buffer is freed with `heif`
        except (OSError, ValueError, RuntimeError, EOFError, SyntaxError) as exc:
            raise CodecError(f"{where}: cannot decode ({exc})") from exc
