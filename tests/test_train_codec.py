"""Training codecs for real, for a few steps, and the weights files they write."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.datasets.photos import SHIPPED_PHOTOS
from bench.train_codec import FAMILIES, TRAIN_PHOTOS, TrainConfig, evaluate, load_codec, save_codec, train, train_photo_paths


def test_training_photos_exist_and_are_never_evaluation_images() -> None:
    paths = train_photo_paths()
    assert len(paths) == len(TRAIN_PHOTOS)
    assert not {rel for _, rel in TRAIN_PHOTOS} & {rel for _, rel in SHIPPED_PHOTOS}
    assert not any(p.name.startswith("kodim") for p in paths)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_real_steps_lower_the_loss_and_write_a_loadable_file(
    family: str, kodak_crop: np.ndarray, tmp_path: Path
) -> None:
    crops = [kodak_crop[:96, :96], kodak_crop[96:, 128:]]
    config = TrainConfig(family=family, N=16, M=16, lmbda=0.01, steps=10, crop=64, batch_size=2, log_every=5, seed=3)
    log = io.StringIO()
    model, summary = train(config, images=crops, log=log)
    assert summary["steps"] == 10
    assert summary["last_loss"] < summary["first_loss"], log.getvalue()
    assert "psnr~" in log.getvalue() and "bpp~" in log.getvalue()

    path = tmp_path / f"{family}-q1.pt"
    save_codec(model, config, path, summary, command="bench train-codec ...")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = blob["config"]
    assert {"family", "N", "M", "lambda", "steps", "seed", "data", "command"} <= cfg.keys()
    assert (cfg["family"], cfg["N"], cfg["M"], cfg["lambda"], cfg["steps"]) == (family, 16, 16, 0.01, 10)
    assert {v.dtype for v in blob["state_dict"].values()} <= {torch.float16, torch.int32}

    loaded, _ = load_codec(path)
    result = evaluate(loaded, [kodak_crop[:70, :90]])
    assert result["bpp"] > 0 and 0 < result["psnr"] < 99  # ten steps make a poor codec, but a real one
    # The file holds everything: a second load codes to the same bytes.
    x = torch.rand(1, 3, 64, 64)
    again, _ = load_codec(path)
    assert loaded.compress(x)["strings"] == again.compress(x)["strings"]


def test_warm_start_from_another_family_copies_only_the_transforms(kodak_crop: np.ndarray, tmp_path: Path) -> None:
    from bench.train_codec import build_model, warm_start

    config = TrainConfig(family="hyperprior", N=16, M=16, steps=1, crop=64, batch_size=1, log_every=1)
    source, summary = train(config, images=[kodak_crop[:64, :64]], log=io.StringIO())
    path = tmp_path / "hyperprior.pt"
    save_codec(source, config, path, summary, command="test")
    target = build_model("gmm", 16, 16)
    copied = warm_start(target, "gmm", path)
    assert copied and all(name.startswith(("g_a.", "g_s.")) for name in copied)
    shipped, _ = load_codec(path)
    assert torch.equal(target.g_s[0].weight, shipped.g_s[0].weight)


def test_load_rejects_a_foreign_file(tmp_path: Path) -> None:
    from bench.errors import BenchError

    path = tmp_path / "x.pt"
    torch.save({"weights": 1}, path)
    with pytest.raises(BenchError, match="not a bench codec weights file"):
        load_codec(path)


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train-codec", "--help"])
    assert exc.value.code == 0
    assert "--family" in capsys.readouterr().out


def test_cli_bad_family_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["train-codec", "--family", "hyperprior2", "--lambda", "0.01", "--steps", "1", "--out", str(tmp_path / "w.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "unknown codec family 'hyperprior2'" in err[0] and "gmm" in err[0]
    assert not (tmp_path / "w.pt").exists()
