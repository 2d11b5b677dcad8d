"""Scenario D: compressed-domain networks, knowledge transfer and D cells inside a run."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torchvision
from torch import nn

from bench.codecs import CODECS
from bench.codecs.base import OperatingPoint
from bench.config import Schedule
from bench.datasets.shapes import Shapes
from bench.domain.adapt import (FeatureRecorder, LatentStem, ReshapeStem, adapt_aa, adapt_cresnet, adapt_reshape,
                                feature_taps, trace)
from bench.domain.nets import latent_network
from bench.domain.train import LatentSet, Transfer, evaluate_latent, latent_set, train_latent
from bench.errors import BenchError
from bench.models.detectors import TinyCenterNet
from bench.models.segmenters import TinyFCN
from bench.models.tiny import TinyResNet
from bench.store import Store
from bench.tasks import TASKS
from tests.helpers import bench, tiny_grid, write_grid


def _input_size(net: nn.Module, name: str, x: torch.Tensor) -> tuple[int, ...]:
    """The shape of what the named module receives when ``net`` runs on ``x``."""
    seen: list[tuple[int, ...]] = []
    handle = net.get_submodule(name).register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        handle.remove()
    return seen[0]


def test_aa_resnet50_latents_give_the_stride_4_features() -> None:
    """A 224×224 image's 14×14 latents reach layer1 as ResNet-50's 56×56 stride-4 features."""
    pixel = torchvision.models.resnet50()
    adapted = adapt_aa(pixel, [192, 320])
    image = torch.randn(1, 3, 224, 224)
    assert _input_size(pixel, "layer1", image) == (1, 64, 56, 56)
    for channels in (192, 320):  # one stem per latent channel count
        assert _input_size(adapted, "layer1", torch.randn(1, channels, 14, 14)) == (1, 64, 56, 56)
    assert isinstance(adapted.conv1, LatentStem) and isinstance(adapted.maxpool, nn.Identity)
    # every layer from stride 4 on keeps the pixel model's weights
    assert torch.equal(adapted.layer1[0].conv1.weight, pixel.layer1[0].conv1.weight)
    assert torch.equal(adapted.fc.weight, pixel.fc.weight)
    with pytest.raises(BenchError, match="latents with 64 channels, but this model has stems for 192, 320"):
        adapted(torch.randn(1, 64, 14, 14))


@pytest.mark.parametrize("arch", ["resnet50", "vgg11", "efficientnet_lite0"])
def test_aa_keeps_the_feature_maps_at_strides_8_16_32(arch: str) -> None:
    """The generic adaptation (traced downsamplings) works for ResNet, VGG and EfficientNet:
    the tapped feature maps on latents have the pixel model's shapes on the image."""
    pixel = timm.create_model(arch) if arch.startswith("efficientnet") else getattr(torchvision.models, arch)()
    adapted = adapt_aa(pixel, [192])
    taps = feature_taps(pixel, [8, 16, 32])
    with torch.no_grad(), FeatureRecorder(pixel.eval(), list(taps.values())) as want:
        pixel(torch.randn(1, 3, 224, 224))
    with torch.no_grad(), FeatureRecorder(adapted.eval(), list(taps.values())) as got:
        logits = adapted(torch.randn(1, 192, 14, 14))
    assert logits.shape == (1, 1000)
    for s, name in taps.items():
        assert got[name].shape == want[name].shape, (s, name)
        assert want[name].shape[-1] == 224 // s


def test_feature_taps_pick_the_outermost_block() -> None:
    taps = feature_taps(torchvision.models.resnet50(), [4, 8, 16, 32])
    assert taps == {4: "layer1", 8: "layer2", 16: "layer3", 32: "layer4"}
    with pytest.raises(BenchError, match="no feature map at stride 64"):
        feature_taps(TinyResNet().build(4), [64])


def test_reshape_baseline_pads_channels_and_pixel_shuffles() -> None:
    stem = ReshapeStem()
    assert stem.out_channels(192) == 12 and stem.out_channels(64) == 6 and stem.out_channels(48) == 3
    y = torch.arange(64 * 2 * 2, dtype=torch.float32).reshape(1, 64, 2, 2)
    out = stem(y)
    assert out.shape == (1, 6, 8, 8)
    # the first 48 channels are a pixel shuffle of the latents, the padding is zeros
    assert torch.equal(out[:, :3], torch.pixel_shuffle(y[:, :48], 4))
    assert out[:, 4:].abs().sum() == 0 and out[:, 3].abs().sum() > 0
    pixel = torchvision.models.resnet50()
    adapted = adapt_reshape(pixel, 192)
    assert _input_size(adapted, "layer1", torch.randn(1, 192, 14, 14)) == (1, 64, 56, 56)
    assert adapted.conv1[1].in_channels == 12


def test_cresnet_reads_y_and_sigma_into_the_second_stage() -> None:
    """cResNet-39 (Deng & Karam): ResNet-50 without its stem and layer1; ŷ and σ̂ each
    through a residual block, concatenated to layer2's 256 input channels."""
    pixel = torchvision.models.resnet50()
    net = adapt_cresnet(pixel, [192, 192], drop_stages=1)
    assert _input_size(net, "layer2", torch.randn(1, 384, 14, 14)) == (1, 256, 14, 14)
    assert isinstance(net.layer1, nn.Identity)
    assert torch.equal(net.layer3[0].conv1.weight, pixel.layer3[0].conv1.weight)
    assert net(torch.randn(2, 384, 14, 14)).shape == (2, 1000)
    with pytest.raises(BenchError, match="drop_stages must be 0..3"):
        adapt_cresnet(pixel, [192], drop_stages=4)


def test_the_first_downsampling_must_be_one_layer() -> None:
    class TwoPaths(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(3, 8, 3, 2, 1)
            self.c = nn.Conv2d(8, 8, 3, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(self.a(x) + self.b(x))

    assert [s.name for s in trace(TwoPaths(), torch.zeros(1, 3, 32, 32))] == ["a", "b", "c"]
    with pytest.raises(BenchError, match="first downsampling has 2 parallel layers"):
        adapt_aa(TwoPaths(), [8])


# --- real codec, real data ---------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_latents(tmp_path_factory: pytest.TempPathFactory):
    """Shapes scenes (64×64) through the embedded hyperprior, their latents, and a tiny
    classifier trained on the pixels."""
    ds = Shapes(n_train=96, n_val=48, size=64)
    cache = tmp_path_factory.mktemp("shapes")
    train, val = ds.load("train", cache), ds.load("val", cache)
    codec = CODECS.get("bmshj2018-hyperprior")(weights="embedded")
    lat = {}
    for name, split in (("train", train), ("val", val)):
        streams = codec.encode(split.images, OperatingPoint(1))
        lat[name], _ = latent_set(codec.latents(streams), ["y_hat", "scales"])
    torch.manual_seed(0)
    model = TinyResNet()
    pixel = TASKS.get("classification")().build(model, train)
    TASKS.get("classification")().train(pixel, model, train.images, train, Schedule(epochs=3, batch_size=32, lr=0.003), 0, "cpu")
    return train, val, lat, model, pixel


def test_latent_set_crops_to_the_grid_that_covers_the_image() -> None:
    codec = CODECS.get("bmshj2018-hyperprior")(weights="embedded")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (70, 100, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    lat, splits = latent_set(codec.latents(codec.encode(images, OperatingPoint(2))), ["y_hat", "scales"])
    assert splits == [64, 64]
    assert [tuple(t.shape) for t in lat.latents] == [(128, 5, 7), (128, 4, 4)]  # ceil(70/16), ceil(100/16)
    assert lat.sizes == [(70, 100), (64, 64)]
    batch = lat.batch([0, 1], flips=[False, True])
    assert batch.shape == (2, 128, 5, 7)
    assert torch.equal(batch[1, :, :4, :4], lat.latents[1].flip(-1)) and batch[1, :, 4:].abs().sum() == 0
    with pytest.raises(BenchError, match="has no means"):
        latent_set(codec.latents(codec.encode(images[:1], OperatingPoint(2))), ["y_hat", "means"])


def _feature_distance(net: nn.Module, teacher: nn.Module, model, lat: LatentSet, images, layers: dict[str, float]) -> float:
    """Mean squared distance between the student's and the teacher's tapped feature maps."""
    from bench.domain.adapt import transfer_loss

    idx = list(range(len(lat)))
    with torch.no_grad(), FeatureRecorder(net, [f"body.{n}" for n in layers]) as s, \
            FeatureRecorder(teacher, list(layers)) as t:
        net.eval()(lat.batch(idx))
        teacher.eval()(model.preprocess([images[i] for i in idx]))
        return float(transfer_loss({n: s[f"body.{n}"] for n in layers}, t, layers))


def test_knowledge_transfer_lowers_the_feature_distance(shapes_latents) -> None:
    """A short real training run on the hyperprior's latents: the transfer term falls from
    epoch to epoch, and the student ends closer to the pixel model's features than the same
    network trained on the task loss alone."""
    train, _, lat, model, pixel = shapes_latents
    layers = {name: 5.0 for name in feature_taps(pixel, [4, 8]).values()}
    schedule = Schedule(epochs=4, batch_size=16, lr=0.003)
    torch.manual_seed(0)
    plain = latent_network("classification", pixel, "aa", [64])
    train_latent("classification", plain, _y_only(lat["train"]), train, schedule, 0, "cpu")
    torch.manual_seed(0)
    student = latent_network("classification", pixel, "aa", [64])
    distances = train_latent("classification", student, _y_only(lat["train"]), train, schedule, 0, "cpu",
                             Transfer(pixel.eval(), model, layers, train.images))
    assert len(distances) == 4 and distances[-1] < 0.8 * distances[0], distances
    after_kt = _feature_distance(student, pixel, model, _y_only(lat["train"]), train.images, layers)
    after_plain = _feature_distance(plain, pixel, model, _y_only(lat["train"]), train.images, layers)
    assert after_kt < 0.8 * after_plain, (after_kt, after_plain)


def _y_only(lat: LatentSet) -> LatentSet:
    return LatentSet([t[:64] for t in lat.latents], lat.sizes)


@pytest.mark.parametrize("task,model", [("detection", TinyCenterNet()), ("segmentation", TinyFCN())])
def test_detection_and_segmentation_train_on_latents(shapes_latents, task: str, model) -> None:
    train, val, lat, _, _ = shapes_latents
    t = TASKS.get(task)()
    torch.manual_seed(0)
    pixel = t.build(model, train)
    net = latent_network(task, pixel, "aa", [64, 64])
    refs = t.references(pixel, model, val, "cpu")
    before, loss_before = evaluate_latent(task, net, lat["val"], refs, "cpu"), _task_loss(task, net, lat["val"], val)
    train_latent(task, net, lat["train"], train, Schedule(epochs=3, batch_size=16, lr=0.003), 0, "cpu")
    after, loss_after = evaluate_latent(task, net, lat["val"], refs, "cpu"), _task_loss(task, net, lat["val"], val)
    # the task loss on unseen latents falls; the metric is computed on the original image
    # geometry (96 training scenes are too few for a reliable mAP gain in 18 steps)
    assert loss_after < 0.85 * loss_before, (loss_before, loss_after)
    assert set(after) == set(t.metric_names(Shapes())) and before.keys() == after.keys()
    if task == "segmentation":
        assert after["mIoU"] > before["mIoU"], (before, after)


def _task_loss(task: str, net: nn.Module, lat: LatentSet, data) -> float:
    """The training loss on every item of ``lat``, without updating anything."""
    from bench.domain.train import LatentSource
    from bench.train import TrainingSet, task_loss

    t, probe = TASKS.get(task)(), copy.deepcopy(net).train()
    for m in probe.modules():  # batch statistics from the running averages, as in evaluation
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    items = TrainingSet(t, LatentSource(lat), t.training_targets(data))
    with torch.no_grad():
        return float(task_loss(t, probe, items.collate([items[i, False] for i in range(len(lat))])))


def test_unsupported_forms_are_named() -> None:
    from bench.domain.nets import unsupported_model
    from bench.models.detectors import TorchvisionDetector

    assert "built for tiny-centernet" in unsupported_model("detection", TorchvisionDetector(), "aa")
    assert "cresnet is a classifier" in unsupported_model("segmentation", TinyFCN(), "cresnet")
    assert unsupported_model("classification", TinyResNet(), "cresnet") is None


# --- scenario D inside a run ------------------------------------------------------------------


def domain_grid() -> dict:
    grid = tiny_grid(name="domain")
    grid["codecs"] = [{"codec": "jpeg", "qualities": [20]},
                      {"codec": "bmshj2018-hyperprior", "label": "hyperprior", "weights": "embedded",
                       "qualities": [1, 3]}]
    exp = grid["experiments"][0]
    exp["dataset"] = {"name": "shapes", "n_train": 48, "n_val": 24, "size": 48}  # 48 = 3 latent cells
    exp["model"] = {"name": "tiny-resnet"}
    exp["scenarios"] = ["A", "B", "D"]
    exp["finetune"] = None
    exp["compressed_domain"] = {
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.003},
        "variants": [{"arch": "aa"}, {"arch": "aa", "transfer": {"strides": [4, 8]}}],
    }
    joint = {"task": "classification", "dataset": exp["dataset"], "model": {"name": "tiny-resnet"},
             "scenarios": ["D"], "codecs": ["hyperprior"], "train": exp["train"],
             "compressed_domain": {"train": {"epochs": 1, "batch_size": 16, "lr": 0.001}, "qualities": [1],
                                   "variants": [{"arch": "aa", "joint": {"task_weight": 1.0}}]}}
    seg = {"task": "segmentation", "dataset": {"name": "shapes", "n_train": 48, "n_val": 24, "size": 40},
           "model": {"name": "tiny-fcn"}, "scenarios": ["A", "D"], "codecs": ["hyperprior"],
           "train": {"epochs": 1, "batch_size": 16, "lr": 0.003},
           "compressed_domain": {"train": {"epochs": 1, "batch_size": 16, "lr": 0.003}, "qualities": [3]}}
    grid["experiments"] += [seg, joint]
    return grid


def test_scenario_d_in_a_run(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.yaml", domain_grid())
    assert bench("run", "--grid", grid, "--out", tmp_path / "out", "--quiet") == 0
    folder = tmp_path / "out" / "domain"
    lb = pd.read_csv(folder / "leaderboard.csv")
    top1 = lb[lb.metric == "top1"]
    d = top1[top1.scenario.str.startswith("D")].set_index(["scenario", "quality"])
    # one D row per variant and operating point of the latent codec; none for jpeg
    assert set(d.index) == {(v, q) for v in ("D:aa", "D:aa+kt") for q in (1, 3)} | {("D:aa+joint", 1)}
    d = d.drop(index=("D:aa+joint", 1))
    assert set(d.codec) == {"hyperprior"}
    b = top1[(top1.scenario == "B") & (top1.codec == "hyperprior")].set_index("quality")
    for (_, q), row in d.iterrows():  # D reads the same bitstreams as B: same rate
        assert row.bpp == pytest.approx(b.loc[q, "bpp"]) and row.rate_source == "bitstream"
    seg = lb[(lb.task == "segmentation") & (lb.metric == "mIoU")]
    assert set(seg.scenario) == {"A", "D:aa"}  # 40×40 images: the 3×3 latent grid is cropped back
    assert seg[seg.scenario == "D:aa"].quality.tolist() == [3]  # compressed_domain.qualities
    costs = pd.read_csv(folder / "costs.csv")
    assert len(costs) == 6 and (costs.params_compressed < costs.params_decode_infer).all()
    assert (costs.gflops_compressed < costs.gflops_decode_infer).all() and (costs.ms_compressed > 0).all()
    store = Store(folder / "results.sqlite")
    try:
        [kt] = [r for r in store.cells() if r["scenario"] == "D:aa+kt" and r["quality"] == 1]
    finally:
        store.close()
    info = kt["record"]["compressed_domain"]
    assert info["trained"] and len(info["transfer_distance_per_epoch"]) == 1
    assert set(info["transfer_layers"]) == {"stages.0", "stages.1"}  # the blocks at strides 4 and 8
    assert (folder / "plots" / "rate_accuracy_classification_tiny-resnet_shapes.png").is_file()
    # joint encoder finetuning: the val images are coded again by the finetuned encoder, and
    # the row's rate is that of the new bitstreams (the decoder is unchanged)
    [jrow] = top1[top1.scenario == "D:aa+joint"].itertuples()
    assert jrow.rate_source == "bitstream" and jrow.bpp != pytest.approx(b.loc[1, "bpp"])
    store = Store(folder / "results.sqlite")
    try:
        [jcell] = [r for r in store.cells() if r["scenario"] == "D:aa+joint"]
    finally:
        store.close()
    jinfo = jcell["record"]["compressed_domain"]
    assert jinfo["bpp_before_finetuning"] == pytest.approx(b.loc[1, "bpp"]) and len(jinfo["bpp_per_epoch"]) == 1
    # a second run finds every cell done
    assert bench("run", "--grid", grid, "--out", tmp_path / "out", "--quiet") == 0
    store = Store(folder / "results.sqlite")
    try:
        assert store.last_run()["summary"]["cells_run"] == 0
    finally:
        store.close()


@pytest.mark.parametrize("change,message", [
    (lambda g: g["codecs"].pop(1), "scenario D needs a codec with latents (a neural codec); none of jpeg has them"),
    (lambda g: g["experiments"][0]["compressed_domain"].update(codecs=["jpeg"]),
     "compressed_domain.codecs[0]: 'jpeg' (jpeg) has no latents; scenario D needs a neural codec"),
    (lambda g: g["experiments"][0].pop("compressed_domain"), "scenario D needs a 'compressed_domain' section"),
    (lambda g: g["experiments"][0]["compressed_domain"]["variants"].append({"arch": "aa"}),
     "compressed_domain.variants[2]: label 'aa' is used twice"),
    (lambda g: g["experiments"][1]["compressed_domain"].update(variants=[{"arch": "cresnet"}]),
     "cresnet is a classifier; use aa or reshape for detection and segmentation"),
    (lambda g: g["experiments"][0]["compressed_domain"]["variants"][1]["transfer"].update(weights=[1.0]),
     "1 weights for 2 strides"),
    (lambda g: g["experiments"][0]["scenarios"].remove("D"), "compressed_domain is set but scenarios has no D"),
    (lambda g: g["codecs"].append({"codec": "gmm-hyperprior", "weights": "embedded", "qualities": [1]})
     or g["experiments"][2].update(codecs=["hyperprior", "gmm-hyperprior"]),
     "compressed_domain.variants[0].joint (gmm-hyperprior): joint finetuning is built for scale and mean-scale hyperpriors"),
    (lambda g: g["experiments"][0]["compressed_domain"].update(qualities=[2]),
     "compressed_domain.qualities[0]: no latent codec of this experiment has quality 2 (they have 1, 3)"),
])
def test_scenario_d_problems_are_reported_before_any_work(tmp_path: Path, capsys, change, message: str) -> None:
    grid = domain_grid()
    change(grid)
    path = write_grid(tmp_path / "grid.yaml", grid)
    assert bench("run", "--grid", path, "--out", tmp_path / "out", "--quiet") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "domain" / "results.sqlite").exists()
