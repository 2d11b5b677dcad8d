"""Segmentation: mIoU against a hand-worked case, the tiny segmenter's training, the task end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.config import Schedule
from bench.datasets.shapes import Shapes
from bench.errors import BenchError
from bench.metrics.segmentation import class_iou, confusion_matrix, segmentation_scores
from bench.models import MODELS
from bench.models.segmenters import TinyFCN, TorchvisionSegmenter
from bench.tasks import TASKS
from bench.tasks.segmentation import Segmentation, mask_references


def _no_network(*args: object, **kwargs: object) -> None:
    raise OSError("no network")


def test_miou_matches_a_hand_worked_case() -> None:
    truth = np.array([[0, 0, 1, 1],
                      [0, 0, 1, 1],
                      [2, 2, 255, 255],
                      [2, 2, 2, 2]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 1],
                     [2, 0, 3, 3],   # the two 3s fall on ignored pixels: they count nowhere
                     [2, 2, 2, 3]])
    # 14 labelled pixels. Class 0: 4 true, 4 predicted, 3 both -> 3 / 5. Class 1: 4 true,
    # 5 predicted, 4 both -> 4 / 5. Class 2: 6 true, 4 predicted, 4 both -> 4 / 6. Class 3:
    # never true, predicted once -> 0 / 1 (counts). Class 4: in neither -> no IoU, left out.
    # mIoU = (3/5 + 4/5 + 2/3 + 0) / 4 = 31/60; pixel accuracy = (3 + 4 + 4) / 14 = 11/14.
    confusion = confusion_matrix(truth, pred, num_classes=5, ignore_index=255)
    iou = class_iou(confusion)
    assert iou[:4] == pytest.approx([3 / 5, 4 / 5, 2 / 3, 0.0]) and math.isnan(iou[4])
    assert segmentation_scores(confusion) == pytest.approx({"mIoU": 31 / 60, "pixel_acc": 11 / 14})


def test_confusion_matrix_edges() -> None:
    truth = np.array([[0, 1]])
    # A prediction outside the classes (a pretrained model's class the dataset lacks) is wrong.
    confusion = confusion_matrix(truth, np.array([[-1, 1]]), num_classes=2)
    assert confusion.tolist() == [[0, 0, 1], [0, 1, 0]]
    assert segmentation_scores(confusion) == pytest.approx({"mIoU": 0.5, "pixel_acc": 0.5})
    with pytest.raises(ValueError, match="true class 7 is outside 0..1"):
        confusion_matrix(np.array([[7]]), np.array([[0]]), num_classes=2, ignore_index=255)
    assert all(math.isnan(v) for v in segmentation_scores(np.zeros((2, 3), np.int64)).values())


@pytest.fixture(scope="module")
def shapes32(tmp_path_factory: pytest.TempPathFactory):
    ds = Shapes(n_train=32, n_val=16, size=32)
    cache = tmp_path_factory.mktemp("shapes")
    return ds, ds.load("train", cache), ds.load("val", cache)


def test_shapes_masks_count_background_as_a_class(shapes32) -> None:
    _, train, _ = shapes32
    refs = mask_references(train)
    assert refs.classes[0] == "background" and len(refs.classes) == 11 and refs.ignore_index == 255


def test_tiny_segmenter_training_lowers_the_loss(shapes32) -> None:
    _, train, _ = shapes32
    model = MODELS.get("tiny-fcn")(widths=(8, 16, 32), neck=16)
    torch.manual_seed(0)
    net = Segmentation().build(model, train)
    x = model.preprocess(train.images)
    y = torch.as_tensor(train.targets["masks"], dtype=torch.long)

    def loss() -> float:
        net.eval()
        with torch.no_grad():
            return float(F.cross_entropy(net(x), y))

    before = loss()
    Segmentation().train(net, model, train.images, train, Schedule(epochs=6, batch_size=8, lr=0.01), seed=0, device="cpu")
    assert loss() < 0.7 * before


def test_segmentation_task_end_to_end(shapes32) -> None:
    ds, train, val = shapes32
    task = TASKS.get("segmentation")()
    model = TinyFCN(widths=(8, 16, 32), neck=16)
    assert task.metric_names(ds) == ("mIoU", "pixel_acc") and task.problems(ds, model) == []
    net = task.build(model, val)
    task.train(net, model, train.images, train, Schedule(epochs=1, batch_size=16, lr=0.003), seed=0, device="cpu")
    refs = task.references(net, model, val, "cpu")
    got = task.evaluate(net, model, val.images, refs, "cpu")
    assert set(got) == {"mIoU", "pixel_acc"} and all(0.0 <= v <= 1.0 for v in got.values())


def test_segmentation_rejects_datasets_without_masks() -> None:
    from bench.datasets.photos import Photos

    assert any("needs label maps" in p for p in Segmentation().problems(Photos(), TinyFCN()))


def test_torchvision_segmenter_checks_and_offline_error(tmp_path, monkeypatch) -> None:
    assert "no segmentation model" in TorchvisionSegmenter(arch="resnet50").unavailable_reason()
    model = TorchvisionSegmenter(arch="lraspp_mobilenet_v3_large")
    assert model.output_classes()[:2] == ("__background__", "aeroplane")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub: found before any work, and a build fails
    why = model.unavailable_reason()
    assert why is not None and "lraspp_mobilenet_v3_large-" in why and "bench fetch" in why
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", _no_network)
    with pytest.raises(BenchError, match=r"place lraspp_mobilenet_v3_large-\w+\.pth .* at .*checkpoints"):
        model.build(None)


def test_torchvision_segmenter_runs_from_a_checkpoint(tmp_path) -> None:
    """A local checkpoint (here: random weights) on a VOC-named label set, classes matched by name."""
    from torchvision import models

    net = models.get_model("lraspp_mobilenet_v3_large", weights=None, weights_backbone=None, num_classes=21)
    torch.save(net.state_dict(), tmp_path / "lraspp.pth")
    model = TorchvisionSegmenter(arch="lraspp_mobilenet_v3_large", checkpoint=str(tmp_path / "lraspp.pth"), resize=64)
    from bench.datasets.base import ImageSet

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(2)]
    masks = np.array([np.full((40, 48), v, np.uint8) for v in (0, 1)])
    data = ImageSet("voc-like", "val", ["a", "b"], images, None, ("background", "person", "unicorn"),
                    targets={"masks": masks, "mask_classes": ("background", "person", "unicorn"), "ignore_index": 255})
    task = Segmentation()
    built = task.build(model, data)
    got = task.evaluate(built, model, images, task.references(built, model, data, "cpu"), "cpu")
    assert 0.0 <= got["mIoU"] <= 1.0 and 0.0 <= got["pixel_acc"] <= 1.0
