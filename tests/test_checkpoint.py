"""Trainings that stream and resume: the loop reads its items through loader workers with
the same result as in one process, saves its whole state after every epoch, and a training
stopped (or a run killed) mid-way resumes from its last finished epoch and ends exactly
where an uninterrupted one ends (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.cache import Cache
from bench.config import Schedule
from bench.datasets.shapes import Shapes
from bench.models.tiny import TinyResNet
from bench.tasks.classification import Classification
from bench.train import Checkpoint, train_on_images
from tests.helpers import tiny_grid, write_grid

SCHEDULE = Schedule(epochs=4, batch_size=16, lr=0.003)


class Stop(Exception):
    pass


def _train(data, checkpoint: Checkpoint | None = None, num_workers: int = 0, stop_after: int | None = None):
    task, model = Classification(), TinyResNet(widths=[8, 16])
    torch.manual_seed(0)
    net = task.build(model, data)
    if stop_after is not None:  # the loop's hook raises after that epoch is saved
        real_save = checkpoint.save

        def save(state):
            real_save(state)
            if state["epoch"] == stop_after:
                raise Stop

        checkpoint.save = save
    train_on_images(task, net, model, data.images, data, SCHEDULE, 7, "cpu", checkpoint=checkpoint,
                    num_workers=num_workers)
    return net


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_stopped_training_resumes_at_its_next_epoch_and_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    data = Shapes(n_train=48, n_val=8, size=32).load("train")
    clean = _train(data)
    checkpoint = Checkpoint(tmp_path / "c.pt")
    with pytest.raises(Stop):
        _train(data, checkpoint, stop_after=1)
    assert checkpoint.path.is_file() and not list(tmp_path.glob(".*.tmp"))
    assert torch.load(checkpoint.path, weights_only=True)["epoch"] == 1
    resumed = Checkpoint(tmp_path / "c.pt")
    net = _train(data, resumed)
    assert resumed.resumed_at == 2
    assert _same(net, clean)
    # a checkpoint of another schedule's length is not taken for this one's
    other = Checkpoint(tmp_path / "c.pt")
    state = torch.load(other.path, weights_only=True)
    state["epochs"] = 9
    other.save(state)
    assert _same(_train(data, other), clean) and other.resumed_at is None


def test_loader_workers_read_the_items_with_the_same_result(tmp_path: Path) -> None:
    """Two loader processes read, flip and batch the items: the order and the flips are
    drawn in the main process, so the weights are those of the one-process loop."""
    data = Shapes(n_train=48, n_val=8, size=32).load("train")
    assert _same(_train(data, num_workers=2), _train(data))


def _run(grid: Path, out: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "bench"
    return subprocess.Popen([str(exe), "run", "--grid", str(grid), "--out", str(out), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))


def _table(out: Path) -> pd.DataFrame:
    lb = pd.read_csv(out / "ckpt" / "leaderboard.csv")
    cols = [c for c in lb.columns if c in ("scenario", "codec", "quality", "top1", "top5", "bpp", "psnr")]
    return lb[cols].sort_values(["scenario", "codec", "quality"]).reset_index(drop=True)


def test_a_run_killed_during_a_finetune_resumes_from_its_last_epoch(tmp_path: Path) -> None:
    """SIGKILL once the C finetune has saved an epoch (the A model is in the cache by then),
    then the same command: the finetune resumes at its next epoch, and the table is the
    uninterrupted run's."""
    grid = tiny_grid(name="ckpt", codecs=[{"codec": "jpeg", "qualities": [10]}])
    exp = grid["experiments"][0]
    exp.update(scenarios=["A", "C"], dataset={"name": "shapes", "n_train": 320, "n_val": 40, "size": 32},
               finetune={"epochs": 8, "batch_size": 16, "lr": 0.001})
    path = write_grid(tmp_path / "grid.yaml", grid)
    clean = _run(path, tmp_path / "clean")
    assert clean.wait(timeout=600) == 0, clean.stderr.read().decode()

    out = tmp_path / "killed"
    proc = _run(path, out)
    models, checkpoints = out / "cache" / "models", out / "cache" / "checkpoints"
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        # the A model is stored and a checkpoint is there: the finetune has finished an epoch
        if any(models.glob("*.pt")) and any(checkpoints.glob("*.pt")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before the finetune saved an epoch"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [saved] = list(checkpoints.glob("*.pt"))
    epoch = torch.load(saved, weights_only=True)["epoch"]
    assert 0 <= epoch < 7

    again = _run(path, out)
    assert again.wait(timeout=600) == 0
    said = again.stderr.read().decode()
    assert f"(resumed at epoch {epoch + 2} from its checkpoint)" in said, said
    assert not any(checkpoints.glob("*.pt"))  # the finished weights superseded it
    assert Cache(out / "cache").has_model(saved.stem)
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "clean"))


def test_a_schedule_names_its_precision_and_a_device_that_lacks_it_fails_before_any_work(tmp_path: Path,
                                                                                         capsys) -> None:
    from bench.config import Schedule
    from tests.helpers import bench

    # fp32 leaves no trace in a schedule's dump: keys made before the field existed hold
    assert "precision" not in Schedule(epochs=1, lr=0.1).model_dump()
    assert Schedule(epochs=1, lr=0.1, precision="bf16").model_dump()["precision"] == "bf16"
    grid = tiny_grid()
    grid["experiments"][0]["finetune"]["precision"] = "fp16"
    path = write_grid(tmp_path / "grid.yaml", grid)
    assert bench("run", "--grid", path, "--out", tmp_path / "out", "--device", "cpu", "--quiet") == 2
    err = capsys.readouterr().err
    assert "experiments[0].finetune: precision fp16 needs a CUDA device" in err
    assert not (tmp_path / "out" / "cache" / "transcode").exists()


def test_random_resized_crops_follow_torchvision_and_do_not_depend_on_the_workers() -> None:
    """``crop_scale`` crops each training image as torchvision's RandomResizedCrop does
    (the same box for the same seed), resized back to its size; the seeds are drawn with the
    epoch's order, so loader workers give the weights of the one-process loop."""
    import numpy as np
    from PIL import Image
    from torchvision.transforms import RandomResizedCrop
    from torchvision.transforms import functional as TF

    from bench.tasks.classification import resized_crop

    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    torch.manual_seed(123)
    box = RandomResizedCrop.get_params(Image.fromarray(image), [0.08, 1.0], [3 / 4, 4 / 3])
    theirs = np.asarray(TF.resized_crop(Image.fromarray(image), *box, [40, 56]))
    ours, label = resized_crop(image, 7, 123, (0.08, 1.0))
    assert ours.shape == image.shape and label == 7 and np.array_equal(ours, theirs)
    assert not np.array_equal(ours, image)

    data = Shapes(n_train=48, n_val=8, size=32).load("train")
    task, model = Classification(), TinyResNet(widths=[8, 16])
    crop = Schedule(epochs=2, batch_size=16, lr=0.003, crop_scale=(0.5, 1.0))

    def train(schedule: Schedule, workers: int) -> torch.nn.Module:
        torch.manual_seed(0)
        net = task.build(model, data)
        train_on_images(task, net, model, data.images, data, schedule, 7, "cpu", num_workers=workers)
        return net

    cropped = train(crop, 0)
    assert _same(cropped, train(crop, 2))
    assert not _same(cropped, train(Schedule(epochs=2, batch_size=16, lr=0.003), 0))


def test_crops_are_refused_where_a_task_or_scenario_cannot_take_them(tmp_path: Path, capsys) -> None:
    from tests.helpers import bench

    grid = tiny_grid()
    exp = grid["experiments"][0]
    exp.update(task="detection", model={"name": "tiny-centernet"}, scenarios=["A"], finetune=None)
    exp["train"]["crop_scale"] = [0.08, 1.0]
    assert bench("validate", "--grid", write_grid(tmp_path / "det.yaml", grid)) == 2
    assert "experiments[0].train.crop_scale: detection takes no random resized crops" in capsys.readouterr().err
    grid = tiny_grid()
    grid["experiments"][0]["train"]["crop_scale"] = [0.6, 0.5]
    assert bench("validate", "--grid", write_grid(tmp_path / "bad.yaml", grid)) == 2
    assert "expected 0 < low <= high <= 1" in capsys.readouterr().err
