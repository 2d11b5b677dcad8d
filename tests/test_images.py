"""Reading images of every common mode into RGB uint8, and loud errors for bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.errors import ImageError
from bench.images import load_image, rgb8_problem, to_rgb8


def saved(tmp_path: Path, img: Image.Image, name: str, **options: object) -> Path:
    path = tmp_path / name
    img.save(path, **options)
    return path


def check_rgb8(arr: np.ndarray, size: tuple[int, int]) -> None:
    w, h = size
    assert arr.shape == (h, w, 3) and arr.dtype == np.uint8 and arr.flags.c_contiguous
    assert rgb8_problem(arr) is None


def test_rgb_passes_through(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    arr = load_image(saved(tmp_path, Image.fromarray(rgb), "rgb.png"))
    assert np.array_equal(arr, rgb)


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    arr = load_image(saved(tmp_path, Image.fromarray(gray, "L"), "gray.png"))
    check_rgb8(arr, (4, 3))
    assert np.array_equal(arr, np.repeat(gray[..., None], 3, axis=2))


def test_bilevel_becomes_black_and_white(tmp_path: Path) -> None:
    img = Image.new("1", (4, 2), 0)
    img.putpixel((1, 0), 1)
    arr = load_image(saved(tmp_path, img, "bits.png"))
    check_rgb8(arr, (4, 2))
    assert arr[0, 1].tolist() == [255, 255, 255] and arr[0, 0].tolist() == [0, 0, 0]


def palette_image() -> Image.Image:
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    for x in range(3):
        img.putpixel((x, 0), x)
    return img


def test_palette_is_expanded(tmp_path: Path) -> None:
    arr = load_image(saved(tmp_path, palette_image(), "pal.png"))
    check_rgb8(arr, (3, 1))
    assert arr[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


def test_palette_transparency_is_composited_over_white(tmp_path: Path) -> None:
    path = saved(tmp_path, palette_image(), "pal-t.png", transparency=1)  # index 1 (green) transparent
    with Image.open(path) as img:
        assert img.mode == "P" and "transparency" in img.info
    arr = load_image(path)
    assert arr[0].tolist() == [[255, 0, 0], [255, 255, 255], [0, 0, 255]]


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    arr = load_image(saved(tmp_path, Image.fromarray(rgba, "RGBA"), "rgba.png"))
    check_rgb8(arr, (3, 1))
    assert arr[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white
    assert arr[0, 1].tolist() == [10, 20, 30]  # opaque -> unchanged
    assert np.abs(arr[0, 2].astype(int) - 127).max() <= 1  # half black over white


def test_la_is_composited_over_white(tmp_path: Path) -> None:
    la = np.array([[[40, 0], [40, 255]]], dtype=np.uint8)
    arr = load_image(saved(tmp_path, Image.fromarray(la, "LA"), "la.png"))
    assert arr[0].tolist() == [[255, 255, 255], [40, 40, 40]]


def test_16_bit_is_scaled_from_full_range(tmp_path: Path) -> None:
    values = np.array([[0, 65535, 257 * 100, 32768]], dtype=np.uint16)
    path = saved(tmp_path, Image.fromarray(values), "deep.png")
    with Image.open(path) as img:
        assert img.mode == "I;16"
    arr = load_image(path)
    check_rgb8(arr, (4, 1))
    assert arr[0, :, 0].tolist() == [0, 255, 100, 128]


def test_cmyk_is_converted(tmp_path: Path) -> None:
    img = Image.new("CMYK", (3, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (0, 0, 0, 255))
    img.putpixel((2, 0), (255, 0, 0, 0))
    arr = load_image(saved(tmp_path, img, "cmyk.tif"))
    check_rgb8(arr, (3, 1))
    assert arr[0].tolist() == [[255, 255, 255], [0, 0, 0], [0, 255, 255]]


def test_to_rgb8_on_in_memory_modes() -> None:
    assert to_rgb8(Image.new("F", (2, 2), 0.5))[0, 0].tolist() == [128, 128, 128]
    assert to_rgb8(Image.new("PA", (2, 2)))[0, 0].tolist() == [255, 255, 255]  # alpha 0 -> white
    assert to_rgb8(Image.new("YCbCr", (2, 2), (235, 128, 128))).shape == (2, 2, 3)


# -- bad files: every one an ImageError naming the file -----------------------------------


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.png", b"", "empty file"),
        ("truncated.png", png_bytes()[:2000], "truncated"),
        ("random.jpg", np.random.default_rng(2).bytes(4096), "not a readable image"),
    ],
    ids=["empty", "truncated-png", "random-bytes"],
)
def test_bad_files_raise_image_error_with_name(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as err:
        load_image(path)
    assert name in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no-such.png") as err:
        load_image(tmp_path / "no-such.png")
    assert "cannot read" in str(err.value)


@pytest.mark.parametrize("size", [(15, 10), (40, 40)], ids=["over-limit-warning", "over-twice-limit-error"])
def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]) -> None:
    path = saved(tmp_path, Image.new("RGB", size), "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="too many pixels") as err:
        load_image(path)
    assert "bomb.png" in str(err.value)


def test_rgb8_problem() -> None:
    assert rgb8_problem(np.zeros((2, 2, 3), np.uint8)) is None
    assert "uint8" in str(rgb8_problem(np.zeros((2, 2, 3), np.uint16)))
    assert "(H, W, 3)" in str(rgb8_problem(np.zeros((2, 2), np.uint8)))
    assert "empty" in str(rgb8_problem(np.zeros((0, 2, 3), np.uint8)))
    assert "list" in str(rgb8_problem([[0]]))
