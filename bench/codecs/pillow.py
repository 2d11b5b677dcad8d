"""JPEG, WebP and AVIF through Pillow, at Pillow's own defaults unless a parameter says otherwise.

With default parameters a stream is byte for byte what ``Image.fromarray(x).save(buf,
FORMAT, quality=q)`` writes, so bpp and PSNR match published bare-Pillow numbers.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import PIL
from PIL import Image, features
from pydantic import Field, model_serializer

from bench.codecs.base import Codec, CodecParams, OperatingPoint
from bench.errors import CodecError, ImageError
from bench.images import decode_image_bytes, rgb8_problem

Subsampling = Literal["4:4:4", "4:2:2", "4:2:0"]


def _feature_version(feature: str) -> str | None:
    with warnings.catch_warnings():  # older Pillow warns about features it does not know
        warnings.simplefilter("ignore")
        try:
            return features.version(feature)
        except Exception:  # noqa: BLE001 - a missing feature must not break import
            return None


def _jpeg_library() -> str:
    turbo = _feature_version("libjpeg_turbo")
    return f"libjpeg-turbo-{turbo}" if turbo else f"libjpeg-{_feature_version('jpg')}"


class _PillowCodec(Codec):
    """Shared encode/decode loop; subclasses name the Pillow format and its save options."""

    pillow_format: ClassVar[str]
    quality_range = (0, 100)

    def save_options(self, quality: int) -> dict[str, Any]:
        """Keyword arguments for ``Image.save``: quality and the parameters the user set
        (parameter names are Pillow's save keywords; None leaves Pillow's default)."""
        options = {k: v for k, v in self.params.model_dump().items() if v is not None}
        return {"quality": quality, **options}

    def encode(self, images: Sequence[np.ndarray], point: OperatingPoint) -> list[bytes]:
        if (problem := self.unavailable_reason()) is not None:
            raise CodecError(f"{self.name}: {problem}")
        if (problem := self.check_quality(point.quality)) is not None:
            raise CodecError(problem)
        options = self.save_options(point.quality)
        return [self._encode_one(image, options) for image in images]

    def _encode_one(self, image: np.ndarray, options: dict[str, Any]) -> bytes:
        if (problem := rgb8_problem(image)) is not None:
            raise CodecError(f"{self.name}: {problem}")
        buf = io.BytesIO()
        try:
            Image.fromarray(np.ascontiguousarray(image)).save(buf, self.pillow_format, **options)
        except (OSError, ValueError, KeyError) as exc:
            raise CodecError(f"{self.name}: encoding failed ({exc})") from exc
        return buf.getvalue()

    def decode(self, streams: Sequence[bytes]) -> list[np.ndarray]:
        out = []
        for i, stream in enumerate(streams):
            try:
                out.append(decode_image_bytes(stream, f"{self.name} stream {i}", (self.pillow_format,)))
            except ImageError as exc:
                raise CodecError(str(exc)) from exc
        return out


class JPEG(_PillowCodec):
    """Baseline JPEG (libjpeg-turbo in Pillow's wheels).

    Quality 0..100 as Pillow accepts it; libjpeg treats 0 like 1, and above 95 the
    quantisation tables hardly shrink while the rate grows fast.
    """

    class Params(CodecParams):
        #: None keeps Pillow's default (libjpeg's 4:2:0).
        subsampling: Subsampling | None = None
        #: Huffman tables fitted to the image (libjpeg's ``optimize_coding``): the same
        #: pixels in fewer bytes, most of it in the tables (about 300 of Pillow's 600 header
        #: bytes at low quality). None keeps Pillow's default (the standard tables).
        optimize: bool | None = None

        @model_serializer(mode="wrap")
        def _without_defaults_added_later(self, handler: Any) -> dict[str, Any]:
            """No ``optimize`` is left out of the dump: keys written before it existed stay."""
            out = handler(self)
            if out.get("optimize") is None:
                out.pop("optimize", None)
            return out

    name = "jpeg"
    pillow_format = "JPEG"
    version = f"pillow-{PIL.__version__}+{_jpeg_library()}"


class WebP(_PillowCodec):
    """Lossy WebP (libwebp)."""

    class Params(CodecParams):
        #: libwebp effort 0 (fast) .. 6 (slow); None keeps Pillow's default (4).
        method: int | None = Field(None, ge=0, le=6)

    name = "webp"
    pillow_format = "WEBP"
    version = f"pillow-{PIL.__version__}+libwebp-{_feature_version('webp')}"


def _avif_backend() -> tuple[str, str | None]:
    """(version, unavailable reason) of the AVIF encoder Pillow can use here.

    Pillow >= 11.2 has a native AVIF plugin; older Pillow needs ``pillow-avif-plugin``,
    which registers the same ``AVIF`` format name when imported.
    """
    if _feature_version("avif") is not None:
        from PIL import _avif

        module, lib = f"pillow-{PIL.__version__}", _feature_version("avif")
    else:
        try:
            import pillow_avif  # noqa: F401 - importing registers the AVIF plugin
            from pillow_avif import _avif  # type: ignore[no-redef]
        except ImportError:
            return "unavailable", "no AVIF encoder: needs Pillow >= 11.2 or pillow-avif-plugin"
        module = f"pillow-{PIL.__version__}+pillow-avif-plugin-{getattr(pillow_avif, '__version__', '?')}"
        lib = getattr(_avif, "libavif_version", "?")
    # codec_versions() reads e.g. "dav1d [dec]:1.5.3, aom [enc]:3.14.1"; the encoder
    # (not the decoder, whose output the AV1 spec fixes) decides the bytes.
    versions = _avif.codec_versions() if hasattr(_avif, "codec_versions") else ""
    encoders = [v.replace(" [enc]:", "-").strip() for v in versions.split(",") if "[enc]" in v]
    if not encoders:
        return "unavailable", f"libavif {lib} was built without an AV1 encoder"
    return f"{module}+libavif-{lib}+{'+'.join(encoders)}", None


_AVIF_VERSION, _AVIF_UNAVAILABLE = _avif_backend()


class AVIF(_PillowCodec):
    """AV1 still images through libavif."""

    class Params(CodecParams):
        #: libavif speed 0 (slow) .. 10 (fast); None keeps Pillow's default (6).
        speed: int | None = Field(None, ge=0, le=10)
        #: None keeps Pillow's default (4:2:0).
        subsampling: Subsampling | None = None

    name = "avif"
    pillow_format = "AVIF"
    version = _AVIF_VERSION

    def unavailable_reason(self, quality: int | None = None) -> str | None:
        return _AVIF_UNAVAILABLE
