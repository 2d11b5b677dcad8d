"""HEVC-intra still images (HEIC) through pillow-heif: libheif with the x265 encoder.

The stream is the whole HEIF file, container included (about 450 bytes at any image
size), because that is what decoding reads.

libheif's x265 plugin (``libheif/plugins/encoder_x265.cc``) is not BPG's
(``x265_glue.c`` in libbpg 0.9.8). Both use x265 with tune ``ssim``, convert RGB with the
BT.601 matrix at full range and code one intra picture, but BPG codes it at a constant QP
with x265's ``veryslow`` preset (``bpgenc -m 8``, the default), while libheif maps quality
q to CRF (100 - q) / 2 at ``slow``, caps ``tu-intra-depth`` at 2 and, after the tune, sets
``aq-mode=1``, ``psy-rd=1.0`` and ``psy-rdoq=1.0``: psychovisual trade-offs that cost PSNR,
and in 4:4:4 psy-rd also makes x265 code chroma 6 QP coarser (``Encoder::configure``).
``psy_rd=0, psy_rdoq=0, aq_mode=0`` undo them; without AQ, x265's CRF on a single intra
picture is a constant QP (quality 34 writes the bytes of ``--qp 33``), so the quality knob
keeps its meaning and steps like BPG's QP. ``benchmarks/heic_vs_bpg.py`` measures the
settings against CompressAI's published BPG curve on Kodak.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_serializer

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

#: Params fields passed to x265 itself as ``x265:<option>`` (x265 parses and range-checks
#: them again; an option it does not know fails the encode).
X265_OPTIONS = {"psy_rd": "psy-rd", "psy_rdoq": "psy-rdoq", "aq_mode": "aq-mode"}


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
    """HEVC intra coding in a HEIF file (pillow-heif quality 0..100; libheif maps it to x265
    CRF (100 - q) / 2, a constant QP when ``aq_mode`` is 0)."""

    class Params(CodecParams):
        chroma: Literal[420, 444] = 420
        #: x265 preset; "slow" is libheif's own default.
        preset: X265Preset = "slow"
        #: x265 tune; "ssim" is libheif's own default. libheif sets psy-rd, psy-rdoq and
        #: aq-mode after the tune, so no tune turns those off: the three fields below do.
        tune: Literal["psnr", "ssim", "grain", "fastdecode"] = "ssim"
        #: libheif's ``tu-intra-depth`` (intra transform-tree depth); None keeps libheif's 2,
        #: which replaces the preset's own (3 at slower and veryslow, 4 at placebo).
        tu_intra_depth: int | None = Field(None, ge=1, le=4)
        #: x265 ``psy-rd`` strength; None keeps libheif's 1.0. Above 0 in 4:4:4, x265 also
        #: raises the chroma QP offsets by 6.
        psy_rd: float | None = Field(None, ge=0, le=5)
        #: x265 ``psy-rdoq`` strength; None keeps libheif's 1.0.
        psy_rdoq: float | None = Field(None, ge=0, le=50)
        #: x265 ``aq-mode`` (0 off, 1 variance, 2 auto-variance, 3 biased auto-variance,
        #: 4 edge); None keeps libheif's 1. At 0 the picture is coded at one QP.
        aq_mode: Literal[0, 1, 2, 3, 4] | None = None

        @model_serializer(mode="wrap")
        def _without_defaults_added_later(self, handler: Any) -> dict[str, Any]:
            """Fields left at None are left out of the dump: keys written before they existed stay."""
            out = handler(self)
            for name in ("tu_intra_depth", *X265_OPTIONS):
                if out.get(name) is None:
                    out.pop(name, None)
            return out

    name = "heic"
    version = _VERSION
    quality_range: ClassVar[tuple[int, int]] = (0, 100)

    def unavailable_reason(self, quality: int | None = None) -> str | None:
        return _UNAVAILABLE

    def enc_params(self) -> dict[str, str]:
        """libheif encoder parameters: chroma, preset and tune always, so libheif's defaults
        cannot drift under them; the optional ones only when set (unset, they leave the
        stream as it was before they existed)."""
        p = self.params
        out = {"chroma": str(p.chroma), "preset": p.preset, "tune": p.tune}
        if p.tu_intra_depth is not None:
            out["tu-intra-depth"] = str(p.tu_intra_depth)
        out.update(X265_FIXED)
        for field, option in X265_OPTIONS.items():
            if (value := getattr(p, field)) is not None:
                out[f"x265:{option}"] = f"{value:g}"
        return out

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
