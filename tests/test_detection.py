"""Detection: COCO mAP against a hand-worked case, the tiny detector's training, the task end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.config import Schedule
from bench.datasets.shapes import Shapes
from bench.errors import BenchError
from bench.metrics.detection import COCO_METRICS, Detections, ImageBoxes, coco_map
from bench.models import MODELS
from bench.models.detectors import TinyCenterNet, TorchvisionDetector
from bench.tasks import TASKS
from bench.tasks.detection import Detection, _train_target, box_truth, class_maps, image_tensors, match_classes


def _no_network(*args: object, **kwargs: object) -> None:
    raise OSError("no network")


def _boxes(*rows: list[float]) -> np.ndarray:
    return np.array(rows, np.float32).reshape(-1, 4)


def test_coco_map_matches_a_hand_worked_case() -> None:
    # Three small ground-truth boxes of one class (areas 100, 400, 400: all "small"):
    #   image 1: A = [0,0,10,10], B = [20,20,40,40];  image 2: C = [0,0,20,20];  image 3: none.
    # Detections by score: d1 0.9 = A exactly (IoU 1); d2 0.8 on C, IoU 250/400 = 0.625;
    #   d3 0.7 on image 1 overlapping nothing; d4 0.6 on B, IoU 330/400 = 0.825.
    # COCO interpolates precision (made non-increasing) at recalls 0, 0.01, ..., 1 (101 points).
    # IoU 0.50 (also 0.55, 0.60): TP TP FP TP, recall 1/3 2/3 2/3 1, precision 1 1 .67 .75 -> 1 1 .75 .75:
    #   34 points (r <= 1/3) at 1, 33 (r <= 2/3) at 1, 34 at 0.75: AP = 92.5 / 101.
    # IoU 0.65 (also .70, .75, .80): TP FP FP TP, recall 1/3 1/3 1/3 2/3, precision 1 .5 .33 .5
    #   -> 1 .5 .5 .5: 34 points at 1, 33 at 0.5, 34 unreached (0): AP = 50.5 / 101.
    # IoU 0.85, 0.90, 0.95: only d1 is a TP, recall 1/3: AP = 34 / 101.
    # mAP = (3 * 92.5 + 4 * 50.5 + 3 * 34) / 1010 = 581.5 / 1010.
    truth = [ImageBoxes(_boxes([0, 0, 10, 10], [20, 20, 40, 40]), np.array([0, 0])),
             ImageBoxes(_boxes([0, 0, 20, 20]), np.array([0])),
             ImageBoxes(_boxes(), np.array([], np.int64))]
    dets = [Detections(_boxes([0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 40, 36.5]), np.array([0.9, 0.7, 0.6]), np.array([0, 0, 0])),
            Detections(_boxes([0, 0, 20, 12.5]), np.array([0.8]), np.array([0])),
            Detections(_boxes(), np.array([]), np.array([], np.int64))]
    got = coco_map(truth, dets, num_classes=2)
    assert list(got) == list(COCO_METRICS)
    assert got["AP50"] == pytest.approx(92.5 / 101, abs=1e-9)
    assert got["AP75"] == pytest.approx(50.5 / 101, abs=1e-9)
    assert got["mAP"] == pytest.approx(581.5 / 1010, abs=1e-9)
    assert got["APs"] == pytest.approx(got["mAP"])
    assert math.isnan(got["APm"]) and math.isnan(got["APl"])  # no medium or large objects: undefined


def test_coco_map_edge_cases() -> None:
    truth = [ImageBoxes(_boxes([0, 0, 10, 10]), np.array([1]))]
    nothing = [Detections(_boxes(), np.array([]), np.array([], np.int64))]
    assert coco_map(truth, nothing, 2) == {m: 0.0 for m in COCO_METRICS}
    wrong_class = [Detections(_boxes([0, 0, 10, 10]), np.array([0.9]), np.array([0]))]
    assert coco_map(truth, wrong_class, 2)["mAP"] == 0.0
    unknown_class = [Detections(_boxes([0, 0, 10, 10]), np.array([0.9]), np.array([-1]))]
    assert coco_map(truth, unknown_class, 2)["mAP"] == 0.0
    right = [Detections(_boxes([0, 0, 10, 10]), np.array([0.9]), np.array([1]))]
    assert coco_map(truth, right, 2)["mAP"] == pytest.approx(1.0)
    # A crowd region: a detection on it is neither a TP nor an FP; no other object: undefined.
    crowd = [ImageBoxes(_boxes([0, 0, 10, 10]), np.array([1]), crowd=np.array([True]))]
    assert all(math.isnan(v) for v in coco_map(crowd, right, 2).values())


def test_match_classes_by_name() -> None:
    assert match_classes(["__background__", "Person", "N/A", "dog"], ["dog", "person", "background"]).tolist() == [2, 1, -1, 0]


@pytest.fixture(scope="module")
def shapes32(tmp_path_factory: pytest.TempPathFactory):
    ds = Shapes(n_train=32, n_val=16, size=32)
    cache = tmp_path_factory.mktemp("shapes")
    return ds, ds.load("train", cache), ds.load("val", cache)


def test_tiny_detector_training_lowers_the_loss(shapes32) -> None:
    _, train, _ = shapes32
    model = MODELS.get("tiny-centernet")(widths=(8, 16, 32), neck=16)
    torch.manual_seed(0)
    net = Detection().build(model, train)
    x = image_tensors(model, train.images)
    targets = [dict(zip(("boxes", "labels"), _train_target(t, None))) for t in box_truth(train)]

    def loss() -> float:
        net.train()
        with torch.no_grad():
            return float(sum(net(x, targets).values()))

    before = loss()
    Detection().train(net, model, train.images, train, Schedule(epochs=10, batch_size=8, lr=0.01), seed=0, device="cpu")
    assert loss() < 0.7 * before


def test_detection_task_end_to_end(shapes32) -> None:
    ds, train, val = shapes32
    task = TASKS.get("detection")()
    model = TinyCenterNet(widths=(8, 16, 32), neck=16)
    assert task.metric_names(ds) == COCO_METRICS and task.problems(ds, model) == []
    net = task.build(model, val)
    task.train(net, model, train.images, train, Schedule(epochs=1, batch_size=16, lr=0.003), seed=0, device="cpu")
    refs = task.references(net, model, val, "cpu")
    got = task.evaluate(net, model, val.images, refs, "cpu")
    assert list(got) == list(COCO_METRICS)
    assert all(0.0 <= got[m] <= 1.0 for m in ("mAP", "AP50", "AP75", "APs"))
    assert math.isnan(got["APm"]) and math.isnan(got["APl"])  # 32x32 images: every object is small


def test_detection_rejects_datasets_without_boxes() -> None:
    from bench.datasets.photos import Photos

    problems = Detection().problems(Photos(), TinyCenterNet())
    assert any("needs ground-truth boxes" in p for p in problems)
    from bench.models.tiny import TinyResNet

    assert any("classification model" in p for p in Detection().problems(Shapes(), TinyResNet()))


def test_torchvision_detector_checks_and_offline_error(tmp_path, monkeypatch) -> None:
    assert "no detection model" in TorchvisionDetector(arch="resnet50").unavailable_reason()
    assert "no weights" in TorchvisionDetector(arch="fcos_resnet50_fpn", weights="NOPE").unavailable_reason()
    model = TorchvisionDetector(arch="fcos_resnet50_fpn")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub: found before any work, and a build fails
    why = model.unavailable_reason()
    assert why is not None and "fcos_resnet50_fpn_coco-" in why and "bench fetch" in why and "person" in model.output_classes()
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", _no_network)
    with pytest.raises(BenchError, match=r"place fcos_resnet50_fpn_coco-\w+\.pth .* at .*checkpoints"):
        model.build(None)


def test_torchvision_detector_from_a_checkpoint(tmp_path) -> None:
    """A local checkpoint (random weights) on a set named like COCO: labels matched by name,
    the classes the model lacks ("unicorn") left out of its training targets."""
    from torchvision import models

    from bench.datasets.base import ImageSet

    arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(0)
    net = models.get_model(arch, weights=None, weights_backbone=None, num_classes=91)
    torch.save(net.state_dict(), tmp_path / "frcnn.pth")
    model = TorchvisionDetector(arch=arch, checkpoint=str(tmp_path / "frcnn.pth"), score_threshold=0.0)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)]
    data = ImageSet("coco-like", "val", ["a", "b"], images, None, ("unicorn", "person"),
                    targets={"boxes": [_boxes([4, 4, 30, 40], [30, 2, 60, 20]), _boxes([1, 1, 20, 20])],
                             "box_labels": [np.array([1, 0]), np.array([1])]})
    task = Detection()
    built = task.build(model, data)
    to_data, to_model = class_maps(model, data.classes, "dataset")
    assert to_model.tolist() == [-1, 1] and to_data[1] == 1 and (np.delete(to_data, 1) == -1).all()
    boxes, labels = _train_target(box_truth(data)[0], to_model)  # what finetuning would train on
    assert boxes.tolist() == [[4, 4, 30, 40]] and labels.tolist() == [1]
    got = task.evaluate(built, model, images, task.references(built, model, data, "cpu"), "cpu")
    assert list(got) == list(COCO_METRICS) and all(math.isnan(v) or 0.0 <= v <= 1.0 for v in got.values())
    with pytest.raises(BenchError, match="none of model 'torchvision-detector'"):
        task.references(built, model, ImageSet("x", "val", ["a"], images[:1], None, ("unicorn",),
                                                targets={"boxes": [_boxes()], "box_labels": [np.array([], np.int64)]}), "cpu")
