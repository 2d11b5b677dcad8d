"""Keys hold everything that produced a result, the data's content included: a dataset
edited in place recomputes exactly what depends on the edit, with the new values in the
leaderboard, and an unchanged grid recomputes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench import keys
from bench.codecs import CODECS, OperatingPoint
from bench.config import parse_grid
from bench.grid import resolve
from bench.images import load_image
from bench.runner import RunOptions, run


def _run(grid: dict[str, Any], out: Path) -> dict[str, Any]:
    return run(resolve(parse_grid(grid)), RunOptions(out=out, device="cpu", workers=1, quiet=True))


def _board(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name / "leaderboard.csv")


def _counts(summary: dict[str, Any]) -> tuple[int, int, int]:
    return summary["cells_run"], summary["encodes"], summary["trainings"]


# --- pixels: a folder of real photos ---------------------------------------------------


def _photos_grid(folder: Path) -> dict[str, Any]:
    return {"name": "photos", "codecs": [{"codec": "jpeg", "qualities": [20, 60]}],
            "experiments": [{"task": "classification", "dataset": {"name": "photos", "path": str(folder)},
                             "model": {"name": "efficientnet-lite0"}, "scenarios": ["A", "B"]}]}


def _crop(kodak_dir: Path, n: int) -> np.ndarray:
    return load_image(kodak_dir / f"kodim{n:02d}.png")[:128, :192]


def _mean_bpp(folder: Path, quality: int) -> float:
    jpeg = CODECS.get("jpeg")()
    images = [load_image(p) for p in sorted(folder.glob("*.png"))]
    streams = jpeg.encode(images, OperatingPoint(quality))
    return float(np.mean([8 * len(s) / (im.shape[0] * im.shape[1]) for s, im in zip(streams, images)]))


def test_changed_pixels_recompute_their_cells_and_transcodes(tmp_path: Path, kodak_dir: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, n in enumerate((1, 2, 3)):
        Image.fromarray(_crop(kodak_dir, n)).save(folder / f"p{i}.png")
    grid, out = _photos_grid(folder), tmp_path / "out"
    assert _counts(_run(grid, out)) == (3, 6, 0)  # A and two B cells; 3 images at 2 qualities
    before = _board(out, "photos")
    assert _counts(_run(grid, out)) == (0, 0, 0)  # nothing changed: nothing recomputed

    Image.fromarray(_crop(kodak_dir, 4)).save(folder / "p1.png")  # one image, in place
    assert _counts(_run(grid, out)) == (3, 6, 0)  # every cell reads that split; both sets coded again
    after = _board(out, "photos")
    for q in (20, 60):
        old = before[(before.codec == "jpeg") & (before.quality == q)].bpp.iloc[0]
        new = after[(after.codec == "jpeg") & (after.quality == q)].bpp.iloc[0]
        assert new != old and new == pytest.approx(_mean_bpp(folder, q), rel=1e-9)  # the new images' rate
    assert set(after.cell).isdisjoint(before.cell)  # new keys, so the old rows are not reported as current

    for i, n in enumerate((5, 6, 7)):  # every image replaced: the case that once reported stale rows
        Image.fromarray(_crop(kodak_dir, n)).save(folder / f"p{i}.png")
    assert _counts(_run(grid, out)) == (3, 6, 0)
    assert _board(out, "photos").query("quality == 20").bpp.iloc[0] == pytest.approx(_mean_bpp(folder, 20))
    assert _counts(_run(grid, out)) == (0, 0, 0)


def test_a_moved_folder_keeps_its_results_and_a_new_name_shows(tmp_path: Path, kodak_dir: Path) -> None:
    folder = tmp_path / "a" / "photos"
    folder.mkdir(parents=True)
    for i, n in enumerate((1, 2)):
        Image.fromarray(_crop(kodak_dir, n)).save(folder / f"p{i}.png")
    out = tmp_path / "out"
    assert _counts(_run(_photos_grid(folder), out)) == (3, 4, 0)
    moved = tmp_path / "b" / "photos"
    shutil.copytree(folder, moved)  # same content, same folder name, another place
    assert _counts(_run(_photos_grid(moved), out)) == (0, 0, 0)
    grid = _photos_grid(moved)
    grid["codecs"][0]["label"] = "pillow-jpeg"  # a new name in the tables: new rows, nothing coded again
    assert _counts(_run(grid, out)) == (2, 0, 0)
    assert set(_board(out, "photos").codec) == {"none", "pillow-jpeg"}


def test_unchanged_files_are_not_read_again_to_fingerprint(tmp_path: Path, kodak_dir: Path, monkeypatch) -> None:
    from bench.datasets import base, photos

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, n in enumerate((1, 2)):
        Image.fromarray(_crop(kodak_dir, n)).save(folder / f"p{i}.png")
    monkeypatch.setattr(base.FileDigests, "RACY_NS", 0)  # the files were written just now
    reads: list[str] = []

    def counting(path: Path) -> np.ndarray:
        reads.append(Path(path).name)
        return load_image(path)

    monkeypatch.setattr(photos, "load_image", counting)
    ds = photos.Photos(path=str(folder))
    first = ds.load("val", tmp_path / "cache")
    assert sorted(reads) == ["p0.png", "p1.png"]
    reads.clear()
    again = ds.load("val", tmp_path / "cache")
    assert reads == [] and again.fingerprint == first.fingerprint and again.images.shapes == first.images.shapes
    Image.fromarray(_crop(kodak_dir, 3)).save(folder / "p1.png")
    changed = ds.load("val", tmp_path / "cache")
    assert reads == ["p1.png"] and changed.fingerprint != first.fingerprint


# --- labels: label maps of a segmentation set ------------------------------------------


def _labelpng_split(root: Path, n: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(n):
        mask = np.zeros((32, 32), np.uint8)
        y, x = rng.integers(0, 16, 2)
        mask[y : y + 16, x : x + 16] = 1 + i % 2
        image = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
        image[mask == 1] += np.array([180, 40, 40], np.uint8)
        image[mask == 2] += np.array([40, 40, 180], np.uint8)
        Image.fromarray(image).save(images / f"{i}.png")
        Image.fromarray(mask).save(labels / f"{i}.png")
    return images, labels


def _segmentation_grid(tmp_path: Path) -> dict[str, Any]:
    val_images, val_labels = _labelpng_split(tmp_path / "val", 4, 1)
    train_images, train_labels = _labelpng_split(tmp_path / "train", 8, 2)
    dataset = {"name": "labelpng", "images": str(val_images), "labels": str(val_labels),
               "train_images": str(train_images), "train_labels": str(train_labels),
               "classes": ["background", "red", "blue"], "image_suffix": ".png"}
    return {"name": "seg", "codecs": [{"codec": "jpeg", "qualities": [30]}],
            "experiments": [{"task": "segmentation", "dataset": dataset,
                             "model": {"name": "tiny-fcn", "widths": [8, 8, 8], "neck": 8, "bf16": False},
                             "scenarios": ["A", "B", "C"], "train": {"epochs": 2, "batch_size": 4, "lr": 0.01},
                             "finetune": {"epochs": 1, "batch_size": 4, "lr": 0.001}}]}


def _mious(out: Path) -> dict[str, float]:
    lb = _board(out, "seg")
    return {s: float(v) for s, v in lb[lb.metric == "mIoU"].set_index("scenario").value.items()}


def test_an_edited_label_map_recomputes_exactly_what_depends_on_it(tmp_path: Path) -> None:
    grid, out = _segmentation_grid(tmp_path), tmp_path / "out"
    # A, B, C; val and train coded once each (4 + 8 images); the A model and one finetune
    assert _counts(_run(grid, out)) == (3, 12, 2)
    first = _mious(out)
    assert _counts(_run(grid, out)) == (0, 0, 0)

    mask = np.array(Image.open(tmp_path / "val" / "labels" / "0.png"))
    Image.fromarray(np.where(mask == 0, 2, 0).astype(np.uint8)).save(tmp_path / "val" / "labels" / "0.png")
    # a val label: every cell is evaluated again; no pixel changed, no model trained on it
    assert _counts(_run(grid, out)) == (3, 0, 0)
    second = _mious(out)
    assert all(second[s] != first[s] for s in ("A", "B", "C"))

    mask = np.array(Image.open(tmp_path / "train" / "labels" / "3.png"))
    Image.fromarray(np.where(mask == 0, 1, 0).astype(np.uint8)).save(tmp_path / "train" / "labels" / "3.png")
    # a train label: the A model and the finetune train again; the transcodes stay
    assert _counts(_run(grid, out)) == (3, 0, 2)

    image = np.array(Image.open(tmp_path / "val" / "images" / "2.png"))
    Image.fromarray(255 - image).save(tmp_path / "val" / "images" / "2.png")
    # val pixels: the val set is coded again and every cell evaluated; no model depends on them
    assert _counts(_run(grid, out)) == (3, 4, 0)
    assert _counts(_run(grid, out)) == (0, 0, 0)


# --- annotations: a COCO instances file ------------------------------------------------


def _coco_split(root: Path, n: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "square"}]}
    for i in range(n):
        image = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
        x, y = (int(v) for v in rng.integers(0, 16, 2))
        image[y : y + 12, x : x + 12] = 220
        Image.fromarray(image).save(images / f"{i}.png")
        doc["images"].append({"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 32})
        doc["annotations"].append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, y, 12, 12],
                                   "area": 144.0, "iscrowd": 0})
    path = root / "instances.json"
    path.write_text(json.dumps(doc))
    return images, path


def test_an_edited_annotation_recomputes_exactly_what_depends_on_it(tmp_path: Path) -> None:
    val_images, val_json = _coco_split(tmp_path / "val", 4, 1)
    train_images, train_json = _coco_split(tmp_path / "train", 8, 2)
    dataset = {"name": "coco", "images": str(val_images), "annotations": str(val_json),
               "train_images": str(train_images), "train_annotations": str(train_json)}
    grid = {"name": "det", "codecs": [{"codec": "webp", "qualities": [40]}],
            "experiments": [{"task": "detection", "dataset": dataset,
                             "model": {"name": "tiny-centernet", "widths": [8, 8, 8], "neck": 8, "bf16": False},
                             "scenarios": ["A", "B", "C"], "train": {"epochs": 1, "batch_size": 4, "lr": 0.003},
                             "finetune": {"epochs": 1, "batch_size": 4, "lr": 0.001}}]}
    out = tmp_path / "out"
    assert _counts(_run(grid, out)) == (3, 12, 2)
    keys_before = set(_board(out, "det").cell)
    assert _counts(_run(grid, out)) == (0, 0, 0)

    doc = json.loads(val_json.read_text())
    doc["annotations"][0]["bbox"] = [0, 0, 20, 20]  # one box of the val split
    val_json.write_text(json.dumps(doc))
    assert _counts(_run(grid, out)) == (3, 0, 0)
    assert set(_board(out, "det").cell).isdisjoint(keys_before)

    doc = json.loads(train_json.read_text())
    doc["annotations"][5]["iscrowd"] = 1  # one flag of one train annotation
    train_json.write_text(json.dumps(doc))
    assert _counts(_run(grid, out)) == (3, 0, 2)
    assert _counts(_run(grid, out)) == (0, 0, 0)


# --- versions --------------------------------------------------------------------------


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    from tests.helpers import tiny_grid

    grid = tiny_grid()
    grid["codecs"] = grid["codecs"][:1]  # jpeg at 5 and 80: A, 2 B, 2 C
    out = tmp_path / "out"
    assert _counts(_run(grid, out)) == (5, 2 * 90, 3)
    return grid, out


def test_a_plugin_version_recomputes_its_dependants(tiny, monkeypatch) -> None:
    from bench.scenarios.pixel import Finetuned
    from bench.tasks.classification import Classification

    grid, out = tiny
    monkeypatch.setattr(Finetuned, "version", "test")
    assert _counts(_run(grid, out)) == (2, 0, 2)  # the C cells and their finetunes only
    monkeypatch.setattr(Classification, "version", "test")
    assert _counts(_run(grid, out)) == (5, 0, 3)  # every cell and model of the task; no transcode
    monkeypatch.setattr(CODECS.get("jpeg"), "version", "test")
    assert _counts(_run(grid, out)) == (4, 2 * 90, 2)  # the jpeg cells, sets and finetunes; not A


@pytest.mark.parametrize(("part", "expected"), [
    ("evaluate", (5, 0, 0)),           # a metric: every cell, nothing trained or coded
    ("train", (5, 0, 3)),              # the training loop: every model and cell
    ("transcode", (4, 2 * 90, 2)),     # coding and fidelity: the sets, what trains on them, their cells
])
def test_a_harness_part_version_recomputes_its_dependants(tiny, monkeypatch, part: str, expected) -> None:
    grid, out = tiny
    monkeypatch.setitem(keys.HARNESS, part, keys.HARNESS[part] + 1)
    assert _counts(_run(grid, out)) == expected
    assert _counts(_run(grid, out)) == (0, 0, 0)


def test_a_cache_moved_elsewhere_is_still_valid(tiny, tmp_path: Path) -> None:
    grid, out = tiny
    shutil.copytree(out / "cache", tmp_path / "moved")  # keys hold no path
    again = run(resolve(parse_grid(grid)), RunOptions(out=tmp_path / "new", cache_dir=tmp_path / "moved",
                                                    device="cpu", workers=1, quiet=True))
    assert _counts(again) == (5, 0, 0)


def test_sources_change_only_with_a_decision_about_their_version() -> None:
    """A change to a harness part's sources must come with a decision: bump its version in
    ``bench.keys.HARNESS`` when its numbers change (old results are then recomputed), or not
    when they cannot; either way record the new digest (``python -m bench.keys``)."""
    recorded = json.loads((Path(__file__).parent / "harness_digests.json").read_text())
    for part, now in keys.source_digests().items():
        if part in keys.HARNESS:
            files, bump = keys.HARNESS_SOURCES[part], f"HARNESS[{part!r}] in bench/keys.py"
        else:
            where, files = keys.PLUGIN_SOURCES[part]
            bump = f"the version of {where}"
        assert recorded.get(part) == now, (
            f"{', '.join(f'bench/{f}' for f in files)} changed ({part}, version {now['version']}): if the numbers it "
            f"computes change, bump {bump}; then run `python -m bench.keys > tests/harness_digests.json`")
