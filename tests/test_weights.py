"""Weight files: checked before any work (``bench validate``), fetched once (``bench fetch``).

Every download here is served from a local file (a ``file://`` URL put where torchvision's
weights enum or CompressAI's zoo keeps it); the hub cache is an empty ``TORCH_HOME``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.errors import BenchError
from bench.models import MODELS
from bench.weights import WeightFile, hub_checkpoints_dir
from tests.helpers import bench, tiny_grid, write_grid

RESNET50_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
#: A small torchvision classifier, for a genuine state dict that a build loads.
SMALL_ARCH, SMALL_WEIGHTS = "mobilenet_v3_small", "IMAGENET1K_V1"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache; its ``checkpoints`` folder (not yet created)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert hub_checkpoints_dir() == tmp_path / "torch" / "hub" / "checkpoints"
    return hub_checkpoints_dir()


def torchvision_grid(path: Path, arch: str = "resnet50", weights: str = "IMAGENET1K_V2") -> Path:
    return write_grid(path / "grid.yaml", {
        "name": "weights", "codecs": [{"codec": "jpeg", "qualities": [50]}],
        "experiments": [{"task": "classification", "dataset": {"name": "photos"},
                         "model": {"name": "torchvision", "arch": arch, "weights": weights}, "scenarios": ["B"]}],
    })


def hashed_copy(src: Path, folder: Path, stem: str, suffix: str, prefix: str | None = None) -> Path:
    """``src`` copied into ``folder`` as ``<stem>-<prefix><suffix>``, the prefix by default the
    file's real sha256 prefix (torch hub's naming)."""
    prefix = prefix or hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, folder / f"{stem}-{prefix}{suffix}"))


def serve_torchvision_weights(monkeypatch: pytest.MonkeyPatch, arch: str, weights: str, file: Path) -> None:
    """Make torchvision's weights enum point at ``file`` (so a build, and bench, download it from there)."""
    from torchvision import models

    monkeypatch.setattr(models.get_model_weights(arch)[weights].value, "url", file.as_uri())


def errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("bench: error:")]


def test_validate_names_the_missing_torchvision_file(hub: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    grid = torchvision_grid(tmp_path)
    assert bench("validate", "--grid", grid) == 2
    expected = (f"bench: error: {grid}: experiments[0].model (torchvision): unavailable: torchvision resnet50 "
                f"weights IMAGENET1K_V2: resnet50-11ad3fa6.pth is not in {hub}; run \"bench fetch --grid FILE\" "
                f"where there is a network, or place it there (from {RESNET50_URL}), or set checkpoint: to a "
                "local state dict")
    assert errors(capsys) == [expected]
    assert bench("fetch", "--grid", grid, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"missing  {hub / 'resnet50-11ad3fa6.pth'}  (torchvision resnet50 weights IMAGENET1K_V2 from " \
           f"{RESNET50_URL})" in out
    assert "1 weight file: 1 missing" in out and not hub.exists()  # a dry run writes nothing


def test_fetch_downloads_a_genuine_state_dict_that_the_build_loads(hub: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from torchvision import models

    state = models.get_model(SMALL_ARCH, weights=None).state_dict()
    torch.save(state, tmp_path / "state.pth")
    served = hashed_copy(tmp_path / "state.pth", tmp_path / "server", SMALL_ARCH, ".pth")
    serve_torchvision_weights(monkeypatch, SMALL_ARCH, SMALL_WEIGHTS, served)
    grid = torchvision_grid(tmp_path, SMALL_ARCH, SMALL_WEIGHTS)
    assert bench("validate", "--grid", grid) == 2 and served.name in errors(capsys)[0]

    assert bench("fetch", "--grid", grid) == 0
    out = capsys.readouterr().out
    assert f"fetched  {hub / served.name}" in out
    assert [p.name for p in hub.iterdir()] == [served.name]  # no temporary file left beside it
    assert (hub / served.name).read_bytes() == served.read_bytes()

    assert bench("validate", "--grid", grid) == 0
    assert bench("fetch", "--grid", grid) == 0 and f"present  {hub / served.name}" in capsys.readouterr().out
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)  # the build reads the cache
    net = MODELS.get("torchvision")(arch=SMALL_ARCH, weights=SMALL_WEIGHTS).build(None)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_a_wrong_hash_fails_and_leaves_nothing(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk").write_bytes(b"not the weights")
    served = hashed_copy(tmp_path / "junk", tmp_path / "server", "resnet50", ".pth", prefix="11ad3fa6")
    serve_torchvision_weights(monkeypatch, "resnet50", "IMAGENET1K_V2", served)
    assert bench("fetch", "--grid", torchvision_grid(tmp_path)) == 2
    (line,) = errors(capsys)
    assert f"cannot download {served.as_uri()} to {hub / served.name}" in line and "invalid hash value" in line
    assert list(hub.iterdir()) == []


def test_offline_fetch_is_one_line_per_file(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from torchvision import models

    url = "http://127.0.0.1:9/models/resnet50-11ad3fa6.pth"  # the discard port: nothing listens
    monkeypatch.setattr(models.ResNet50_Weights.IMAGENET1K_V2.value, "url", url)
    assert bench("fetch", "--grid", torchvision_grid(tmp_path)) == 2
    captured = capsys.readouterr()
    assert f"failed   {hub / 'resnet50-11ad3fa6.pth'}" in captured.out
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"bench: error: torchvision resnet50 weights IMAGENET1K_V2: "
                                                   f"cannot download {url} to {hub / 'resnet50-11ad3fa6.pth'}: ")
    assert list(hub.iterdir()) == []


def test_zoo_codec_weights_are_checked_and_fetched(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import compressai.zoo
    from compressai.zoo.image import model_urls

    from bench.codecs import CODECS

    state = compressai.zoo.bmshj2018_factorized(quality=1, pretrained=False).state_dict()
    torch.save(state, tmp_path / "state.pth")
    served = hashed_copy(tmp_path / "state.pth", tmp_path / "server", "bmshj2018-factorized-prior-1", ".pth.tar")
    monkeypatch.setitem(model_urls["bmshj2018-factorized"]["mse"], 1, served.as_uri())
    grid = write_grid(tmp_path / "grid.yaml", tiny_grid(codecs=[{"codec": "bmshj2018-factorized", "qualities": [1]}]))
    assert bench("validate", "--grid", grid) == 2
    (line,) = errors(capsys)
    assert "codecs[0] (bmshj2018-factorized): unavailable: zoo weights not cached" in line
    assert served.name in line and str(hub) in line and "bench fetch --grid FILE" in line
    codec = CODECS.get("bmshj2018-factorized")()
    assert served.name in codec.unavailable_reason(1)  # type: ignore[operator]

    assert bench("fetch", "--grid", grid) == 0
    out = capsys.readouterr().out
    assert f"fetched  {hub / served.name}  (bmshj2018-factorized zoo weights (mse, quality 1)" in out
    assert bench("validate", "--grid", grid) == 0
    assert codec.unavailable_reason(1) is None
    model = codec.compression_model(1)  # CompressAI's zoo loads the cached file
    assert torch.equal(model.g_a[0].weight, state["g_a.0.weight"])


def test_a_rate_search_fetches_every_quality(hub: Path) -> None:
    from bench.config import Grid
    from bench.weights import grid_weight_files

    grid = Grid.model_validate(tiny_grid(codecs=[{"codec": "bmshj2018-factorized", "qualities": [2],
                                                  "targets_bpp": [0.5]}, {"codec": "jpeg", "qualities": [50]}]))
    files = grid_weight_files(grid)
    assert [f.path.name.split("-")[3] for f in files] == ["2", "1", "3", "4", "5", "6", "7", "8"]
    assert all(f.path.parent == hub and f.sha256_prefix and f.sha256_prefix in f.path.name for f in files)


def test_fetch_reports_a_grid_that_does_not_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = write_grid(tmp_path / "grid.yaml", tiny_grid(codecs=[{"codec": "jpg", "qualities": [50]}]))
    assert bench("fetch", "--grid", grid) == 2
    assert any("codecs[0]: Unknown codec 'jpg'" in line for line in errors(capsys))


def test_local_files_are_listed_and_never_fetched(tmp_path: Path) -> None:
    lite0 = MODELS.get("efficientnet-lite0")()
    (shipped,) = lite0.weight_files()
    assert shipped.url is None and shipped.present and lite0.unavailable_reason() is None
    model = MODELS.get("torchvision-detector")(arch="fcos_resnet50_fpn", checkpoint=str(tmp_path / "nope.pth"))
    (local,) = model.weight_files()
    assert model.unavailable_reason() == f"checkpoint {tmp_path / 'nope.pth'} not found"
    with pytest.raises(BenchError, match="a local file: there is nothing to download"):
        local.fetch()
    mmdet = MODELS.get("mmdet")(config="mmdet::ddod/ddod_r50_fpn_1x_coco.py", checkpoint="ddod.pth")
    assert mmdet.weight_files() == [WeightFile(Path("ddod.pth"), None, "checkpoint")]


def test_an_offline_build_says_what_to_do_in_one_sentence(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", _no_network)
    model = MODELS.get("torchvision")(arch=SMALL_ARCH, weights=SMALL_WEIGHTS)
    (file,) = model.weight_files()
    with pytest.raises(BenchError) as info:
        model.build(None)
    assert str(info.value) == (
        f"torchvision {SMALL_ARCH} weights {SMALL_WEIGHTS} could not be downloaded (URLError: <urlopen error no "
        f"network>); place {file.path.name} (from {file.url}) at {file.path}, run \"bench fetch --grid FILE\" "
        "where there is a network, or set checkpoint: to a local state dict")


def test_a_torchvision_build_with_weights_reads_only_that_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``TorchvisionWeights.weight_files`` relies on: given weights, every detection and
    segmentation builder drops ``weights_backbone`` (no second download)."""
    from torchvision import models
    from torchvision.models._api import WeightsEnum

    class Read(Exception):
        pass

    def record(self: Any, *args: Any, **kwargs: Any) -> None:
        read.append(self.url)
        raise Read  # stop at the first file the build reads: a backbone's comes first

    monkeypatch.setattr(WeightsEnum, "get_state_dict", record)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for kind in ("detection", "segmentation"):
            for arch in models.list_models(module=getattr(models, kind)):
                for weights in models.get_model_weights(arch):
                    read: list[str] = []
                    with pytest.raises(Read):
                        models.get_model(arch, weights=weights)
                    assert read == [weights.url], (arch, weights)
    finally:
        torch.set_num_threads(before)


def _no_network(*args: Any, **kwargs: Any) -> Any:
    import urllib.error

    raise urllib.error.URLError("no network")


def test_a_checkpoint_path_under_home_is_expanded(monkeypatch, tmp_path) -> None:
    from bench.models.pretrained import TorchvisionClassifier

    monkeypatch.setenv("HOME", str(tmp_path))
    model = TorchvisionClassifier(arch="resnet18", checkpoint="~/models/r18.pth")
    assert model.params.checkpoint == str(tmp_path / "models" / "r18.pth")
    assert str(tmp_path / "models" / "r18.pth") in model.unavailable_reason()
