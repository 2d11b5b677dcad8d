"""Rate control: quality searches for a target bpp, on real codecs and real images."""

from __future__ import annotations

import numpy as np
import pytest

from bench.codecs import CODECS
from bench.ratecontrol import image_at_target, search_quality, searchable_qualities, set_at_target


def test_search_survives_a_non_monotonic_rate() -> None:
    """Sizes that dip as quality rises (seen with JPEG and WebP): the bisection brackets the
    target, the scan around the bracket finds the closest point; no quality is coded twice."""
    table = {q: 0.1 + 0.01 * q for q in range(101)}
    table[47], table[48], table[49] = 0.62, 0.575, 0.56  # a dip just below q50's 0.60
    calls: list[int] = []

    def rate(q: int) -> float:
        calls.append(q)
        return table[q]

    choice = search_quality(rate, range(101), target=0.58)
    assert choice.quality == 48 and choice.bpp == 0.575 and choice.within_tolerance
    assert len(calls) == len(set(calls)) <= 14
    assert [q for q, _ in choice.tried] == calls


def test_targets_outside_the_range_give_the_nearest_end_flagged() -> None:
    choice = search_quality(lambda q: 0.2 + 0.01 * q, range(0, 101), target=0.1)
    assert (choice.quality, choice.within_tolerance) == (0, False) and choice.bpp == pytest.approx(0.2)
    assert choice.relative_error == pytest.approx(1.0)
    choice = search_quality(lambda q: 1.0 - 0.1 * q, range(0, 5), target=0.75, descending=True)
    assert choice.quality == 3  # a quantiser knob, rate falling with it; a tie goes to the lower rate
    with pytest.raises(ValueError, match="target bpp must be positive"):
        search_quality(lambda q: 1.0, [1], target=0)


@pytest.mark.parametrize("name,targets", [("jpeg", [0.25, 0.5, 1.0]), ("webp", [0.25, 0.5, 1.0]),
                                          ("heic", [0.1, 0.25, 0.5, 1.0])])
def test_per_image_targets_on_kodak(kodak_images: list[np.ndarray], name: str, targets: list[float]) -> None:
    """Each image gets its own quality; the achieved bpp (real bytes) is within 10% of the
    target on average, and it is what is reported."""
    codec = CODECS.get(name)()
    # x265 is slow: HEIC searches on two 256×256 crops
    images = kodak_images[:3] if name != "heic" else [im[128:384, 256:512] for im in kodak_images[:2]]
    for target in targets:
        errors = []
        for im in images:
            choice, stream = image_at_target(codec, im, target)
            assert choice.bpp == pytest.approx(8 * len(stream) / (im.shape[0] * im.shape[1]))
            assert choice.bpp == dict(choice.tried)[choice.quality]
            errors.append(abs(choice.relative_error))
        assert np.mean(errors) <= 0.10, (name, target, errors)


def test_jpeg_cannot_reach_a_tenth_of_a_bit_per_pixel_on_kodak(kodak_images: list[np.ndarray]) -> None:
    """Baseline JPEG's floor on Kodak is about 0.18 bpp: the search says so instead of
    reporting the target."""
    choice, _ = image_at_target(CODECS.get("jpeg")(), kodak_images[0], 0.1)
    assert choice.quality == 0 and not choice.within_tolerance and choice.bpp > 0.15


def test_per_dataset_target_uses_one_quality(kodak_images: list[np.ndarray]) -> None:
    images = kodak_images[:4]
    choice, streams = set_at_target(CODECS.get("jpeg")(), images, 0.5)
    per_image = [8 * len(s) / (im.shape[0] * im.shape[1]) for s, im in zip(streams, images)]
    assert choice.bpp == pytest.approx(np.mean(per_image)) and abs(choice.relative_error) <= 0.1
    assert len(streams) == 4 and np.std(per_image) > 0  # one quality, different rates per image


def test_a_neural_codec_picks_among_its_models(kodak_images: list[np.ndarray]) -> None:
    codec = CODECS.get("bmshj2018-hyperprior")(weights="embedded")
    assert searchable_qualities(codec) == [1, 2, 3, 4, 5, 6, 7]  # the embedded hyperprior's seven models
    im = kodak_images[0][:256, :256]
    rates = {q: image_at_target(codec, im, 1.0, qualities=[q])[0].bpp for q in (1, 2, 3)}
    target = rates[2] * 1.02
    choice, _ = image_at_target(codec, im, target)
    assert choice.quality == 2 and choice.within_tolerance and choice.bpp == pytest.approx(rates[2])


# --- targets in a grid, end to end -------------------------------------------------------

def _target_grid(mode: str, **overrides) -> dict:
    from tests.helpers import tiny_grid

    grid = tiny_grid(name=f"targets-{mode}", targets_bpp=[1.0, 2.0], rate_control={"mode": mode})
    grid["codecs"] = [{"codec": "webp", "qualities": [10]}, {"codec": "jpeg", "targets_bpp": [6.0]}]
    grid["experiments"][0]["scenarios"] = ["A", "B", "C"]
    grid.update(overrides)
    return grid


def _run_targets(tmp_path, mode: str):
    from pathlib import Path

    from bench.config import parse_grid
    from bench.grid import resolve
    from bench.runner import RunOptions, run
    from bench.store import Store

    plan = resolve(parse_grid(_target_grid(mode)))
    run(plan, RunOptions(out=Path(tmp_path), workers=1, quiet=True))
    store = Store(Path(tmp_path) / f"targets-{mode}" / "results.sqlite")
    rows = store.cells()
    store.close()
    return plan, rows


def _val_images(plan) -> list[np.ndarray]:
    from bench.datasets.base import ImageSet

    exp = plan.experiments[0]
    images: ImageSet = exp.dataset.load("val", None)
    return images.images


def test_grid_targets_per_dataset_record_the_achieved_rate(tmp_path) -> None:
    """``targets_bpp`` with one quality per set: each B/C row's quality is the searched one,
    its bpp the real mean bpp of the val images coded at that quality (not the target), and
    the target sits in its own column; the webp quality point is untouched."""
    from bench.codecs.base import OperatingPoint

    plan, rows = _run_targets(tmp_path, "dataset")
    assert len(rows) == 1 + 2 * (1 + 2 + 1)  # A; B and C at webp@10, webp@1.0/2.0 bpp, jpeg@6.0 bpp
    images = _val_images(plan)
    for r in rows:
        if r["scenario"] == "A":
            continue
        codec = CODECS.get(r["codec"])()
        if r["target_bpp"] is None:
            assert (r["codec"], r["quality"]) == ("webp", 10) and "rate_control" not in r["record"]
            continue
        control = r["record"]["rate_control"]
        assert control["mode"] == "dataset" and control["bpp"] == r["target_bpp"]
        assert control["search"]["quality"] == r["quality"]
        streams = codec.encode(images, OperatingPoint(r["quality"]))
        achieved = float(np.mean([8 * len(s) / (im.shape[0] * im.shape[1]) for s, im in zip(streams, images)]))
        assert r["bpp"] == pytest.approx(achieved, rel=1e-12) and r["bpp"] != r["target_bpp"]
        assert control["search"]["within_tolerance"] == (abs(achieved - r["target_bpp"]) <= 0.1 * r["target_bpp"])
        assert (r["quality"], achieved) in [tuple(t) for t in control["search"]["tried"]]
    webp = {r["target_bpp"]: r for r in rows if r["codec"] == "webp" and r["scenario"] == "B" and r["target_bpp"]}
    for target, r in webp.items():  # WebP spans 0.6..6 bpp on these 32×32 scenes
        assert abs(r["bpp"] - target) <= 0.1 * target, (target, r["bpp"])
    assert webp[1.0]["quality"] < webp[2.0]["quality"]
    # C trained on the train split at the quality chosen on val
    c = next(r for r in rows if r["scenario"] == "C" and r["codec"] == "webp" and r["target_bpp"] == 1.0)
    assert c["quality"] == webp[1.0]["quality"] and c["bpp"] == webp[1.0]["bpp"]


def test_grid_targets_per_image_give_each_image_its_quality(tmp_path) -> None:
    plan, rows = _run_targets(tmp_path, "image")
    images = _val_images(plan)
    b = next(r for r in rows if r["scenario"] == "B" and r["codec"] == "webp" and r["target_bpp"] == 2.0)
    control = b["record"]["rate_control"]
    assert b["quality"] is None and control["mode"] == "image"
    assert sum(control["qualities"].values()) == len(images) and len(control["qualities"]) > 3
    assert control["images_within_tolerance"] >= len(images) - 2
    assert abs(b["bpp"] - 2.0) <= 0.1 * 2.0 and control["mean_abs_relative_error"] < 0.1
    # each image's own search, repeated here, lands on a quality with the row's spread
    chosen = [image_at_target(CODECS.get("webp")(), im, 2.0)[0].quality for im in images]
    values, counts = np.unique(chosen, return_counts=True)
    assert control["qualities"] == {str(int(v)): int(c) for v, c in zip(values, counts)}


def test_grid_target_problems_are_reported(tmp_path) -> None:
    from bench.config import parse_grid
    from bench.errors import ConfigError
    from bench.grid import resolve

    grid = _target_grid("dataset", targets_bpp=[0.0, 1.0, 1.0], analysis={"anchor": "jpg"})
    grid["codecs"].append({"codec": "avif"})
    grid["codecs"][1]["targets_bpp"] = [30]
    with pytest.raises(ConfigError) as err:
        resolve(parse_grid(grid))
    text = str(err.value)
    assert "targets_bpp[0]: a target must be above 0 and at most 24 bpp (got 0.0)" in text
    assert "targets_bpp: repeated values [0.0, 1.0, 1.0]" in text
    assert "codecs[1].targets_bpp[0]: a target must be above 0 and at most 24 bpp (got 30" in text
    assert "analysis.anchor: no codec or reference curve labelled 'jpg' in the grid. Did you mean: jpeg?" in text
    assert text.count("repeated values") == 1
    grid = _target_grid("dataset", targets_bpp=None)
    grid["codecs"][1].pop("targets_bpp")
    with pytest.raises(ConfigError, match=r"codecs\[1\]: no operating points"):
        resolve(parse_grid(grid))


def test_scenario_d_needs_one_model_per_target() -> None:
    """D reads one model's latents per operating point: per-dataset targets resolve to one
    model; per-image targets would mix models, and the grid says so."""
    from bench.config import parse_grid
    from bench.errors import ConfigError
    from bench.grid import resolve
    from tests.helpers import tiny_grid

    def grid(mode: str) -> dict:
        g = tiny_grid(rate_control={"mode": mode})
        g["codecs"] = [{"codec": "bmshj2018-hyperprior", "label": "hp", "weights": "embedded", "qualities": [1],
                        "targets_bpp": [0.5, 1.0]}]
        g["experiments"][0]["scenarios"] = ["A", "D"]
        g["experiments"][0].pop("finetune", None)  # no C
        g["experiments"][0]["compressed_domain"] = {"train": {"epochs": 1, "lr": 0.001}, "targets_bpp": [1.0]}
        return g

    plan = resolve(parse_grid(grid("dataset")))
    d = [c for c in plan.cells if c.scenario == "D"]
    assert [(c.quality, c.target.bpp if c.target else None) for c in d] == [(1, None), (None, 1.0)]
    with pytest.raises(ConfigError, match="with rate_control.mode: image every image has its own model"):
        resolve(parse_grid(grid("image")))
    bad = grid("dataset")
    bad["experiments"][0]["compressed_domain"]["targets_bpp"] = [0.7]
    with pytest.raises(ConfigError, match=r"compressed_domain.targets_bpp\[0\]: no latent codec .* target 0.7 bpp"):
        resolve(parse_grid(bad))


def test_scenario_d_at_a_per_dataset_target(tmp_path) -> None:
    """A D cell at a target trains and tests on the latents of the quality the search chose;
    its row reports that quality and the achieved rate of those streams."""
    from pathlib import Path

    from bench.codecs.base import OperatingPoint
    from bench.config import parse_grid
    from bench.grid import resolve
    from bench.runner import RunOptions, run
    from bench.store import Store
    from tests.helpers import tiny_grid

    grid = tiny_grid(name="d-target", targets_bpp=[0.6])
    grid["codecs"] = [{"codec": "bmshj2018-hyperprior", "label": "hp", "weights": "embedded"}]
    exp = grid["experiments"][0]
    exp.update(scenarios=["A", "B", "D"], finetune=None,
               dataset={"name": "shapes", "n_train": 32, "n_val": 16, "size": 32},
               compressed_domain={"train": {"epochs": 1, "batch_size": 16, "lr": 0.003}})
    plan = resolve(parse_grid(grid))
    run(plan, RunOptions(out=Path(tmp_path), workers=1, quiet=True))
    store = Store(Path(tmp_path) / "d-target" / "results.sqlite")
    rows = {r["scenario"]: r for r in store.cells()}
    store.close()
    b, d = rows["B"], rows["D:aa"]
    quality = b["record"]["rate_control"]["search"]["quality"]
    assert d["quality"] == b["quality"] == quality and d["target_bpp"] == 0.6
    images = _val_images(plan)
    codec = CODECS.get("bmshj2018-hyperprior")(weights="embedded")
    streams = codec.encode(images, OperatingPoint(quality))
    achieved = float(np.mean([8 * len(s) / (im.shape[0] * im.shape[1]) for s, im in zip(streams, images)]))
    assert d["bpp"] == pytest.approx(achieved) == b["bpp"]
    assert d["record"]["compressed_domain"]["trained"]
