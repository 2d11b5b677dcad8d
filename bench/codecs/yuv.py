"""RGB images to planar 4:4:4 YCbCr files and back: the hand-off to the reference encoders.

The conversion is CompressAI's (``compressai.transforms.functional.rgb2ycbcr`` /
``ycbcr2rgb``, as its ``utils/bench`` VTM and HM codecs use them): ITU-R BT.709 luma
weights, full range, Cb and Cr centred on half the range, in float32. The file holds the Y,
Cb and Cr planes one after the other, one byte per sample at 8 bits, two (little-endian) at
10.

At 8 bits the samples are *truncated* to integers, as CompressAI does, so that an encoder
gets the very bytes CompressAI gives it and writes the same stream; that costs the
hand-off up to 3 levels in RGB and a bias towards dark (on the 24 Kodak images, the
conversion alone, back and forth, is 46.4 dB PSNR). At 10 bits the samples are rounded to
the nearest integer and the round trip gives the RGB image back exactly. Back to RGB,
samples are always rounded to the nearest level; CompressAI truncates there too (43.7 dB
for the round trip), which changes no stream, only how far the decoded image is from the
original.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from bench.errors import CodecError

BitDepth = Literal[8, 10]

#: ITU-R BT.709 (K_r, K_g, K_b), CompressAI's YCBCR_WEIGHTS
KR, KG, KB = 0.2126, 0.7152, 0.0722


def rgb_to_ycbcr(image: np.ndarray, bit_depth: BitDepth = 8) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB image as ``(3, H, W)`` Y, Cb, Cr planes of ``bit_depth`` bits
    (uint8 at 8 bits, uint16 at 10)."""
    rgb = image.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    r, g, b = rgb
    # the operations in CompressAI's order, all in float32, so the 8-bit samples are its bytes
    y = KR * r + KG * g + KB * b
    cb = 0.5 * (b - y) / (1 - KB) + 0.5
    cr = 0.5 * (r - y) / (1 - KR) + 0.5
    planes = np.clip(np.stack([y, cb, cr]), 0, 1) * np.float32((1 << bit_depth) - 1)
    if bit_depth == 8:
        return planes.astype(np.uint8)  # truncation, as CompressAI's astype(np.uint8)
    return np.rint(planes).astype(np.uint16)


def ycbcr_to_rgb(planes: np.ndarray, bit_depth: BitDepth = 8) -> np.ndarray:
    """``(3, H, W)`` Y, Cb, Cr planes of ``bit_depth`` bits as an ``(H, W, 3)`` uint8 RGB image."""
    y, cb, cr = planes.astype(np.float32) / np.float32((1 << bit_depth) - 1)
    r = y + (2 - 2 * KR) * (cr - 0.5)
    b = y + (2 - 2 * KB) * (cb - 0.5)
    g = (y - KR * r - KB * b) / KG
    rgb = np.clip(np.stack([r, g, b], axis=-1), 0, 1) * np.float32(255)
    return np.rint(rgb).astype(np.uint8)


def yuv444_bytes(height: int, width: int, bit_depth: BitDepth) -> int:
    """The size of one planar 4:4:4 picture file."""
    return 3 * height * width * (1 if bit_depth == 8 else 2)


def write_yuv444(path: Path, planes: np.ndarray) -> None:
    """Write ``(3, H, W)`` planes as a raw planar file (16-bit samples little-endian)."""
    path.write_bytes(np.ascontiguousarray(planes, dtype=planes.dtype.newbyteorder("<")).tobytes())


def read_yuv444(data: bytes, height: int, width: int, bit_depth: BitDepth, program: str) -> np.ndarray:
    """``(3, H, W)`` planes from a raw planar 4:4:4 file's bytes; a ``CodecError`` when the
    file is not one picture of that size."""
    expected = yuv444_bytes(height, width, bit_depth)
    if len(data) != expected:
        raise CodecError(f"{program} wrote {len(data)} bytes, expected {expected} for one "
                         f"{width}x{height} 4:4:4 {bit_depth}-bit picture")
    dtype = np.dtype(np.uint8) if bit_depth == 8 else np.dtype("<u2")
    planes = np.frombuffer(data, dtype=dtype).reshape(3, height, width)
    if bit_depth > 8 and planes.max(initial=0) >= 1 << bit_depth:
        raise CodecError(f"{program} wrote samples above {bit_depth} bits")
    return planes
