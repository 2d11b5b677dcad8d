"""Bootstrap replicates of COCO box AP against pycocotools itself: all-ones weights are
``coco_map``, integer weights are ``coco_map`` of the dataset with images repeated, weight 0
is an image removed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocotools.cocoeval import Params

from bench.metrics.bootstrap import replicate_weights
from bench.metrics.coco_bootstrap import (_thresholds_reached, coco_matches,
                                          weighted_coco_map)
from bench.metrics.detection import COCO_METRICS, Detections, ImageBoxes, coco_map

NUM_CLASSES = 4  # the random cases draw objects of classes 0-2 only: class 3 has detections and no objects


def _random_case(seed: int, n_images: int = 40, max_side: float = 150.0, scores: str = "distinct",
                 crowd_rate: float = 0.05, segment_areas: bool = False
                 ) -> tuple[list[ImageBoxes], list[Detections]]:
    """Objects of three classes on 200×200 images (some with none); detections jittered
    from the objects (some with another class or one the dataset lacks), random boxes and
    images without any. ``scores``: "distinct", "ties across images" (a coarse grid, no
    value twice in one image) or "ties within images" (a coarse grid with repeats)."""
    rng = np.random.default_rng(seed)
    truth, dets = [], []
    for _ in range(n_images):
        k = int(rng.integers(0, 5)) if rng.random() > 0.15 else 0
        xy = rng.uniform(0, 180, (k, 2))
        wh = rng.uniform(4, max_side, (k, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, 3, k)
        areas = wh.prod(axis=1) * rng.uniform(0.5, 1.0, k) if segment_areas else None
        truth.append(ImageBoxes(boxes, labels, areas=areas, crowd=rng.random(k) < crowd_rate))
        if rng.random() < 0.15:
            dets.append(Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)))
            continue
        j = int(rng.integers(0, 12)) if k else 0
        src = rng.integers(0, max(k, 1), j)
        near = boxes[src] + rng.normal(0, 0.08, (j, 4)) * np.tile(wh[src], 2) if k else np.zeros((0, 4))
        near_labels = np.where(rng.random(j) < 0.85, labels[src] if k else 0, rng.integers(-1, NUM_CLASSES + 1, j))
        r = int(rng.integers(0, 5))
        far_xy = rng.uniform(0, 180, (r, 2))
        far = np.concatenate([far_xy, far_xy + rng.uniform(4, max_side, (r, 2))], axis=1)
        n = j + r
        if scores == "distinct":
            s = rng.random(n)
        elif scores == "ties across images":
            s = rng.choice(np.arange(1, 31) / 30, n, replace=False)
        else:
            s = rng.integers(1, 21, n) / 20
        dets.append(Detections(np.concatenate([near, far]), s,
                               np.concatenate([near_labels, rng.integers(0, NUM_CLASSES, r)])))
    return truth, dets


def _assert_equal(got: dict[str, np.ndarray], want: dict[str, float], row: int = 0, tol: float = 1e-12) -> None:
    for name in COCO_METRICS:
        g, w = float(got[name][row]), want[name]
        assert (math.isnan(g) and math.isnan(w)) or abs(g - w) <= tol, (name, g, w)


def _largest_difference(got: dict[str, np.ndarray], want: dict[str, float], row: int = 0) -> float:
    assert all(math.isnan(got[n][row]) == math.isnan(want[n]) for n in COCO_METRICS)
    return max(abs(float(got[n][row]) - want[n]) for n in COCO_METRICS if not math.isnan(want[n]))


CASES = {  # seed, then _random_case's options
    "all sizes": (0, {}),
    "small objects only": (1, {"max_side": 30.0}),  # every object below 32²: APm and APl are NaN
    "segment areas, many crowds": (2, {"segment_areas": True, "crowd_rate": 0.3}),
    "large boxes": (3, {"max_side": 200.0, "n_images": 25}),
}


@pytest.mark.parametrize("case", CASES)
def test_weights_of_one_are_coco_map(case: str) -> None:
    seed, options = CASES[case]
    truth, dets = _random_case(seed, **options)
    want = coco_map(truth, dets, NUM_CLASSES)
    assert 0.1 < want["mAP"] < 0.9  # a case where precision and recall both vary
    got = weighted_coco_map(coco_matches(truth, dets, NUM_CLASSES), np.ones((3, len(truth))))
    assert list(got) == list(COCO_METRICS) and all(v.shape == (3,) for v in got.values())
    for row in range(3):
        _assert_equal(got, want, row)
    if case == "small objects only":
        assert math.isnan(want["APm"]) and math.isnan(want["APl"])


def test_scaling_every_weight_changes_nothing() -> None:
    truth, dets = _random_case(0)
    matches = coco_matches(truth, dets, NUM_CLASSES)
    got = weighted_coco_map(matches, np.array([[1.0], [0.5], [2.0], [3.0]]) * np.ones(len(truth)))
    for name in COCO_METRICS:
        assert np.all(got[name] == got[name][0])


def _box(*xyxy: float) -> np.ndarray:
    return np.array(xyxy, np.float64).reshape(-1, 4)


def test_the_conventions_of_coco_map() -> None:
    none = Detections(_box(), np.zeros(0), np.zeros(0, np.int64))
    hit = Detections(_box(0, 0, 10, 10), np.array([0.9]), np.array([1]))
    unknown = Detections(_box(0, 0, 10, 10), np.array([0.9]), np.array([-1]))
    obj = ImageBoxes(_box(0, 0, 10, 10), np.array([1]))
    crowd = ImageBoxes(_box(0, 0, 10, 10), np.array([1]), crowd=np.array([True]))
    empty = ImageBoxes(_box(), np.zeros(0, np.int64))
    cases = {
        "no detection at all": ([obj, empty], [none, none]),  # 0 everywhere, even APm and APl
        "only detections of unknown classes": ([obj], [unknown]),
        "only crowds": ([crowd], [hit]),  # nothing to find: NaN everywhere
        "no objects": ([empty, empty], [hit, none]),
        "one hit": ([obj, empty], [hit, none]),
    }
    for name, (truth, dets) in cases.items():
        want = coco_map(truth, dets, 2)
        matches = coco_matches(truth, dets, 2)
        _assert_equal(weighted_coco_map(matches, np.ones((1, len(truth)))), want)
        if len(truth) == 2:  # the first image dropped: nothing to find
            assert all(math.isnan(v[0]) for v in weighted_coco_map(matches, np.array([[0.0, 1.0]])).values()), name


# Repeating an image k times in the dataset repeats each of its detections k times with the
# same score. accumulate() ranks detections with a stable mergesort of the images' lists in
# image order, so equal scores keep the order of the images' lists, and weighted_coco_map
# ranks the k copies of a detection together (an image weighted k adds k to TP or FP at
# once). That is the repeated dataset's ranking whenever each tie is between detections of
# different images and the copies of an image are adjacent; the metrics are then equal (to
# rounding in the final mean). Ties within one image (d and e of one class with one score)
# are ranked d d ... e e here but d e d e ... in the repeated dataset, and copies spread
# through the dataset interleave ties between images likewise: a TP/FP order COCO leaves to
# the input's order, worth 1e-3 to 1e-2 of AP on these 40-image cases with scores on a
# 1/20 or 1/30 grid.


def _repeated(truth: list, dets: list, counts: np.ndarray, adjacent: bool) -> tuple[list, list]:
    if adjacent:
        order = [i for i, k in enumerate(counts) for _ in range(k)]
    else:  # all images once, then again those drawn twice or more, ...
        order = [i for r in range(counts.max()) for i, k in enumerate(counts) if k > r]
    return [truth[i] for i in order], [dets[i] for i in order]


@pytest.mark.parametrize("seed", [0, 1])
def test_integer_weights_are_repeated_images(seed: int) -> None:
    truth, dets = _random_case(seed)
    counts = np.random.default_rng(seed).integers(0, 4, len(truth))
    got = weighted_coco_map(coco_matches(truth, dets, NUM_CLASSES), counts[None])
    for adjacent in (True, False):  # with distinct scores the order of the copies does not matter
        _assert_equal(got, coco_map(*_repeated(truth, dets, counts, adjacent), NUM_CLASSES))


def test_ties_between_images_are_exact_with_adjacent_copies() -> None:
    truth, dets = _random_case(4, scores="ties across images")
    counts = np.random.default_rng(4).integers(0, 4, len(truth))
    got = weighted_coco_map(coco_matches(truth, dets, NUM_CLASSES), counts[None])
    _assert_equal(got, coco_map(*_repeated(truth, dets, counts, adjacent=True), NUM_CLASSES))
    spread = _largest_difference(got, coco_map(*_repeated(truth, dets, counts, adjacent=False), NUM_CLASSES))
    assert 1e-3 < spread < 2e-2  # the copies interleave with other images' equal scores


def test_ties_within_an_image_are_close() -> None:
    truth, dets = _random_case(5, scores="ties within images")
    counts = np.random.default_rng(5).integers(0, 4, len(truth))
    got = weighted_coco_map(coco_matches(truth, dets, NUM_CLASSES), counts[None])
    assert 1e-3 < _largest_difference(got, coco_map(*_repeated(truth, dets, counts, True), NUM_CLASSES)) < 2e-2


@pytest.mark.parametrize("scores", ["distinct", "ties within images"])
def test_weight_zero_is_an_image_removed(scores: str) -> None:
    # Removing images keeps the others' ranking, ties included: exact either way.
    truth, dets = _random_case(6, scores=scores)
    rng = np.random.default_rng(6)
    keep = rng.random((3, len(truth))) < 0.6
    got = weighted_coco_map(coco_matches(truth, dets, NUM_CLASSES), keep)
    for row, k in enumerate(keep):
        idx = np.flatnonzero(k)
        _assert_equal(got, coco_map([truth[i] for i in idx], [dets[i] for i in idx], NUM_CLASSES), row)


def test_replicates_spread_around_the_full_set() -> None:
    truth, dets = _random_case(0, n_images=60)
    full = coco_map(truth, dets, NUM_CLASSES)["mAP"]
    weights = np.concatenate(list(replicate_weights(len(truth), 200)))
    assert weights.shape == (200, 60) and np.all(weights.sum(axis=1) == 60)
    maps = weighted_coco_map(coco_matches(truth, dets, NUM_CLASSES), weights, chunk_bytes=2**16)["mAP"]
    low, high = np.percentile(maps, [2.5, 97.5])
    assert low < full < high and 0.01 < high - low < 0.3
    assert len(np.unique(maps)) > 150


def test_thresholds_reached_is_searchsorted() -> None:
    thresholds = Params(iouType="bbox").recThrs
    rc = np.concatenate([np.arange(n + 1) / n for n in range(1, 1500)]
                        + [thresholds, np.nextafter(thresholds, 2), np.nextafter(thresholds, -1).clip(0),
                           np.random.default_rng(0).random(10**5)])
    assert np.array_equal(_thresholds_reached(rc, thresholds), np.searchsorted(thresholds, rc, side="right"))


def test_bad_weights_are_refused() -> None:
    truth, dets = _random_case(0, n_images=5)
    matches = coco_matches(truth, dets, NUM_CLASSES)
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        weighted_coco_map(matches, np.ones(5))
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        weighted_coco_map(matches, np.ones((2, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        weighted_coco_map(matches, -np.ones((1, 5)))
    with pytest.raises(ValueError, match="detection lists"):
        coco_matches(truth, dets[:4], NUM_CLASSES)
