"""JPEG 2000 (OpenJPEG) and JPEG XL (libjxl) through imagecodecs, at imagecodecs' defaults
unless a parameter says otherwise.

With default parameters a stream is byte for byte what ``imagecodecs.jpeg2k_encode(x, level=q)``
or ``imagecodecs.jpegxl_encode(x, level=q)`` writes, and decoding is imagecodecs' own.

Why imagecodecs (one wheel, BSD-3, bundling OpenJPEG 2.5.4 and libjxl 0.11.1). Measured on
kodim23 (768x512), one thread each, median of 7 runs, encode + decode:

- JPEG 2000 at 35 dB (9/7 wavelet, colour transform, one layer; every library wrote
  0.237 bpp at 34.77 dB): imagecodecs 52.5 + 8.7 ms, Pillow 13.0 55.4 + 12.3 ms, glymur
  0.14.8 56.4 + 14.1 ms (glymur also needs the system's libopenjp2, 2.5.0 here, and goes
  through files). Speed is close; the defaults decide: imagecodecs' are the usual lossy
  JPEG 2000 (9/7 wavelet, RGB->YCbCr transform, 6 resolutions), Pillow's are the reversible
  5/3 wavelet without the colour transform, 1.9-2.7x the bits at the same target PSNR
  (kodim01, 07, 13, 23 at 35 dB), so a bare ``Image.save`` is not the JPEG 2000 that
  comparisons report.
- JPEG XL at quality 90, effort 7: imagecodecs 205 + 8.3 ms (1.204 bpp, 39.54 dB),
  pillow-jxl-plugin 1.3.8 183 + 10.0 ms (1.154 bpp, 39.50 dB: its own libjxl build). Close
  again; pillow-jxl-plugin is GPL-3.0-or-later, terms a required dependency would bring to
  every user of this MIT-licensed harness.

imagecodecs is needed for JPEG XL either way, so one dependency serves both codecs and its
version (with OpenJPEG's or libjxl's) is the codec's ``version``. It clamps an out-of-range
effort or resolution count instead of refusing it, so every parameter is checked here, in
``Params``. Thread counts do not change the bytes (checked); both codecs run on one thread
because traditional codecs fan out over processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from bench.codecs.base import Codec, CodecParams, OperatingPoint
from bench.errors import CodecError

try:
    import imagecodecs
except ImportError:  # a dependency; a broken install must still let `bench ls` say why
    imagecodecs = None


def _backend(codec: str, library: str) -> tuple[str, str | None]:
    """(version, unavailable reason) of imagecodecs' ``codec`` ("jpeg2k", "jpegxl")."""
    if imagecodecs is None:
        return "unavailable", "imagecodecs is not installed (pip install imagecodecs)"
    if not getattr(imagecodecs, codec.upper()).available:
        return "unavailable", f"imagecodecs {imagecodecs.__version__} was built without {library}"
    library_version = getattr(imagecodecs, f"{codec}_version")().split()[-1]  # "openjpeg 2.5.4"
    return f"imagecodecs-{imagecodecs.__version__}+{library.lower()}-{library_version}", None


class _ImagecodecsCodec(Codec):
    """Shared encode/decode loop; a subclass names imagecodecs' functions and its format."""

    #: imagecodecs' codec prefix: ``{codec}_encode``, ``{codec}_decode``, ``{codec}_check``.
    imagecodecs_codec: ClassVar[str]
    format_name: ClassVar[str]
    #: Encoder keywords bench always passes (each leaves the bytes as a bare call writes them).
    fixed_options: ClassVar[dict[str, Any]] = {"numthreads": 1}
    _unavailable: ClassVar[str | None]

    def unavailable_reason(self, quality: int | None = None) -> str | None:
        return self._unavailable

    def encode_options(self, quality: int) -> dict[str, Any]:
        """Keyword arguments for imagecodecs' encoder: the quality (``level``), the fixed options
        and the parameters the user set (names are imagecodecs' keywords; None leaves its default)."""
        options = {k: v for k, v in self.params.model_dump().items() if v is not None}
        return {"level": quality, **self.fixed_options, **options}

    def encode(self, images: Sequence[np.ndarray], point: OperatingPoint) -> list[bytes]:
        if (problem := self.unavailable_reason()) is not None:
            raise CodecError(f"{self.name}: {problem}")
        if (problem := self.check_quality(point.quality)) is not None:
            raise CodecError(problem)
        encoder = getattr(imagecodecs, f"{self.imagecodecs_codec}_encode")
        options = self.encode_options(point.quality)
        return [bytes(encoder(np.ascontiguousarray(image), **options)) for image in images]

    def decode(self, streams: Sequence[bytes]) -> list[np.ndarray]:
        if (problem := self.unavailable_reason()) is not None:
            raise CodecError(f"{self.name}: {problem}")
        return [self._decode_one(bytes(stream), i) for i, stream in enumerate(streams)]

    def _decode_one(self, stream: bytes, index: int) -> np.ndarray:
        # imagecodecs' decoders would try any bytes; a stream of another format must be refused,
        # not decoded, so the signature is checked first. Errors past it (a truncated stream)
        # become one line naming codec and stream in the base class.
        where = f"{self.name} stream {index}"
        if not stream:
            raise CodecError(f"{where}: empty stream")
        if not getattr(imagecodecs, f"{self.imagecodecs_codec}_check")(stream):
            raise CodecError(f"{where}: not a {self.format_name} stream (starts {stream[:8].hex()})")
        return getattr(imagecodecs, f"{self.imagecodecs_codec}_decode")(stream, numthreads=1)


_JPEG2K_VERSION, _JPEG2K_UNAVAILABLE = _backend("jpeg2k", "OpenJPEG")
_JPEGXL_VERSION, _JPEGXL_UNAVAILABLE = _backend("jpegxl", "libjxl")


class JPEG2000(_ImagecodecsCodec):
    """JPEG 2000 Part 1, one quality layer at a target PSNR (OpenJPEG's fixed-quality mode).

    The knob is the PSNR OpenJPEG aims its rate allocation at; on Kodak the RGB PSNR comes
    out within about half a dB of it. Below 20 dB a stream is little more than headers; above
    about 50 dB the 9/7 wavelet's quantisation stops the PSNR from rising while the rate still
    grows. The knob has one meaning: a compression-ratio mode (CompressAI runs ffmpeg's
    libopenjpeg with ``-compression_level``, a ratio) would need a range and direction of its
    own, and imagecodecs offers only the dB target. Code-blocks are OpenJPEG's 64x64
    (imagecodecs does not expose them), tiles none.
    """

    class Params(CodecParams):
        #: "JP2" (None, imagecodecs' default): a JP2 file, the codestream in 85 bytes of boxes
        #: that count as rate since decoding reads them; "J2K": the bare codestream.
        codecformat: Literal["JP2", "J2K"] | None = None
        #: Resolution levels (wavelet decompositions + 1); None keeps imagecodecs' 6.
        #: imagecodecs lowers it to what a small image's size allows.
        resolutions: int | None = Field(None, ge=1, le=33)
        #: True: the reversible 5/3 wavelet; None keeps imagecodecs' irreversible 9/7 wavelet,
        #: the one lossy JPEG 2000 uses.
        reversible: bool | None = None
        #: The multiple-component (RGB to YCbCr) transform; None keeps imagecodecs' default (on).
        mct: bool | None = None

    name = "jpeg2000"
    version = _JPEG2K_VERSION
    quality_range: ClassVar[tuple[int, int]] = (20, 50)
    quality_meaning = "target PSNR in dB (higher is better)"
    quality_descending = False
    imagecodecs_codec = "jpeg2k"
    format_name = "JPEG 2000"
    _unavailable = _JPEG2K_UNAVAILABLE


class JPEGXL(_ImagecodecsCodec):
    """JPEG XL (VarDCT, lossy), a bare codestream.

    The knob is libjxl's quality (``JxlEncoderDistanceFromQuality``, as cjxl's ``-q``):
    distance = 0.1 + (100 - q) * 0.09 from 30 up (90 is distance 1.0, "visually lossless"),
    steeper below, 25 at 0. The range stops at 99: cjxl's ``-q 100`` means lossless, but
    imagecodecs codes quality 100 lossily at distance 0. Lossless coding is never used (it has
    no rate knob).
    """

    class Params(CodecParams):
        #: Encoder effort 1 (fast) .. 10 (slow); None keeps imagecodecs' default, 5 (libjxl's and
        #: cjxl's is 7: about 0.4 % fewer bytes on Kodak at twice the encoding time).
        effort: int | None = Field(None, ge=1, le=10)
        #: Decoding speed tier 0 (smallest stream) .. 4 (fastest decoding); None keeps 0.
        decodingspeed: int | None = Field(None, ge=0, le=4)

    name = "jpegxl"
    version = _JPEGXL_VERSION
    quality_range: ClassVar[tuple[int, int]] = (0, 99)
    quality_meaning = "quality, libjxl's distance mapping (higher is better)"
    quality_descending = False
    imagecodecs_codec = "jpegxl"
    format_name = "JPEG XL"
    # lossless=False is what imagecodecs picks for a quality up to 100 anyway; passed so that
    # no default of imagecodecs' can switch it
    fixed_options: ClassVar[dict[str, Any]] = {"numthreads": 1, "lossless": False}
    _unavailable = _JPEGXL_UNAVAILABLE
