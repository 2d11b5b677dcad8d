"""Reading images of any mode into 8-bit RGB arrays, explicitly and loudly."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bench.errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to an ``(H, W, 3)`` uint8 array.

    The conversions are the explicit ones a user would expect: grayscale and bilevel are
    replicated to three channels; palette images are expanded through their palette;
    alpha is composited over white; 16-bit and 32-bit integer images are scaled from
    their full range (``v * 255 / 65535``, rounded), float images are clipped to [0, 1];
    CMYK, YCbCr, LAB and HSV go through Pillow's colour conversion to RGB.
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        full = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(arr * 255.0 / full), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        gray = np.clip(np.rint(np.clip(arr, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def rgb8_problem(image: object) -> str | None:
    """Why ``image`` is not an ``(H, W, 3)`` uint8 array, or None when it is one."""
    if not isinstance(image, np.ndarray):
        return f"expected an (H, W, 3) uint8 numpy array, got {type(image).__name__}"
    if image.dtype != np.uint8:
        return f"expected dtype uint8, got {image.dtype}"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"expected shape (H, W, 3), got {image.shape}"
    if image.shape[0] == 0 or image.shape[1] == 0:
        return f"empty image of shape {image.shape}"
    return None


def load_image(path: str | Path) -> np.ndarray:
    """Read ``path`` fully into an RGB uint8 array; an ``ImageError`` naming it otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return decode_image_bytes(data, name=str(path))


def decode_image_bytes(
    data: bytes, name: str = "<bytes>", formats: Sequence[str] | None = None
) -> np.ndarray:
    """Decode an image file held in memory (see ``load_image``).

    ``formats`` (Pillow format names) restricts what is accepted, so that a codec's
    ``decode`` refuses a stream of another format instead of decoding it silently.
    """
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(formats) if formats else None) as img:
                img.load()
                mode = img.mode
                try:
                    return to_rgb8(img)
                except ValueError as exc:  # a readable file in a mode Pillow cannot convert
                    raise ImageError(f"{name}: cannot convert mode {mode} to RGB ({exc})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: too many pixels for a safe decode ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not a readable image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({exc})") from exc
