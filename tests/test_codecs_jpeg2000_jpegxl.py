"""JPEG 2000 and JPEG XL through imagecodecs, on real Kodak images: the rate–PSNR curve, the
bytes of a bare imagecodecs call, refused streams and refused parameters."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from bench.codecs import CODECS, Codec, OperatingPoint
from bench.errors import CodecError
from bench.images import load_image
from bench.metrics.fidelity import psnr
from bench.metrics.rate import bpp

#: Four Kodak images of different content: door (texture), flowers, mountain stream (detail),
#: parrots (flat areas and edges).
KODAK_NAMES = ("kodim01", "kodim07", "kodim13", "kodim23")

#: Qualities over each knob's useful range, low to high.
QUALITIES = {"jpeg2000": [22, 28, 34, 40, 46], "jpegxl": [5, 30, 55, 80, 95]}

ENCODE = {"jpeg2000": imagecodecs.jpeg2k_encode, "jpegxl": imagecodecs.jpegxl_encode}
DECODE = {"jpeg2000": imagecodecs.jpeg2k_decode, "jpegxl": imagecodecs.jpegxl_decode}
FORMAT = {"jpeg2000": "JPEG 2000", "jpegxl": "JPEG XL"}


def make_codec(name: str, **params: Any) -> Codec:
    codec = CODECS.get(name)(**params)
    # imagecodecs is a dependency of the project: unavailable is a failure, not a skip
    assert codec.unavailable_reason() is None, f"{name}: {codec.unavailable_reason()}"
    return codec


@pytest.fixture(scope="module")
def kodak_four(kodak_dir: Path) -> list[np.ndarray]:
    """``KODAK_NAMES`` at full size (768x512 or 512x768)."""
    return [load_image(kodak_dir / f"{name}.png") for name in KODAK_NAMES]


@pytest.fixture(scope="module")
def kodak_crops(kodak_four: list[np.ndarray]) -> list[np.ndarray]:
    """A 256x256 centre crop of each of ``KODAK_NAMES``, for the tests that need no full image."""
    crops = []
    for image in kodak_four:
        top, left = (image.shape[0] - 256) // 2, (image.shape[1] - 256) // 2
        crops.append(np.ascontiguousarray(image[top:top + 256, left:left + 256]))
    return crops


# -- (1) the rate–PSNR curve ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["jpeg2000", "jpegxl"])
def test_rate_and_psnr_rise_with_quality_on_kodak(name: str, kodak_four: list[np.ndarray]) -> None:
    codec = make_codec(name)
    for index, image in enumerate(kodak_four):
        h, w = image.shape[:2]
        curve = []
        for quality in QUALITIES[name]:
            [stream] = codec.encode([image], OperatingPoint(quality))
            [decoded] = codec.decode([stream])
            curve.append((bpp(stream, h, w), psnr(image, decoded)))
        rates, psnrs = zip(*curve, strict=True)
        where = f"{name} on {KODAK_NAMES[index]}: {curve}"
        assert all(a < b for a, b in zip(rates, rates[1:])), where
        assert all(a < b for a, b in zip(psnrs, psnrs[1:])), where
        assert rates[0] < 0.5 and rates[-1] > 1.0, where  # the range spans low to high rates


def test_jpeg2000_knob_is_the_psnr_it_reaches(kodak_four: list[np.ndarray]) -> None:
    """OpenJPEG's fixed-quality mode: the RGB PSNR lands near the target in dB."""
    codec = make_codec("jpeg2000")
    for image in kodak_four:
        for target in (28, 34, 40):
            [decoded] = codec.decode(codec.encode([image], OperatingPoint(target)))
            assert abs(psnr(image, decoded) - target) < 1.5, (target, psnr(image, decoded))


# -- (2) the bytes and pixels of a bare imagecodecs call -------------------------------------------


SETTINGS = [
    ("jpeg2000", {}),
    ("jpeg2000", {"codecformat": "J2K", "resolutions": 4, "reversible": True, "mct": False}),
    ("jpegxl", {}),
    ("jpegxl", {"effort": 7, "decodingspeed": 2}),
]


@pytest.mark.parametrize("name, params", SETTINGS, ids=["jpeg2000", "jpeg2000-set", "jpegxl", "jpegxl-set"])
def test_stream_and_decode_are_a_bare_imagecodecs_call(name: str, params: dict[str, Any],
                                                        kodak_crops: list[np.ndarray]) -> None:
    """With the same settings, bench's stream is what imagecodecs called directly writes (no
    thread count given: it must not matter), and bench's decode is imagecodecs' decode."""
    codec = make_codec(name, **params)
    quality = QUALITIES[name][2]
    streams = codec.encode(kodak_crops, OperatingPoint(quality))
    for image, stream, ours in zip(kodak_crops, streams, codec.decode(streams), strict=True):
        bare = ENCODE[name](image, level=quality, **params)
        assert stream == bare
        np.testing.assert_array_equal(ours, DECODE[name](bare))


@pytest.mark.parametrize("name, param, value", [
    ("jpeg2000", "codecformat", "J2K"), ("jpeg2000", "resolutions", 4), ("jpeg2000", "reversible", True),
    ("jpeg2000", "mct", False), ("jpegxl", "effort", 7), ("jpegxl", "decodingspeed", 2),
])
def test_each_parameter_changes_the_stream_and_the_identity(name: str, param: str, value: Any,
                                                             kodak_crops: list[np.ndarray]) -> None:
    default, changed = make_codec(name), make_codec(name, **{param: value})
    point = OperatingPoint(QUALITIES[name][2])
    assert default.encode(kodak_crops[3:], point) != changed.encode(kodak_crops[3:], point)
    assert default.identity_hash() != changed.identity_hash()


def test_jpeg2000_stream_is_a_jp2_file_pillow_reads(kodak_crops: list[np.ndarray]) -> None:
    """An independent decoder (Pillow's OpenJPEG build) reads the default stream as a JP2
    file and gets the same picture (its own rounding may differ by a grey level)."""
    codec = make_codec("jpeg2000")
    image = kodak_crops[3]
    [stream] = codec.encode([image], OperatingPoint(34))
    assert stream[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # the JP2 signature box
    with Image.open(io.BytesIO(stream), formats=["JPEG2000"]) as pillow:
        theirs = np.asarray(pillow.convert("RGB"))
    [ours] = codec.decode([stream])
    assert np.abs(theirs.astype(int) - ours).max() <= 1
    [j2k] = make_codec("jpeg2000", codecformat="J2K").encode([image], OperatingPoint(34))
    assert j2k[:4] == b"\xff\x4f\xff\x51" and len(j2k) < len(stream)  # SOC, SIZ: a bare codestream


def test_jpegxl_stream_is_a_bare_codestream(kodak_crops: list[np.ndarray]) -> None:
    [stream] = make_codec("jpegxl").encode([kodak_crops[0]], OperatingPoint(50))
    assert stream[:2] == b"\xff\x0a"


@pytest.mark.parametrize("name", ["jpeg2000", "jpegxl"])
def test_version_names_imagecodecs_and_the_library(name: str) -> None:
    codec = make_codec(name)
    library = (imagecodecs.jpeg2k_version() if name == "jpeg2000" else imagecodecs.jpegxl_version()).split()
    assert codec.version == f"imagecodecs-{imagecodecs.__version__}+{library[0]}-{library[1]}"
    assert codec.identity()["version"] == codec.version


# -- the checks every codec shares --------------------------------------------------------------


@pytest.mark.parametrize("name", ["jpeg2000", "jpegxl"])
def test_odd_sizes_and_batches(name: str, kodak_crops: list[np.ndarray]) -> None:
    codec = make_codec(name)
    point = OperatingPoint(QUALITIES[name][2])
    images = [np.ascontiguousarray(kodak_crops[1][:h, :w]) for h, w in ((53, 37), (65, 63), (1, 1), (3, 200))]
    streams = codec.encode(images, point)
    assert streams == [codec.encode([image], point)[0] for image in images]  # a batch changes nothing
    for image, decoded in zip(images, codec.decode(streams), strict=True):
        assert decoded.shape == image.shape and decoded.dtype == np.uint8


@pytest.mark.parametrize("name", ["jpeg2000", "jpegxl"])
def test_quality_outside_the_range_is_a_codec_error(name: str, kodak_crops: list[np.ndarray]) -> None:
    codec = make_codec(name)
    lo, hi = codec.quality_range
    for quality in (lo - 1, hi + 1):
        with pytest.raises(CodecError, match=f"^{quality} is outside {name}'s"):
            codec.encode([kodak_crops[0]], OperatingPoint(quality))


# -- (3) streams that are not this codec's ------------------------------------------------------


@pytest.mark.parametrize("name, other", [("jpeg2000", "jpegxl"), ("jpegxl", "jpeg2000")])
def test_corrupt_and_foreign_streams_are_one_line_codec_errors(name: str, other: str,
                                                               kodak_crops: list[np.ndarray]) -> None:
    codec = make_codec(name)
    image = kodak_crops[0]
    [stream] = codec.encode([image], OperatingPoint(QUALITIES[name][2]))
    [foreign] = make_codec(other).encode([image], OperatingPoint(QUALITIES[other][2]))
    png = io.BytesIO()
    Image.fromarray(image).save(png, "PNG")
    jpeg = io.BytesIO()
    Image.fromarray(image).save(jpeg, "JPEG")
    # another format is refused by its signature, before imagecodecs sees it; a stream of the
    # right format that breaks off fails in the decoder, named by the base class
    not_this_format = f"{name} stream 1: not a {FORMAT[name]} stream (starts "
    cases = {
        "empty": (b"", f"{name} stream 1: empty stream"),
        "garbage": (b"not an image at all" * 8, not_this_format),
        "png": (png.getvalue(), not_this_format),
        "jpeg": (jpeg.getvalue(), not_this_format),
        other: (foreign, not_this_format),
        "truncated": (stream[: len(stream) // 2], f"{name}: decode failed on stream 1 of 2 "),
        "header only": (stream[:64], f"{name}: decode failed on stream 1 of 2 "),
    }
    for label, (bad, start) in cases.items():
        with pytest.raises(CodecError) as info:
            codec.decode([stream, bad])
        text = str(info.value)
        assert "\n" not in text and text.startswith(start), (label, text)


# -- (4) parameters are checked when the codec is built -------------------------------------------


@pytest.mark.parametrize("name, params", [
    ("jpeg2000", {"resolutions": 0}),
    ("jpeg2000", {"resolutions": 34}),
    ("jpeg2000", {"codecformat": "jpx"}),
    ("jpeg2000", {"reversible": "sometimes"}),
    ("jpeg2000", {"wavelet": "9/7"}),       # the example plugin's knob, not this codec's
    ("jpeg2000", {"level": 30}),            # the quality is the operating point's
    ("jpegxl", {"effort": 0}),
    ("jpegxl", {"effort": 11}),             # imagecodecs would clamp it to 10 without a word
    ("jpegxl", {"decodingspeed": 5}),
    ("jpegxl", {"distance": 1.0}),
    ("jpegxl", {"lossless": True}),
], ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()))
def test_a_bad_parameter_is_rejected_at_construction(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=next(iter(params))):
        CODECS.get(name)(**params)
