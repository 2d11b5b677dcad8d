"""Joint encoder finetuning (``bench.domain.joint``) on the embedded hyperprior codecs and
a few 64×64 shapes scenes: the trade-off moves with the task weight, only g_a changes,
and the finetuned encoder makes real streams whose latents are what training saw."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compressai import models as cm

from bench.codecs import CODECS, OperatingPoint
from bench.codecs.gmm import GMMHyperprior
from bench.codecs.neural import CompressAICodec, load_embedded
from bench.config import Schedule
from bench.datasets.shapes import Shapes
from bench.domain.joint import joint_forward, joint_latents, joint_unsupported, train_joint
from bench.domain.nets import latent_network
from bench.domain.train import LatentSet, latent_set
from bench.errors import BenchError
from bench.models import MODELS
from bench.tasks import TASKS

Q = 1
SIZE = 64
SCHEDULE = Schedule(epochs=4, batch_size=8, lr=2e-3)
BIG, TINY = 50.0, 1e-3


#: Two OpenMP threads on two shared cores wait on each other for every small convolution.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes():
    return Shapes(n_train=24, n_val=8, size=SIZE).load("train", None)


def _bpp(streams: list[bytes]) -> float:
    return 8.0 * sum(len(s) for s in streams) / (len(streams) * SIZE * SIZE)


def _cross_entropy(net: torch.nn.Module, lat: LatentSet, labels: np.ndarray) -> float:
    """The training loss on the whole set as one batch: batch-norm on the batch's statistics
    (a dozen steps leave the running ones far from converged)."""
    net = copy.deepcopy(net).train()
    with torch.no_grad():
        return float(F.cross_entropy(net(lat.batch(range(len(lat)))), torch.as_tensor(labels)))


def _streams(model: torch.nn.Module, images: list[np.ndarray], arch: str = "bmshj2018-hyperprior"):
    codec = CompressAICodec.from_model(arch, model, Q)
    return codec, codec.encode(images, OperatingPoint(Q))


@pytest.fixture(scope="module")
def runs(shapes) -> dict[str, Any]:
    """The embedded hyperprior finetuned twice from the same start: task-heavy and rate-heavy."""
    base, _ = load_embedded("hyperprior", Q)
    torch.manual_seed(0)
    model = MODELS.get("tiny-resnet")(widths=(8, 16))
    pixel = model.build(10)  # briefly trained on pixels: a start, as scenario A's model is
    TASKS.get("classification")().train(pixel, model, shapes.images, shapes, Schedule(epochs=4, batch_size=8, lr=1e-2),
                                        seed=0, device="cpu")
    torch.manual_seed(0)
    net0 = latent_network("classification", pixel, "aa", [base.M])
    codec0, streams0 = _streams(copy.deepcopy(base), shapes.images)
    lat0, _ = latent_set(codec0.latents(streams0), ["y_hat"])
    out: dict[str, Any] = {"base": base, "net0": net0, "streams0": streams0,
                           "ce0": _cross_entropy(copy.deepcopy(net0), lat0, shapes.labels)}
    for name, weight in (("big", BIG), ("tiny", TINY)):
        model, net = copy.deepcopy(base), copy.deepcopy(net0)
        record = train_joint("classification", model, net, ["y_hat"], shapes.images, shapes, SCHEDULE, weight,
                             seed=0, device="cpu")
        out[name] = (model, net, record)
    return out


def test_the_task_weight_steers_rate_against_task_loss(runs, shapes) -> None:
    _, net, big = runs["big"]
    model, _, tiny = runs["tiny"]
    for record in (big, tiny):
        assert record["steps"] == SCHEDULE.epochs * 3
        assert len(record["bpp_per_epoch"]) == len(record["task_loss_per_epoch"]) == SCHEDULE.epochs
        assert all(np.isfinite(record["loss_per_epoch"]))
        # the objective is rate + weight · task loss (equal batches of equal images: the
        # per-epoch means add up exactly)
        weight = record["task_weight"]
        assert np.allclose(record["loss_per_epoch"],
                           np.add(record["bpp_per_epoch"], weight * np.array(record["task_loss_per_epoch"])), rtol=1e-4)
    # task-heavy: the task loss falls during training, and on the real streams' latents
    assert big["task_loss_per_epoch"][-1] < 0.95 * big["task_loss_per_epoch"][0]
    big_codec, big_streams = _streams(runs["big"][0], shapes.images)
    lat, _ = latent_set(big_codec.latents(big_streams), ["y_hat"])
    assert _cross_entropy(net, lat, shapes.labels) < 0.93 * runs["ce0"]
    # rate-heavy: the estimated rate falls, and so does the real one
    assert tiny["bpp_per_epoch"][-1] < 0.8 * tiny["bpp_per_epoch"][0]
    _, tiny_streams = _streams(model, shapes.images)
    assert _bpp(tiny_streams) < 0.8 * _bpp(runs["streams0"])
    # the two ends of the trade-off: the task-heavy encoder spends more bits (AdamW normalises
    # each parameter's step, so the weight only sets the balance of g_a's two gradients)
    assert big["bpp_per_epoch"][-1] > 2 * tiny["bpp_per_epoch"][-1]
    assert _bpp(big_streams) > 2 * _bpp(tiny_streams)


@pytest.mark.parametrize("run", ["big", "tiny"])
def test_finetuned_encoder_makes_real_streams_that_feed_the_network(runs, shapes, run) -> None:
    model, net, record = runs[run]
    codec, streams = _streams(model, shapes.images)
    assert not codec.rate_is_estimate
    decoded = codec.decode(streams)
    assert [d.shape for d in decoded] == [im.shape for im in shapes.images]
    assert all(d.dtype == np.uint8 and d.std() > 1 for d in decoded)
    # the streams' latents are exactly what training's forward computes with rounding
    lat, splits = latent_set(codec.latents(streams), ["y_hat"])
    assert splits == [model.M] and lat.latents[0].shape == (model.M, SIZE // 16, SIZE // 16)
    mine, estimate = joint_latents(model, shapes.images, ["y_hat"])
    assert all(torch.equal(a, b) for a, b in zip(lat.latents, mine.latents))
    assert any(float(t.abs().max()) > 0 for t in lat.latents)
    with torch.no_grad():
        logits = net(lat.batch(range(len(lat))))
    assert logits.shape == (len(lat), 10) and torch.isfinite(logits).all()
    # real bits against the estimates. The rANS strings alone are close to the estimate of
    # the rounded latents, give or take a few bytes per stream (each string's flush: at
    # 64×64 a byte is 0.002 bpp); bench's header adds ~12 bytes. The training estimate
    # (noise instead of rounding) is within a factor of the real rate.
    payload = 8.0 * sum(sum(len(s) for s in codec._parse(st)[1]) for st in streams) / (len(streams) * SIZE * SIZE)
    real = _bpp(streams)
    per_byte = 8.0 / (SIZE * SIZE)
    assert 0.85 * estimate < payload < 1.15 * estimate + 16 * per_byte
    assert payload + 4 * per_byte < real < payload + 24 * per_byte
    assert 0.5 < real / record["bpp_per_epoch"][-1] < 2


def test_quantisation_is_straight_through() -> None:
    base, _ = load_embedded("mean-scale", Q)
    model = copy.deepcopy(base).requires_grad_(False)
    model.g_a.requires_grad_(True)
    x = torch.rand(2, 3, SIZE, SIZE)
    parts, bits = joint_forward(model, "mean-scale", x, ["y_hat", "means"], training=True)
    y = model.g_a(x)
    # forward: round(y - mu) + mu, whole numbers away from the means
    offsets = parts["y_hat"] - parts["means"]
    assert torch.allclose(offsets, offsets.round(), atol=1e-4) and not torch.equal(parts["y_hat"], y)
    assert bits.shape == (2,) and (bits > 0).all()
    # backward: round is the identity, so y_hat = y - mu + mu has the gradient of y, and the
    # means, computed from the rounded z, still pass a gradient to g_a (through h_a)
    weight = model.g_a[0].weight
    (g_hat,) = torch.autograd.grad(parts["y_hat"].sum(), weight, retain_graph=True)
    (g_y,) = torch.autograd.grad(y.sum(), weight)
    assert torch.allclose(g_hat, g_y, rtol=1e-4, atol=1e-6)
    (g_means,) = torch.autograd.grad(parts["means"].sum(), weight)
    assert float(g_means.abs().max()) > 0


def test_only_the_analysis_transform_changes(runs) -> None:
    before = runs["base"].state_dict()
    for name in ("big", "tiny"):
        model, _, _ = runs[name]
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        after = model.state_dict()
        assert after.keys() == before.keys()
        frozen = [k for k in before if not k.startswith("g_a.")]
        assert any(k.startswith("g_s.") for k in frozen) and any(k.startswith("h_s.") for k in frozen)
        assert [k for k in frozen if not torch.equal(before[k], after[k])] == []
        g_a = [f"g_a.{k}" for k, _ in model.g_a.named_parameters()]
        assert len(g_a) == 14 and [k for k in g_a if torch.equal(before[k], after[k])] == []


def test_mean_scale_reads_scales_and_means_and_is_seeded(shapes) -> None:
    base, _ = load_embedded("mean-scale", Q)
    inputs = ["y_hat", "scales", "means"]
    images, data = shapes.images[:8], _subset(shapes, 8)
    torch.manual_seed(0)
    pixel = MODELS.get("tiny-resnet")(widths=(8, 16)).build(10)
    net0 = latent_network("classification", pixel, "cresnet", [base.M] * 3, drop_stages=0)
    records, models = [], []
    for _ in range(2):
        model, net = copy.deepcopy(base), copy.deepcopy(net0)
        records.append(train_joint("classification", model, net, inputs, images, data,
                                   Schedule(epochs=1, batch_size=4, lr=1e-3), 1.0, seed=3, device="cpu"))
        models.append(model)
    assert records[0] == records[1]  # the order, flips and the entropy models' noise are seeded
    assert records[0]["prior"] == "mean-scale"
    assert not torch.equal(models[0].g_a[0].weight, base.g_a[0].weight)
    codec, streams = _streams(models[0], images, "mbt2018-mean")
    lat, splits = latent_set(codec.latents(streams), inputs)
    mine, _ = joint_latents(models[0], images, inputs)
    assert splits == [base.M] * 3
    assert all(torch.equal(a, b) for a, b in zip(lat.latents, mine.latents))


def test_odd_sizes_are_padded_and_cropped_as_the_codec_does(kodak_crop) -> None:
    from bench.datasets.base import ImageSet

    base, _ = load_embedded("mean-scale", Q)
    # three padded sizes (64x128, 128x128, 192x256), grids of 5x7, 8x8, 12x16 cells
    images = [np.ascontiguousarray(kodak_crop[:70, :100]), np.ascontiguousarray(kodak_crop[50:120, 30:130]),
              np.ascontiguousarray(kodak_crop[:128, :128]), np.ascontiguousarray(kodak_crop[:, 3:])]
    inputs = ["y_hat", "means"]
    codec, streams = _streams(copy.deepcopy(base), images, "mbt2018-mean")
    lat, _ = latent_set(codec.latents(streams), inputs)
    mine, _ = joint_latents(base, images, inputs)
    assert [t.shape[-2:] for t in mine.latents] == [(5, 7), (5, 7), (8, 8), (12, 16)]
    assert all(torch.equal(a, b) for a, b in zip(lat.latents, mine.latents))
    # and training runs over a batch of mixed sizes (grouped by padded size, flipped on the grid)
    data = ImageSet("kodak-crops", "train", ["a", "b", "c", "d"], images, np.array([0, 1, 0, 1]), ("x", "y"))
    torch.manual_seed(0)
    pixel = MODELS.get("tiny-resnet")(widths=(8, 16)).build(2)
    net = latent_network("classification", pixel, "aa", [base.M] * 2)
    record = train_joint("classification", base, net, inputs, images, data,
                         Schedule(epochs=2, batch_size=4, lr=1e-3), 1.0, seed=1, device="cpu")
    assert record["steps"] == 2 and all(np.isfinite(record["loss_per_epoch"]))
    assert 0.05 < record["bpp_per_epoch"][0] < 8


def _subset(data, n: int):
    from dataclasses import replace

    return replace(data, ids=data.ids[:n], images=data.images[:n], labels=data.labels[:n],
                   targets={k: v[:n] for k, v in data.targets.items()})


@pytest.mark.parametrize("task,model_name", [("segmentation", "tiny-fcn"), ("detection", "tiny-centernet")])
def test_dense_tasks_train_jointly(shapes, task, model_name) -> None:
    base, _ = load_embedded("hyperprior", Q)
    data = _subset(shapes, 8)
    torch.manual_seed(0)
    pixel = TASKS.get(task)().build(MODELS.get(model_name)(widths=(8, 16, 32), neck=16), data)
    net = latent_network(task, pixel, "aa", [base.M, base.M])
    record = train_joint(task, base, net, ["y_hat", "scales"], data.images, data,
                         Schedule(epochs=1, batch_size=4, lr=1e-3), 1.0, seed=0, device="cpu")
    assert record["steps"] == 2 and 0 < record["task_loss_per_epoch"][0] < float("inf")
    assert not net.training and not base.training


def test_unsupported_codecs_and_models_are_refused(shapes) -> None:
    for name in ("bmshj2018-hyperprior", "mbt2018-mean"):
        assert joint_unsupported(CODECS.get(name)(weights="embedded")) is None
    for name, words in (("gmm-hyperprior", "gmm prior"), ("mbt2018", "context prior"),
                        ("bmshj2018-factorized", "factorized prior"), ("jpeg", "needs a neural codec")):
        why = joint_unsupported(CODECS.get(name)())
        assert why is not None and words in why and "\n" not in why
    why = joint_unsupported(CODECS.get("bmshj2018-hyperprior")(entropy_estimation=True))
    assert why is not None and "entropy_estimation" in why

    torch.manual_seed(0)
    pixel = MODELS.get("tiny-resnet")(widths=(8, 16)).build(10)
    net = latent_network("classification", pixel, "aa", [24])
    schedule = Schedule(epochs=1, batch_size=4, lr=1e-3)
    images = shapes.images[:4]
    for model in (cm.JointAutoregressiveHierarchicalPriors(16, 24), GMMHyperprior(16, 24), cm.FactorizedPrior(16, 24)):
        with pytest.raises(BenchError, match=rf"supports .*ScaleHyperprior.*not {type(model).__name__}$"):
            train_joint("classification", model, net, ["y_hat"], images, _subset(shapes, 4), schedule, 1.0, 0, "cpu")
    with pytest.raises(BenchError, match=r"a scale hyperprior has no means in its latents \(use y_hat, scales\)$"):
        train_joint("classification", cm.ScaleHyperprior(16, 24), net, ["y_hat", "means"], images,
                    _subset(shapes, 4), schedule, 1.0, 0, "cpu")
    with pytest.raises(BenchError, match="unknown task 'captioning'"):
        train_joint("captioning", cm.ScaleHyperprior(16, 24), net, ["y_hat"], images, _subset(shapes, 4), schedule,
                    1.0, 0, "cpu")
