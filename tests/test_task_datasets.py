"""The COCO-format and label-PNG readers: what they read, and one clear line for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from bench.datasets import DATASETS
from bench.datasets.coco import Coco
from bench.datasets.labelpng import LabelPng
from bench.errors import DatasetError
from bench.models.detectors import TinyCenterNet
from bench.models.segmenters import TinyFCN
from bench.tasks.detection import Detection
from bench.tasks.segmentation import Segmentation


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# --- COCO ----------------------------------------------------------------------------


def _coco(tmp_path: Path, **edit) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(images / "b.png")
    doc = {
        "images": [{"id": 9, "file_name": "b.png", "width": 24, "height": 24},
                   {"id": 4, "file_name": "a.png", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 4, "category_id": 7, "bbox": [1, 2, 10, 5], "area": 42.0, "iscrowd": 0},
            {"id": 2, "image_id": 4, "category_id": 3, "bbox": [20, 10, 8, 8], "iscrowd": 1},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }
    for key, value in edit.items():
        doc[key] = value
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return images, path


def test_coco_reads_boxes_labels_and_category_mapping(tmp_path: Path) -> None:
    images, path = _coco(tmp_path)
    ds = DATASETS.get("coco")(images=str(images), annotations=str(path))
    assert ds.problems() == [] and ds.splits == ("val",)
    data = ds.load("val")
    assert data.ids == ["a.png", "b.png"]  # image id order
    assert data.classes == ("cat", "dog") and data.targets["category_ids"] == (3, 7)
    assert data.labels is None and ds.has_labels
    np.testing.assert_array_equal(data.targets["boxes"][0], [[1, 2, 11, 7], [20, 10, 28, 18]])
    assert data.targets["box_labels"][0].tolist() == [1, 0]
    assert data.targets["box_areas"][0].tolist() == [42.0, 64.0]  # given, else the box's
    assert data.targets["box_crowd"][0].tolist() == [False, True]
    assert data.targets["boxes"][1].shape == (0, 4)
    assert Detection().problems(ds, TinyCenterNet()) == []
    assert Segmentation().problems(ds, TinyFCN())


@pytest.mark.parametrize("edit, message", [
    ({"annotations": [{"id": 5, "image_id": 4, "category_id": 99, "bbox": [0, 0, 1, 1]}]},
     "annotation 5 has category_id 99, which is not in 'categories'"),
    ({"annotations": [{"id": 6, "image_id": 123, "category_id": 7, "bbox": [0, 0, 1, 1]}]},
     "annotation 6 refers to image_id 123, which is not in 'images'"),
    ({"annotations": [{"id": 8, "image_id": 4, "category_id": 7, "bbox": [0, 0, -1, 1]}]},
     "annotation 8 has a malformed bbox"),
    ({"images": [{"id": 4, "file_name": "missing.png"}]}, "image 4 file .*missing.png not found"),
    ({"images": [{"id": 4, "file_name": "a.png", "width": 41, "height": 30}]},
     r"image 4 \(a.png\) is 40x30, the annotations say 41x30"),
    ({"categories": "x"}, "not a COCO instances file"),
])
def test_coco_bad_input_is_one_line_naming_the_file(tmp_path: Path, edit: dict, message: str) -> None:
    images, path = _coco(tmp_path, **edit)
    with pytest.raises(DatasetError, match=message) as exc:
        Coco(images=str(images), annotations=str(path)).load("val")
    assert _one_line(exc).startswith(str(path))


def test_coco_malformed_json_and_missing_paths(tmp_path: Path) -> None:
    images, path = _coco(tmp_path)
    path.write_text('{"images": [}')
    with pytest.raises(DatasetError, match=r"not valid JSON \(line 1, column 13") as exc:
        Coco(images=str(images), annotations=str(path)).load("val")
    assert _one_line(exc).startswith(str(path))
    problems = Coco(images=str(tmp_path / "nope"), annotations=str(tmp_path / "none.json")).problems()
    assert problems == [f"{tmp_path / 'none.json'}: annotation file not found", f"{tmp_path / 'nope'}: image folder not found"]


def test_coco_train_split_and_params(tmp_path: Path) -> None:
    images, path = _coco(tmp_path)
    ds = Coco(images=str(images), annotations=str(path), train_images=str(images), train_annotations=str(path),
              max_images=1)
    assert ds.splits == ("train", "val") and len(ds.load("train")) == 1
    with pytest.raises(ValidationError, match="together"):
        Coco(images="i", annotations="a", train_images="t")


def test_detection_task_runs_on_a_coco_set_of_mixed_sizes(tmp_path: Path) -> None:
    import torch

    from bench.config import Schedule

    images, path = _coco(tmp_path)
    data = Coco(images=str(images), annotations=str(path)).load("val")
    task, model = Detection(), TinyCenterNet(widths=(8, 8, 8), neck=8)
    torch.manual_seed(0)
    net = task.build(model, data)
    task.train(net, model, data.images, data, Schedule(epochs=1, batch_size=2, lr=0.001), seed=0, device="cpu")
    got = task.evaluate(net, model, data.images, task.references(net, model, data, "cpu"), "cpu")
    assert set(got) == {"mAP", "AP50", "AP75", "APs", "APm", "APl"}


# --- label PNG -------------------------------------------------------------------------


def _labelpng(tmp_path: Path, labels: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """ADE20K-like: JPEG images, PNG label maps where 0 is 'other' and 1..3 are classes."""
    images, masks = tmp_path / "images", tmp_path / "labels"
    (images / "sub").mkdir(parents=True, exist_ok=True)
    masks.joinpath("sub").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sizes = {"x": (16, 20), "sub/y": (12, 12)}
    default = {"x": np.tile(np.array([0, 1, 2, 3], np.uint8), (16, 5)), "sub/y": np.full((12, 12), 3, np.uint8)}
    for key, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{key}.jpg")
        Image.fromarray((labels or {}).get(key, default[key])).save(masks / f"{key}.png")
    return images, masks


def test_labelpng_reads_masks_with_offset_and_ignore(tmp_path: Path) -> None:
    images, masks = _labelpng(tmp_path)
    ds = DATASETS.get("labelpng")(images=str(images), labels=str(masks), classes=["a", "b", "c"], label_offset=-1)
    assert ds.problems() == []
    data = ds.load("val")
    assert data.ids == ["sub/y.jpg", "x.jpg"] and data.classes == ("a", "b", "c")
    m = data.targets["masks"]
    assert isinstance(m, list) and [x.shape for x in m] == [(12, 12), (16, 20)]  # sizes vary: a list
    assert m[1][0, :4].tolist() == [255, 0, 1, 2] and (m[0] == 2).all()
    assert data.targets["mask_classes"] == ("a", "b", "c") and data.targets["ignore_index"] == 255
    assert Segmentation().problems(ds, TinyFCN()) == []
    assert Detection().problems(ds, TinyCenterNet())


def test_labelpng_classes_file(tmp_path: Path) -> None:
    images, masks = _labelpng(tmp_path)
    (tmp_path / "classes.txt").write_text("other\na\nb\nc\n\n")
    data = LabelPng(images=str(images), labels=str(masks), classes_file=str(tmp_path / "classes.txt")).load("val")
    assert data.classes == ("other", "a", "b", "c") and data.targets["masks"][1][0, :4].tolist() == [0, 1, 2, 3]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert LabelPng(images=str(images), labels=str(masks), classes_file=str(empty)).problems() == [
        f"{empty}: classes file has no class names"]


def test_labelpng_bad_inputs_are_one_line_naming_the_file(tmp_path: Path) -> None:
    images, masks = _labelpng(tmp_path, {"x": np.zeros((15, 20), np.uint8)})
    with pytest.raises(DatasetError, match="label map is 20x15, its image x.jpg is 20x16") as exc:
        LabelPng(images=str(images), labels=str(masks), classes=["a", "b", "c", "d"]).load("val")
    assert _one_line(exc).startswith(str(masks / "x.png"))

    images, masks = _labelpng(tmp_path, {"x": np.full((16, 20), 7, np.uint8)})
    with pytest.raises(DatasetError, match="stored values 7 are beyond the 3 classes") as exc:
        LabelPng(images=str(images), labels=str(masks), classes=["a", "b", "c"], label_offset=-1).load("val")
    assert _one_line(exc).startswith(str(masks / "x.png"))

    images, masks = _labelpng(tmp_path)  # 255 is the ignore index, never a bad class
    Image.fromarray(np.full((16, 20), 255, np.uint8)).save(masks / "x.png")
    assert (LabelPng(images=str(images), labels=str(masks), classes=["a", "b", "c", "d"]).load("val")
            .targets["masks"][1] == 255).all()

    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(masks / "x.png")
    with pytest.raises(DatasetError, match="needs one channel .* not mode RGB") as exc:
        LabelPng(images=str(images), labels=str(masks), classes=["a", "b", "c", "d"]).load("val")
    assert _one_line(exc).startswith(str(masks / "x.png"))

    (masks / "x.png").unlink()
    with pytest.raises(DatasetError, match="label map for .*x.jpg not found") as exc:
        LabelPng(images=str(images), labels=str(masks), classes=["a", "b", "c", "d"]).load("val")
    assert _one_line(exc).startswith(str(masks / "x.png"))


def test_labelpng_params_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of classes"):
        LabelPng(images="i", labels="l")
    with pytest.raises(ValidationError, match="exactly one of classes"):
        LabelPng(images="i", labels="l", classes=["a"], classes_file="c.txt")
    problems = LabelPng(images=str(tmp_path / "i"), labels=str(tmp_path / "l"), classes=["a"], ignore_index=0).problems()
    assert problems == [f"{tmp_path / 'i'}: image folder not found", f"{tmp_path / 'l'}: label folder not found",
                        "ignore_index 0 is a class id (1 classes)"]


def test_segmentation_task_runs_on_label_pngs_of_mixed_sizes(tmp_path: Path) -> None:
    import torch

    from bench.config import Schedule

    images, masks = _labelpng(tmp_path)
    data = LabelPng(images=str(images), labels=str(masks), classes=["a", "b", "c"], label_offset=-1).load("val")
    task, model = Segmentation(), TinyFCN(widths=(8, 8, 8), neck=8)
    torch.manual_seed(0)
    net = task.build(model, data)
    task.train(net, model, data.images, data, Schedule(epochs=1, batch_size=2, lr=0.001), seed=0, device="cpu")
    got = task.evaluate(net, model, data.images, task.references(net, model, data, "cpu"), "cpu")
    assert set(got) == {"mIoU", "pixel_acc"} and all(0.0 <= v <= 1.0 for v in got.values())
