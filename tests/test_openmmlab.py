"""The OpenMMLab backends (an optional extra) on the study's own configs, shrunk.

Each test config inherits the study's config from the installed package (Swin-T from
mmpretrain, DDOD R-50 from mmdet, UPerNet Swin-T from mmseg) and shrinks the network and
the test resize, so the real pipelines, data preprocessors, heads and post-processing run
on CPU in seconds. The weights are random, written here as OpenMMLab checkpoints.

Selected with ``-m openmmlab``. Without the packages these tests FAIL with the install
recipe: a machine that selects them must have the extra (docs/openmmlab.md).
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bench.codecs import CODECS, OperatingPoint
from bench.config import Schedule
from bench.datasets.base import ImageSet
from bench.datasets.shapes import Shapes
from bench.datasets.synthetic import CLASSES
from bench.errors import BenchError
from bench.models import MODELS
from bench.tasks import TASKS
from bench.tasks.detection import _train_target, box_truth, image_tensors
from bench.tasks.segmentation import _train_batch, mask_references

pytestmark = pytest.mark.openmmlab

INSTALL = ("the OpenMMLab extra is not installed: run scripts/build_mmcv.sh VENV, then in ONE pip pass "
           "pip install --find-links ~/.cache/bench-wheels --only-binary mmcv torch==2.14.1 torchvision==0.29.1 'mmcv==2.1.0' "
           "'mmengine==0.10.7' 'mmpretrain==1.2.0' 'mmdet==3.3.0' 'mmsegmentation==1.2.2' ftfy regex 'setuptools==80.9.0' -e '.[neural,test]' "
           "(docs/openmmlab.md)")


@pytest.fixture(scope="module", autouse=True)
def openmmlab_installed() -> None:
    """Fail (not skip) every test here when the extra is missing: selecting ``-m openmmlab``
    means the machine is meant to have it."""
    for module in ("mmengine", "mmcv", "mmcv.ops", "mmpretrain", "mmdet", "mmseg"):
        try:
            importlib.import_module(module)
        except Exception as exc:
            pytest.fail(f"{module} does not import ({exc.__class__.__name__}: {exc}); {INSTALL}", pytrace=False)


# --- the study's configs, shrunk -----------------------------------------------------

SWIN_T = "mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py"
DDOD_R50 = "mmdet::ddod/ddod_r50_fpn_1x_coco.py"
UPERNET_SWIN_T = "mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py"

TINY_CONFIGS = {
    "mmpretrain": f"""
_base_ = '{SWIN_T}'
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
                  drop_path_rate=0.0),
    head=dict(num_classes=10, in_channels=64))
data_preprocessor = dict(num_classes=10)
""",
    "mmdet": f"""
_base_ = '{DDOD_R50}'
model = dict(
    backbone=dict(depth=18, base_channels=8, out_indices=(1, 2, 3), frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64], out_channels=32, start_level=0, num_outs=3),
    bbox_head=dict(num_classes=10, in_channels=32, feat_channels=32, stacked_convs=1,  # GN: 32 groups
                   anchor_generator=dict(octave_base_scale=2, strides=[8, 16, 32])),
    test_cfg=dict(score_thr=0.0))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
""",
    "mmseg": f"""
_base_ = '{UPERNET_SWIN_T}'
model = dict(
    backbone=dict(embed_dims=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(in_channels=[8, 16, 32, 64], channels=16, num_classes=11),
    auxiliary_head=dict(in_channels=32, channels=8, num_classes=11))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
""",
}
TASK_OF = {"mmpretrain": "classification", "mmdet": "detection", "mmseg": "segmentation"}
SEG_CLASSES = ("background", *CLASSES)  # shapes' label maps: 0 = background, c + 1 = class c
CLASSES_OF = {"mmpretrain": CLASSES, "mmdet": CLASSES, "mmseg": SEG_CLASSES}


def _build_with_library(name: str, config: Path) -> torch.nn.Module:
    """The network as each library's own API builds it (random init)."""
    if name == "mmpretrain":
        from mmpretrain import get_model

        return get_model(str(config), pretrained=False, device="cpu")
    if name == "mmdet":
        from mmdet.apis import init_detector

        return init_detector(str(config), checkpoint=None, palette="random", device="cpu")
    from mmseg.apis import init_model

    return init_model(str(config), checkpoint=None, device="cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(config, checkpoint) per library: random weights saved as an OpenMMLab checkpoint
    whose meta names the classes, as released checkpoints do."""
    folder = tmp_path_factory.mktemp("openmmlab")
    out = {}
    for name, text in TINY_CONFIGS.items():
        config = folder / f"tiny_{name}.py"
        config.write_text(text)
        torch.manual_seed(0)
        net = _build_with_library(name, config)
        checkpoint = folder / f"tiny_{name}.pth"
        torch.save({"state_dict": net.state_dict(), "meta": {"dataset_meta": {"classes": CLASSES_OF[name]}}}, checkpoint)
        out[name] = (config, checkpoint)
    return out


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageSet, ImageSet]:
    ds = Shapes(n_train=8, n_val=4, size=64)
    cache = tmp_path_factory.mktemp("shapes")
    return ds.load("train", cache), ds.load("val", cache)


def _jpeg(images: list[np.ndarray], quality: int = 10) -> list[np.ndarray]:
    """The images through bench's JPEG codec: what scenarios B and C feed the model."""
    codec = CODECS.get("jpeg")()
    return codec.decode(codec.encode(images, OperatingPoint(quality)))


def _model(name: str, tiny: dict[str, tuple[Path, Path]], **params):
    config, checkpoint = tiny[name]
    return MODELS.get(name)(config=str(config), checkpoint=str(checkpoint), **params)


# --- a compressed image through each library -----------------------------------------


def test_classifier_matches_mmpretrain_inference_on_a_jpeg_image(tiny, shapes) -> None:
    from mmengine.registry import DefaultScope
    from mmpretrain.apis import ImageClassificationInferencer

    _, val = shapes
    image = _jpeg(val.images[:1])[0]
    model = _model("mmpretrain", tiny)
    assert model.unavailable_reason() is None
    net = model.build(10)
    logits = net(model.preprocess([image]))
    assert logits.shape == (1, 10)
    # The library's own inference (its test pipeline from a BGR array, as OpenCV reads files).
    ours = torch.softmax(logits, 1)[0].detach()
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        inferencer = ImageClassificationInferencer(net.model, pretrained=False)
        theirs = inferencer(np.ascontiguousarray(image[..., ::-1]))[0]["pred_scores"]
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-6)


def test_detector_matches_inference_detector_on_a_jpeg_image(tiny, shapes) -> None:
    from mmdet.apis import inference_detector
    from mmengine.registry import DefaultScope

    _, val = shapes
    image = _jpeg(val.images[:1])[0]
    model = _model("mmdet", tiny)
    assert model.unavailable_reason() is None
    net = model.build(len(CLASSES))
    assert model.output_classes() == CLASSES
    [ours] = net(image_tensors(model, [image]))
    with DefaultScope.overwrite_default_scope("mmdet"):
        theirs = inference_detector(net.model, np.ascontiguousarray(image[..., ::-1])).pred_instances
    assert len(ours["boxes"]) > 0  # score_thr 0: random weights still give boxes
    torch.testing.assert_close(ours["boxes"], theirs.bboxes)
    torch.testing.assert_close(ours["scores"], theirs.scores)
    assert torch.equal(ours["labels"], theirs.labels)
    # Boxes come back in the input image's pixels, not the resized 96x96 ones.
    assert float(ours["boxes"][:, 2:].max()) <= 64 + 1e-3


def test_segmenter_matches_mmseg_inference_on_a_jpeg_image(tiny, shapes) -> None:
    import torch.nn.functional as F
    from mmengine.registry import DefaultScope
    from mmseg.apis import inference_model

    _, val = shapes
    image = _jpeg(val.images[:1])[0]
    model = _model("mmseg", tiny)
    assert model.unavailable_reason() is None
    net = model.build(len(SEG_CLASSES))
    assert model.output_classes() == SEG_CLASSES
    x = model.preprocess([image])
    assert x.shape == (1, 3, 96, 96)  # the config's test resize
    logits = net(x)
    assert logits.shape == (1, 11, 96, 96)
    ours = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)[0].detach()
    with DefaultScope.overwrite_default_scope("mmseg"):
        theirs = inference_model(net.model, np.ascontiguousarray(image[..., ::-1])).seg_logits.data
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


# --- the bench tasks on compressed images: B (evaluate) and a C-style finetune --------


@pytest.mark.parametrize("name", ["mmpretrain", "mmdet", "mmseg"])
def test_task_evaluates_compressed_images(name, tiny, shapes) -> None:
    _, val = shapes
    task = TASKS.get(TASK_OF[name])()
    model = _model(name, tiny)
    net = task.build(model, val)
    refs = task.references(net, model, val, "cpu")
    got = task.evaluate(net, model, _jpeg(val.images), refs, "cpu")
    assert list(got) == list(task.metric_names(Shapes()))
    assert all(math.isnan(v) or 0.0 <= v <= 1.0 for v in got.values())


def _loss(name: str, net: torch.nn.Module, model, images: list[np.ndarray], data: ImageSet) -> float:
    """The training objective of each bench task on ``images``, in train mode, no update."""
    import torch.nn.functional as F

    net.train()
    with torch.no_grad():
        if name == "mmpretrain":
            return float(F.cross_entropy(net(model.preprocess(images)), torch.as_tensor(data.labels)))
        if name == "mmdet":
            targets = [dict(zip(("boxes", "labels"), _train_target(t, None))) for t in box_truth(data)]
            return float(sum(net(image_tensors(model, images), targets).values()))
        refs = mask_references(data)
        x, y = _train_batch(model, images, list(refs.masks), refs.ignore_index, None)
        logits = F.interpolate(net(x), size=y.shape[-2:], mode="bilinear", align_corners=False)
        return float(F.cross_entropy(logits, y, ignore_index=-100))


@pytest.mark.parametrize("name", ["mmpretrain", "mmdet", "mmseg"])
def test_finetuning_on_compressed_images_lowers_the_loss(name, tiny, shapes) -> None:
    """Scenario C's step: bench's training loop on the wrapped network, JPEG training images."""
    train, _ = shapes
    task = TASKS.get(TASK_OF[name])()
    model = _model(name, tiny)
    torch.manual_seed(0)
    net = task.build(model, train)
    images = _jpeg(train.images)
    before = _loss(name, net, model, images, train)
    task.train(net, model, images, train, Schedule(epochs=4, batch_size=8, lr=3e-3), seed=0, device="cpu")
    assert not net.training
    after = _loss(name, net, model, images, train)
    assert after < 0.9 * before, (before, after)


def test_grid_runs_a_b_c_with_an_openmmlab_detector(tiny, tmp_path) -> None:
    """``bench run`` with ``model: {name: mmdet, config, checkpoint}``: A, B and C cells."""
    import pandas as pd

    from tests.helpers import bench

    config, checkpoint = tiny["mmdet"]
    grid = {
        "name": "mm", "seed": 0,
        "codecs": [{"codec": "jpeg", "qualities": [10]}],
        "experiments": [{
            "task": "detection",
            "dataset": {"name": "shapes", "n_train": 4, "n_val": 4, "size": 64},
            "model": {"name": "mmdet", "config": str(config), "checkpoint": str(checkpoint)},
            "scenarios": ["A", "B", "C"],
            "finetune": {"epochs": 1, "batch_size": 4, "lr": 0.001},
        }],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    assert bench("run", "--grid", path, "--out", tmp_path / "out", "--device", "cpu", "--workers", "1", "--quiet") == 0
    lb = pd.read_csv(tmp_path / "out" / "mm" / "leaderboard.csv")
    assert set(lb.scenario) == {"A", "B", "C"} and set(lb.model) == {"mmdet"}
    assert lb[lb.scenario != "A"].bpp.notna().all()
    summary = json.loads((tmp_path / "out" / "mm" / "summary.json").read_text())
    assert summary["cells_run"] == 3 and summary["trainings"] == 1  # A pretrained; one finetune for C


# --- errors --------------------------------------------------------------------------


def test_missing_config_and_checkpoint_are_named(tiny, tmp_path) -> None:
    config, checkpoint = tiny["mmdet"]
    missing = tmp_path / "nope.py"
    model = MODELS.get("mmdet")(config=str(missing), checkpoint=str(checkpoint))
    assert model.unavailable_reason() == f"config file {missing} not found"
    with pytest.raises(BenchError, match=f"config file {missing} not found"):
        model.build(None)
    model = MODELS.get("mmdet")(config="mmdet::ddod/no_such.py", checkpoint=str(checkpoint))
    assert "mmdet has no config ddod/no_such.py" in model.unavailable_reason()
    model = MODELS.get("mmseg")(config=str(tiny["mmseg"][0]), checkpoint=str(tmp_path / "nope.pth"))
    assert model.unavailable_reason() == f"checkpoint {tmp_path / 'nope.pth'} not found"
    with pytest.raises(BenchError, match="checkpoint .*nope.pth not found"):
        model.build(None)
    with pytest.raises(BenchError, match="mmpretrain has no model .no-such-model. in its model index"):
        MODELS.get("mmpretrain")(model="no-such-model", checkpoint=str(checkpoint)).build(None)


def test_untrusted_checkpoint_with_numpy_objects_is_refused(tiny, tmp_path) -> None:
    """Released OpenMMLab checkpoints pickle numpy objects in their meta: weights-only
    loading refuses them, and only ``trusted: true`` turns it off."""
    config, checkpoint = tiny["mmseg"]
    state = torch.load(checkpoint, weights_only=True)
    state["meta"]["hook_msgs"] = {"best_score": np.float64(0.5), "last": np.arange(3)}
    pickled = tmp_path / "released_like.pth"
    torch.save(state, pickled)
    model = MODELS.get("mmseg")(config=str(config), checkpoint=str(pickled))
    assert model.unavailable_reason() is None  # the file is there; reading it is refused
    with pytest.raises(BenchError, match=r"released_like.pth holds pickled .*numpy.* set trusted: true"):
        model.build(None)
    trusted = MODELS.get("mmseg")(config=str(config), checkpoint=str(pickled), trusted=True)
    net = trusted.build(None)
    assert trusted.output_classes() == SEG_CLASSES
    assert trusted.identity() != model.identity()  # trusted is a parameter of the cell key
    assert net(trusted.preprocess([np.zeros((64, 64, 3), np.uint8)])).shape == (1, 11, 96, 96)


def test_checkpoint_that_does_not_fit_the_config(tiny) -> None:
    config, _ = tiny["mmdet"]
    _, other = tiny["mmseg"]
    with pytest.raises(BenchError, match=r"does not fit config .*tensors missing"):
        MODELS.get("mmdet")(config=str(config), checkpoint=str(other)).build(None)


def test_identity_follows_the_checkpoint_content(tiny, tmp_path) -> None:
    config, checkpoint = tiny["mmpretrain"]
    copy = tmp_path / "copy.pth"
    copy.write_bytes(checkpoint.read_bytes())
    a = MODELS.get("mmpretrain")(config=str(config), checkpoint=str(checkpoint)).identity()
    b = MODELS.get("mmpretrain")(config=str(config), checkpoint=str(copy)).identity()
    assert a["checkpoint_sha256"] == b["checkpoint_sha256"] and a["config_sha256"] == b["config_sha256"]
    state = torch.load(copy, weights_only=True)
    state["state_dict"]["head.fc.bias"] += 1
    torch.save(state, copy)
    c = MODELS.get("mmpretrain")(config=str(config), checkpoint=str(copy)).identity()
    assert c["checkpoint_sha256"] != a["checkpoint_sha256"]
