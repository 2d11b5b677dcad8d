"""The embedded shapes dataset: determinism, annotations that agree, texture that is there."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bench.datasets.synthetic import CLASSES, ShapesSpec, ShapesSplit, generate


@pytest.fixture(scope="module")
def val200() -> ShapesSplit:
    return generate(ShapesSpec(seed=1, n_train=0, n_val=200), "val")


def assert_same(a: ShapesSplit, b: ShapesSplit, n: int | None = None) -> None:
    n = len(a) if n is None else n
    assert np.array_equal(a.images[:n], b.images[:n])
    assert np.array_equal(a.masks[:n], b.masks[:n])
    assert np.array_equal(a.labels[:n], b.labels[:n])
    for i in range(n):
        assert np.array_equal(a.boxes[i], b.boxes[i])
        assert np.array_equal(a.box_labels[i], b.box_labels[i])


def test_classes_are_shape_times_fill() -> None:
    assert len(CLASSES) == len(set(CLASSES)) == 10
    assert CLASSES[:2] == ("circle-plain", "circle-striped")


def test_same_spec_gives_identical_bytes() -> None:
    spec = ShapesSpec(seed=7, n_train=12, n_val=3)
    a, b = generate(spec, "train"), generate(spec, "train")
    assert_same(a, b)
    assert a.images.tobytes() == b.images.tobytes()


def test_image_i_does_not_depend_on_n() -> None:
    short = generate(ShapesSpec(n_val=10), "val")
    long = generate(ShapesSpec(n_val=23), "val")
    assert len(short) == 10 and len(long) == 23
    assert_same(short, long, n=10)


def test_splits_and_seeds_are_different_streams() -> None:
    spec = ShapesSpec(n_train=5, n_val=5)
    train, val = generate(spec, "train"), generate(spec, "val")
    other = generate(ShapesSpec(seed=1, n_train=5, n_val=5), "train")
    for i in range(5):
        assert not np.array_equal(train.images[i], val.images[i])
        assert not np.array_equal(train.images[i], other.images[i])


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_dtypes(size: int) -> None:
    data = generate(ShapesSpec(n_train=0, n_val=4, size=size), "val")
    assert data.images.shape == (4, size, size, 3) and data.images.dtype == np.uint8
    assert data.masks.shape == (4, size, size) and data.masks.dtype == np.uint8
    assert data.labels.shape == (4,) and data.labels.dtype == np.int64
    assert len(data.boxes) == len(data.box_labels) == 4
    for boxes, box_labels in zip(data.boxes, data.box_labels):
        assert boxes.dtype == np.float32 and boxes.shape == (len(box_labels), 4)
        assert box_labels.dtype == np.int64 and 1 <= len(box_labels) <= 3
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= size).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_bad_split_and_spec_are_rejected() -> None:
    with pytest.raises(ValueError, match="split"):
        generate(ShapesSpec(), "test")
    with pytest.raises(ValueError, match="multiple of 8"):
        ShapesSpec(size=60)
    with pytest.raises(ValueError, match="seed"):
        ShapesSpec(seed=-1)


def test_boxes_match_visible_masks_and_main_object_is_largest(val200: ShapesSplit) -> None:
    for i in range(len(val200)):
        mask, boxes, box_labels = val200.masks[i], val200.boxes[i], val200.box_labels[i]
        # Every labelled pixel belongs to an object that has a box: dropped objects leave none.
        assert set(np.unique(mask)) - {0} <= set((box_labels + 1).tolist())
        areas = []
        for (x0, y0, x1, y1), c in zip(boxes.astype(int), box_labels):
            inside = mask[y0:y1, x0:x1] == c + 1
            ys, xs = np.nonzero(inside)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 0, x1 - x0, y1 - y0)
            areas.append(inside.sum())
        main = int(np.argmax(areas))
        assert box_labels[main] == val200.labels[i]
        if len(set(box_labels.tolist())) == len(box_labels):  # areas are then per object
            others = [a for j, a in enumerate(areas) if j != main]
            assert all(areas[main] >= 2 * a for a in others)


def test_classes_are_balanced(val200: ShapesSplit) -> None:
    assert np.bincount(val200.labels, minlength=10).tolist() == [20] * 10
    assert set(np.concatenate(val200.box_labels).tolist()) == set(range(10))


def stripe_energy(image: np.ndarray, region: np.ndarray) -> float:
    """Mean squared 3x3 high-pass of luma inside the region, away from its edges."""
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    high = luma - ndimage.uniform_filter(luma, 3)
    return float((high[ndimage.binary_erosion(region, iterations=2)] ** 2).mean())


def fill_accuracy(data: ShapesSplit, images: np.ndarray, threshold: float) -> float:
    """How often thresholding the main object's stripe energy tells striped from plain."""
    energy = np.array(
        [stripe_energy(img, m == c + 1) for img, m, c in zip(images, data.masks, data.labels)]
    )
    return float(((energy > threshold) == (data.labels % 2 == 1)).mean())


def best_fill_accuracy(data: ShapesSplit, images: np.ndarray) -> float:
    """The best any single stripe-energy threshold does on ``images``."""
    energy = np.array([stripe_energy(img, m == c + 1) for img, m, c in zip(images, data.masks, data.labels)])
    striped = data.labels % 2 == 1
    return max(float(((energy > t) == striped).mean()) for t in np.unique(energy))


def test_stripes_carry_high_frequency_energy(val200: ShapesSplit) -> None:
    energy = np.array(
        [
            stripe_energy(img, m == c + 1)
            for img, m, c in zip(val200.images, val200.masks, val200.labels)
        ]
    )
    striped = val200.labels % 2 == 1
    assert energy[striped].mean() > 20 * energy[~striped].mean()
    assert fill_accuracy(val200, val200.images, threshold=5.0) >= 0.95


@pytest.mark.parametrize("fmt, options", [("JPEG", {"quality": 20, "optimize": True}), ("WEBP", {"quality": 5})])
def test_the_fill_survives_the_lowest_default_rates(val200: ShapesSplit, fmt: str, options: dict) -> None:
    """The point of the dataset: at the default grid's lowest JPEG and WebP rates the class
    is still in the pixels (a stripe-energy threshold fitted to the compressed images tells
    the fill), so what a model loses there it can learn back (scenario C)."""
    def coded(image: np.ndarray) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, fmt, **options)
        return np.asarray(Image.open(buf).convert("RGB"))

    low = np.stack([coded(img) for img in val200.images])
    assert best_fill_accuracy(val200, low) >= 0.95
    # ... while a blur that removes the stripes' band leaves chance: the measure can fail.
    blurred = np.stack([ndimage.uniform_filter(img, (9, 9, 1)) for img in val200.images])
    assert best_fill_accuracy(val200, blurred) <= 0.8
