"""Third-party plugins through real entry points, through the real ``bench`` command.

The example distributions (examples/plugins/, installed by ``make test``) run a grid end to
end. Bad plugins are real distributions too: a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt`` plus a module, in a folder on ``PYTHONPATH`` of a ``bench`` subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.codecs import CODECS, Codec, OperatingPoint
from bench.errors import CodecError
from tests.helpers import tiny_grid, write_grid

BENCH = Path(sys.executable).with_name("bench")


def write_distribution(site: Path, name: str, entry_points: dict[str, dict[str, str]],
                       modules: dict[str, str], version: str = "0.1") -> None:
    """A distribution as an installer leaves it: ``<name>-<version>.dist-info`` with its
    metadata and entry points (``{group: {name: "module:attr"}}``), next to its modules."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in entry_points.items()))
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


#: Codec classes of the bad distributions: each wrong in one way.
FAKE_CODECS = """
    import numpy as np
    from bench.codecs import Codec, CodecParams

    class _Base(Codec):
        version = "0.1"
        quality_range = (0, 100)

        def encode(self, images, point):
            return [b"x" * 8 for _ in images]

        def decode(self, streams):
            return [np.zeros((8, 8, 3), np.uint8) for _ in streams]

    class Fast(_Base):
        name = "fast"  # registered as "jpeg-fast"

    class PerImage(_Base):
        name = "perimage"

        def encode(self, image, quality):  # one image at a time: not the batch interface
            return b"x"

    class Shadow(_Base):
        name = "jpeg"

    class Twin(_Base):
        name = "twin"

    class Needy(_Base):
        name = "needy"

        class Params(CodecParams):
            model_path: str

    class Raising(_Base):
        name = "raising"

        def encode(self, images, point):
            raise ValueError("libfoo: unsupported sample layout")
"""


def bench_cli(*args: str | Path, site: Path | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``bench ARGS`` as a user runs it, with ``site``'s distributions installed."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([str(BENCH), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)


def ls_rows(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    return {line.split()[0]: line.split(None, 1)[1] for line in proc.stdout.splitlines()}


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line a failing command prints: no traceback, exit status 2."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), proc.stderr
    return lines[0].removeprefix("bench: error: ")


def small_grid(codecs: list[dict], task: str = "classification", scenarios: tuple[str, ...] = ("A", "B")) -> dict:
    grid = tiny_grid(codecs=codecs)
    exp = grid["experiments"][0]
    exp.update(task=task, scenarios=list(scenarios))
    exp["dataset"].update(n_train=40, n_val=20)
    exp["train"].update(epochs=1)
    del exp["finetune"]
    return grid


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Installed: a broken plugin, a name mismatch, a wrong signature, one that shadows jpeg,
    two distributions giving one name, one with a required parameter, one that raises."""
    site = tmp_path_factory.mktemp("site")
    codecs = "bench.codecs"
    write_distribution(site, "bench-broken", {codecs: {"broken": "broken_codec:Codec"}},
                       {"broken_codec": "import not_a_module_anywhere\n"})
    write_distribution(site, "bench-fast", {codecs: {"jpeg-fast": "fake_codecs:Fast"}}, {"fake_codecs": FAKE_CODECS})
    write_distribution(site, "bench-perimage", {codecs: {"perimage": "fake_codecs:PerImage"}}, {})
    write_distribution(site, "bench-shadow", {codecs: {"jpeg": "fake_codecs:Shadow"}}, {})
    write_distribution(site, "bench-twin-a", {codecs: {"twin": "fake_codecs:Twin"}}, {})
    write_distribution(site, "bench-twin-b", {codecs: {"twin": "fake_codecs:Twin"}}, {}, version="2.0")
    write_distribution(site, "bench-needy", {codecs: {"needy": "fake_codecs:Needy"}}, {})
    write_distribution(site, "bench-raising", {codecs: {"raising": "fake_codecs:Raising"}}, {})
    return site


# -- the installed example plugins ------------------------------------------------------------


def test_example_plugins_are_installed() -> None:
    from bench.tasks import TASKS

    assert CODECS.origin("jpeg2000-pillow").startswith("distribution bench-jpeg2000 0.1.0")
    assert TASKS.origin("balanced-classification").startswith("distribution bench-balanced 0.1.0")
    assert CODECS.broken() == {} and TASKS.broken() == {}


def test_example_codec_and_task_run_through_bench_run(tmp_path: Path) -> None:
    """JPEG 2000 and balanced accuracy through ``bench run``, over a pool of two workers
    (which rebuild the plugin codec by its name)."""
    grid = small_grid([{"codec": "jpeg2000-pillow", "qualities": [25, 40]}, {"codec": "jpeg", "qualities": [50]}],
                      task="balanced-classification")
    path = write_grid(tmp_path / "g.yaml", grid)
    proc = bench_cli("run", "--grid", path, "--out", tmp_path / "out", "--quiet", "--workers", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lb = pd.read_csv(tmp_path / "out" / "tiny" / "leaderboard.csv")
    assert set(lb.metric) == {"balanced_accuracy", "macro_f1"} and lb.value.between(0, 1).all()
    assert set(lb.task) == {"balanced-classification"}
    j2k = lb[lb.codec == "jpeg2000-pillow"].sort_values("quality")
    assert len(j2k) == 2 * 2 and j2k.quality.tolist() == [25, 25, 40, 40]
    low, high = j2k.groupby("quality").first().loc[[25, 40]].itertuples()
    assert 0 < low.bpp < high.bpp and low.psnr < high.psnr  # a real rate-distortion trade-off
    assert abs(high.psnr - 40) < 3  # the knob is the target PSNR


def test_example_task_takes_part_in_scenario_d(tmp_path: Path) -> None:
    """A third-party task in the compressed domain: D's network comes from the task's
    default (the whole pixel network adapted to read latents) and is scored by the task's
    own metrics."""
    grid = small_grid([{"codec": "bmshj2018-hyperprior", "weights": "embedded", "qualities": [1]}],
                      task="balanced-classification", scenarios=("A", "B", "D"))
    grid["experiments"][0]["compressed_domain"] = {"train": {"epochs": 1, "batch_size": 20, "lr": 0.003}}
    path = write_grid(tmp_path / "g.yaml", grid)
    proc = bench_cli("run", "--grid", path, "--out", tmp_path / "out", "--quiet", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lb = pd.read_csv(tmp_path / "out" / "tiny" / "leaderboard.csv")
    d = lb[lb.scenario == "D:aa"]
    assert set(d.metric) == {"balanced_accuracy", "macro_f1"} and d.value.between(0, 1).all()
    assert d.bpp.iloc[0] == lb[lb.scenario == "B"].bpp.iloc[0]  # the same bitstreams as B


def test_example_codec_is_real_jpeg_2000(kodak_crop: np.ndarray) -> None:
    codec = CODECS.get("jpeg2000-pillow")()
    [stream] = codec.encode([kodak_crop], OperatingPoint(35))
    assert stream[:4] == b"\xff\x4f\xff\x51"  # SOC and SIZ markers: a JPEG 2000 codestream
    [decoded] = codec.decode([stream])
    assert decoded.shape == kodak_crop.shape and decoded.dtype == np.uint8
    assert codec.encode([kodak_crop], OperatingPoint(35)) == [stream]  # deterministic


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_example_task_metrics_are_sklearns() -> None:
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from bench_balanced import balanced_accuracy, macro_f1

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    predicted = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 6, 200))  # one class never true
    assert balanced_accuracy(labels, predicted) == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert macro_f1(labels, predicted) == pytest.approx(f1_score(labels, predicted, average="macro"))


# -- bad plugins break only their own names ------------------------------------------------------


def test_ls_lists_every_plugin_with_what_is_wrong(bad_site: Path, tmp_path: Path) -> None:
    rows = ls_rows(bench_cli("ls", "codecs", site=bad_site, cwd=tmp_path))
    print("\n".join(f"{k}: {v}" for k, v in rows.items()))
    assert rows["broken"] == "broken: ModuleNotFoundError: No module named 'not_a_module_anywhere'"
    assert rows["jpeg-fast"].startswith("broken: registered as 'jpeg-fast' but Fast.name is 'fast'")
    assert rows["perimage"] == ("broken: PerImage.encode(self, image, quality) does not match "
                                "Codec.encode(self, images, point): parameter 1 is 'image', expected 'images'")
    assert rows["jpeg"] == ("broken: given twice, by bench (built-in) and by distribution bench-shadow 0.1 "
                            "(entry point fake_codecs:Shadow); uninstall one")
    assert rows["twin"] == ("broken: given twice, by distribution bench-twin-a 0.1 (entry point fake_codecs:Twin) "
                            "and by distribution bench-twin-b 2.0 (entry point fake_codecs:Twin); uninstall one")
    assert rows["needy"] == "ok  (needs model_path; quality (higher is better) 0..100; version 0.1)"
    assert rows["webp"].startswith("ok") and rows["jpeg2000-pillow"].startswith("ok")


@pytest.mark.parametrize("name, message", [
    ("broken", "codec 'broken' from distribution bench-broken 0.1 (entry point broken_codec:Codec) cannot be used: "
               "ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
    ("jpeg-fast", "codec 'jpeg-fast' from distribution bench-fast 0.1 (entry point fake_codecs:Fast) cannot be used: "
                  "registered as 'jpeg-fast' but Fast.name is 'fast'"),
    ("perimage", "cannot be used: PerImage.encode(self, image, quality) does not match Codec.encode(self, images, point)"),
    ("jpeg", "codec 'jpeg' is given twice, by bench (built-in) and by distribution bench-shadow 0.1"),
    ("twin", "codec 'twin' is given twice, by distribution bench-twin-a 0.1"),
], ids=["broken", "name-mismatch", "wrong-signature", "shadows-built-in", "two-distributions"])
def test_a_bad_plugin_is_one_line_where_the_grid_names_it(bad_site: Path, tmp_path: Path, name: str, message: str) -> None:
    path = write_grid(tmp_path / "g.yaml", small_grid([{"codec": name, "qualities": [50]}]))
    line = error_line(bench_cli("validate", "--grid", path, site=bad_site, cwd=tmp_path))
    print(line)
    assert line.startswith(f"{path}: codecs[0].codec: ") and message in line


def test_jpeg_runs_while_a_broken_plugin_is_installed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_distribution(site, "bench-broken", {"bench.codecs": {"broken": "broken_codec:Codec"}},
                       {"broken_codec": "raise RuntimeError('this plugin is broken')\n"})
    path = write_grid(tmp_path / "g.yaml", small_grid([{"codec": "jpeg", "qualities": [50]}]))
    proc = bench_cli("run", "--grid", path, "--out", tmp_path / "out", "--quiet", "--workers", "1", site=site, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lb = pd.read_csv(tmp_path / "out" / "tiny" / "leaderboard.csv")
    assert set(lb.codec) == {"none", "jpeg"} and len(lb) == 2 * 2


def test_a_codec_raising_in_encode_is_one_line_from_bench_run(bad_site: Path, tmp_path: Path) -> None:
    path = write_grid(tmp_path / "g.yaml", small_grid([{"codec": "raising", "qualities": [50]}], scenarios=("B",)))
    line = error_line(bench_cli("run", "--grid", path, "--out", tmp_path / "out", "--quiet", "--workers", "1",
                                site=bad_site, cwd=tmp_path))
    print(line)
    assert line == "raising: encode failed on image 0 of 1 (32x32x3 uint8): ValueError: libfoo: unsupported sample layout"


# -- the codec base class's checks, in process -------------------------------------------------------


class Flaky(Codec):
    """Fails on the image that is wider than tall, and on streams that start with b"?"."""

    name = "flaky"
    version = "0"
    quality_range = (0, 1)

    def encode(self, images, point):  # noqa: ANN001, ANN201 - a plugin as a user might write it
        return [bytes([im.shape[0] % 256]) + b"." if im.shape[1] <= im.shape[0] else 1 / 0 for im in images]

    def decode(self, streams):  # noqa: ANN001, ANN201
        if any(s.startswith(b"?") for s in streams):
            raise OSError("broken data stream when reading image file\nsecond line")
        return [np.zeros((s[0], s[0], 3), np.uint8) for s in streams]


def test_an_exception_in_encode_names_the_codec_and_the_image() -> None:
    images = [np.zeros((16, 16, 3), np.uint8), np.zeros((16, 24, 3), np.uint8)]
    with pytest.raises(CodecError) as err:
        Flaky().encode(images, OperatingPoint(1))
    assert str(err.value) == "flaky: encode failed on image 1 of 2 (16x24x3 uint8): ZeroDivisionError: division by zero"
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_an_exception_in_decode_names_the_codec_and_the_stream() -> None:
    with pytest.raises(CodecError) as err:
        Flaky().decode([b"\x08.", b"?garbage"])
    assert str(err.value) == ("flaky: decode failed on stream 1 of 2 (8 bytes): "
                              "OSError: broken data stream when reading image file second line")


def test_a_garbage_stream_to_the_example_codec_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match=r"^jpeg2000-pillow: decode failed on stream 0 of 1 \(20 bytes\): UnidentifiedImageError"):
        CODECS.get("jpeg2000-pillow")().decode([b"not a j2k codestream"])


@pytest.mark.parametrize("images, message", [
    (np.zeros((8, 8, 3), np.uint8), "flaky: encode takes a sequence of (H, W, 3) uint8 images, got 8x8x3 uint8"),
    ([np.zeros((8, 8, 3), np.float32)], "flaky: image 0 of 1: expected dtype uint8, got float32"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)], "flaky: image 1 of 2: expected shape (H, W, 3), got (8, 8)"),
], ids=["one-array", "float", "gray"])
def test_encode_input_is_checked_before_the_codec_sees_it(images: object, message: str) -> None:
    with pytest.raises(CodecError) as err:
        Flaky().encode(images, OperatingPoint(1))  # type: ignore[arg-type]
    assert str(err.value) == message


def test_decode_input_and_output_are_checked() -> None:
    with pytest.raises(CodecError, match=r"^flaky: decode failed on stream 0 of 1 \(0 bytes\): IndexError: index out of range$"):
        Flaky().decode([b""])
    with pytest.raises(CodecError, match=r"^flaky stream 1: a stream must be bytes, got str$"):
        Flaky().decode([b"\x08.", "text"])  # type: ignore[list-item]
    with pytest.raises(CodecError, match=r"^flaky: decoding stream 0 gave no image: empty image of shape \(0, 0, 3\)$"):
        Flaky().decode([b"\x00."])


def test_a_codecs_own_codec_error_and_keyboard_interrupt_pass_through() -> None:
    class Own(Flaky):
        def encode(self, images, point):  # noqa: ANN001, ANN201
            raise CodecError("own: libown exited 3")

        def decode(self, streams):  # noqa: ANN001, ANN201
            raise KeyboardInterrupt

    with pytest.raises(CodecError, match=r"^own: libown exited 3$"):
        Own().encode([np.zeros((8, 8, 3), np.uint8)], OperatingPoint(1))
    with pytest.raises(KeyboardInterrupt):
        Own().decode([b"x"])
