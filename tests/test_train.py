"""The one training loop (``bench.train``): every task's loss falls through it, a seeded run
is reproducible whatever the number of loader workers, the epoch hook sees every epoch, a
flip mirrors an item's input and targets together, and a task written only from the
``Task`` pieces trains on pixels and on latents and is scored in scenario D by its own metric."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.codecs import CODECS, OperatingPoint
from bench.config import Schedule
from bench.datasets.base import Dataset, ImageSet
from bench.datasets.shapes import Shapes
from bench.domain.nets import LatentClassifier, adapt
from bench.domain.train import LatentSet, LatentSource, Transfer, _grid_image, evaluate_latent, latent_set, train_latent
from bench.errors import BenchError
from bench.models import MODELS
from bench.models.base import Model
from bench.tasks import TASKS, Task
from bench.train import PixelSource, TrainingSet, fit, task_loss

#: Two OpenMP threads on two shared cores wait on each other for every small convolution.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL_FOR = {"classification": "tiny-resnet", "detection": "tiny-centernet", "segmentation": "tiny-fcn"}


@pytest.fixture(scope="module")
def shapes() -> ImageSet:
    return Shapes(n_train=32, n_val=8, size=32).load("train", None)


def _model(task: str) -> Model:
    name = MODEL_FOR[task]
    return MODELS.get(name)(widths=(8, 16)) if task == "classification" else MODELS.get(name)(widths=(8, 16, 32), neck=16)


def _pixel_set(task: Task, model: Model, data: ImageSet) -> TrainingSet:
    return TrainingSet(task, PixelSource(task, model, data.images), task.training_targets(data, model))


@pytest.mark.parametrize("name", sorted(MODEL_FOR))
def test_the_loss_falls_for_every_task(shapes, name: str) -> None:
    task, model = TASKS.get(name)(), _model(name)
    torch.manual_seed(0)
    net = task.build(model, shapes)
    losses: list[float] = []
    per_epoch: list[float] = []

    def step(batch) -> torch.Tensor:
        loss = task_loss(task, net, batch)
        losses.append(float(loss.detach()))
        return loss

    def on_epoch(epoch: int) -> None:
        per_epoch.append(float(np.mean(losses)))
        losses.clear()

    fit(net, _pixel_set(task, model, shapes), step, Schedule(epochs=8, batch_size=8, lr=0.01), 0, "cpu",
        on_epoch=on_epoch)
    assert len(per_epoch) == 8 and per_epoch[-1] < 0.85 * per_epoch[0], per_epoch
    assert not net.training


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_a_seeded_run_is_reproducible(shapes) -> None:
    """Equal weights from two runs; also with loader workers (order and flips are drawn in
    the main process); another seed gives other weights."""
    task, model = TASKS.get("segmentation")(), _model("segmentation")
    torch.manual_seed(0)
    start = task.build(model, shapes)
    schedule = Schedule(epochs=2, batch_size=8, lr=0.01)

    def run(seed: int, workers: int = 0) -> dict[str, torch.Tensor]:
        net = task.build(model, shapes)
        net.load_state_dict(start.state_dict())
        fit(net, _pixel_set(task, model, shapes), lambda b: task_loss(task, net, b), schedule, seed, "cpu",
            num_workers=workers)
        return _state(net)

    first, again, workers, other = run(0), run(0), run(0, workers=2), run(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert all(torch.equal(first[k], workers[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_the_epoch_hook_sees_every_epoch_after_its_last_step(shapes) -> None:
    task, model = TASKS.get("classification")(), _model("classification")
    torch.manual_seed(0)
    net = task.build(model, shapes)
    steps: list[int] = []
    seen: list[tuple[int, int]] = []

    def step(batch) -> torch.Tensor:
        steps.append(len(batch.index))
        return task_loss(task, net, batch)

    fit(net, _pixel_set(task, model, shapes), step, Schedule(epochs=3, batch_size=10, lr=0.01), 0, "cpu",
        on_epoch=lambda epoch: seen.append((epoch, len(steps))))
    assert seen == [(0, 4), (1, 8), (2, 12)]  # 32 images in batches of 10: 4 steps an epoch
    assert steps[:4] == [10, 10, 10, 2]


def test_mixed_precision(shapes) -> None:
    task, model = TASKS.get("classification")(), _model("classification")
    torch.manual_seed(0)
    net = task.build(model, shapes)
    before = _state(net)
    fit(net, _pixel_set(task, model, shapes), lambda b: task_loss(task, net, b),
        Schedule(epochs=1, batch_size=16, lr=0.01), 0, "cpu", precision="bf16")
    after = _state(net)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert not all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(BenchError, match="fp16 mixed precision needs a CUDA device"):
        fit(net, _pixel_set(task, model, shapes), lambda b: task_loss(task, net, b),
            Schedule(epochs=1, batch_size=16, lr=0.01), 0, "cpu", precision="fp16")


def test_a_flip_mirrors_latents_targets_and_the_teacher_together(shapes) -> None:
    """A 32×40 image has a 2×3 latent grid, 32×48 pixels: a flip mirrors its latents, its
    boxes about the grid's width (48) and the teacher's image edge-padded to the grid."""
    images = [np.ascontiguousarray(np.pad(im, ((0, 0), (0, 8), (0, 0)), mode="edge")) for im in shapes.images[:2]]
    data = ImageSet("shapes-wide", "train", ["a", "b"], images, shapes.labels[:2], shapes.classes,
                    {k: v[:2] for k, v in shapes.targets.items()})
    lat = LatentSet([torch.randn(4, 2, 3) for _ in images], [(32, 40)] * 2)
    task, model = TASKS.get("detection")(), _model("detection")
    items = TrainingSet(task, LatentSource(lat, Transfer(nn.Identity(), model, {}, images)), task.training_targets(data))
    _, _, (latent, size, teacher), target = items[0, True]
    _, _, (latent0, _, teacher0), target0 = items[0, False]
    assert torch.equal(latent, lat.latents[0].flip(-1)) and torch.equal(latent0, lat.latents[0]) and size == (32, 40)
    assert teacher.shape == (32, 48, 3) and np.array_equal(teacher, _grid_image(images[0], (32, 48), False)[:, ::-1])
    boxes, boxes0 = target["boxes"], target0["boxes"]
    assert torch.equal(boxes[:, [0, 2]], 48 - boxes0[:, [2, 0]]) and torch.equal(boxes[:, [1, 3]], boxes0[:, [1, 3]])
    batch = items.collate([items[0, True], items[1, False]])
    assert batch.flips == [True, False] and batch.inputs[0].shape == (2, 4, 2, 3)
    assert batch.extras["teacher"].shape == (2, 3, 32, 48) and torch.equal(batch.targets[0]["boxes"], boxes)


# --- a task written from the Task pieces alone --------------------------------------------------


class Counting(Task):
    """How many objects a scene holds, as a regression: scored by the mean absolute error
    and the share of images whose rounded count is right."""

    name = "counting"
    version = "1"
    description = "object count: mean absolute error and exact-count accuracy"

    def metric_names(self, dataset: Dataset) -> tuple[str, ...]:
        return ("count_mae", "count_accuracy")

    def problems(self, dataset: Dataset, model: Model) -> list[str]:
        return []  # any classifier can count

    def build(self, model: Model, dataset: ImageSet) -> nn.Module:
        return model.build(1)

    def references(self, net: nn.Module, model: Model, originals: ImageSet, device: str) -> np.ndarray:
        return np.array([len(b) for b in originals.targets["boxes"]], dtype=np.float32)

    def predictions(self, outputs: torch.Tensor, sizes: Sequence[tuple[int, int]], frame: tuple[int, int]) -> list[float]:
        return outputs[:, 0].float().cpu().tolist()

    def score(self, predictions: Iterable[float], references: np.ndarray, model: Model | None = None) -> dict[str, float]:
        counts = np.asarray(list(predictions))
        return {"count_mae": float(np.abs(counts - references).mean()),
                "count_accuracy": float((np.round(counts) == references).mean())}

    def training_targets(self, data: ImageSet, model: Model | None = None) -> torch.Tensor:
        return torch.tensor([float(len(b)) for b in data.targets["boxes"]])

    def collate_targets(self, targets: list[torch.Tensor], frame: tuple[int, int]) -> torch.Tensor:
        return torch.stack(targets)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(outputs[:, 0], targets)


def test_a_task_from_its_pieces_trains_and_is_scored_in_scenario_d() -> None:
    ds = Shapes(n_train=48, n_val=16, size=64)
    train, val = ds.load("train", None), ds.load("val", None)
    task, model = Counting(), MODELS.get("tiny-resnet")(widths=(8, 16))
    assert "counting" not in TASKS.names()  # known to nothing but this test
    torch.manual_seed(0)
    pixel = task.build(model, train)
    refs = task.references(pixel, model, val, "cpu")
    untrained = task.evaluate(pixel, model, val.images, refs, "cpu")
    task.train(pixel, model, train.images, train, Schedule(epochs=4, batch_size=16, lr=0.01), 0, "cpu")
    trained = task.evaluate(pixel, model, val.images, refs, "cpu")
    assert set(trained) == set(task.metric_names(ds)) and trained["count_mae"] < untrained["count_mae"]

    codec = CODECS.get("bmshj2018-hyperprior")(weights="embedded")
    lat = {name: latent_set(codec.latents(codec.encode(split.images, OperatingPoint(1))), ["y_hat"])
           for name, split in (("train", train), ("val", val))}
    torch.manual_seed(0)
    net = LatentClassifier(adapt(pixel, "aa", lat["train"][1]))
    before = evaluate_latent(task, net, lat["val"][0], refs, "cpu")
    train_latent(task, net, lat["train"][0], train, Schedule(epochs=4, batch_size=16, lr=0.01), 0, "cpu")
    after = evaluate_latent(task, net, lat["val"][0], refs, "cpu")
    assert set(after) == {"count_mae", "count_accuracy"}
    assert after["count_mae"] < before["count_mae"], (before, after)
