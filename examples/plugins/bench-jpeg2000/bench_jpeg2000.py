"""JPEG 2000 as a bench codec: OpenJPEG through Pillow, the quality knob a target PSNR in dB.

bench's own ``jpeg2000`` codec goes through imagecodecs; this one, ``jpeg2000-pillow``, is
an example of a complete third-party codec: a ``Codec`` subclass with its metadata, its
parameters, and ``encode``/``decode``. bench's base class checks their input and output and
turns any exception they raise (Pillow's on a garbage stream, say) into a one-line
``CodecError`` naming the codec and the image, so the codec itself does not catch anything.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal

import numpy as np
import PIL
from PIL import Image, features

from bench.codecs import Codec, CodecParams, OperatingPoint

__version__ = "0.1.0"


def _openjpeg() -> str | None:
    return features.version("jpg_2000") if features.check("jpg_2000") else None


class JPEG2000(Codec):
    """JPEG 2000 Part 1 codestreams (``.j2k``), one quality layer at the target PSNR."""

    class Params(CodecParams):
        #: "9/7": the irreversible (lossy) wavelet of JPEG 2000; "5/3": the reversible one.
        wavelet: Literal["9/7", "5/3"] = "9/7"

    name = "jpeg2000-pillow"
    # the plugin's version and the library's: both decide the bytes, so both are in the cache key
    version = f"bench-jpeg2000-{__version__}+pillow-{PIL.__version__}+openjpeg-{_openjpeg()}"
    quality_range = (20, 55)
    quality_meaning = "target PSNR in dB (higher is better)"

    def unavailable_reason(self, quality: int | None = None) -> str | None:
        return None if _openjpeg() else "Pillow was built without OpenJPEG (PIL.features.check('jpg_2000'))"

    def encode(self, images: Sequence[np.ndarray], point: OperatingPoint) -> list[bytes]:
        streams = []
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image)).save(
                buf, "JPEG2000", no_jp2=True,  # a bare codestream: every byte is rate
                quality_mode="dB", quality_layers=[point.quality],
                irreversible=self.params.wavelet == "9/7",
            )
            streams.append(buf.getvalue())
        return streams

    def decode(self, streams: Sequence[bytes]) -> list[np.ndarray]:
        return [np.asarray(Image.open(io.BytesIO(stream), formats=["JPEG2000"]).convert("RGB")) for stream in streams]
