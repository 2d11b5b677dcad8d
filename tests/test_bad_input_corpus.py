"""The bad-input corpus: every case is one line on stderr naming the culprit, exit status 2
and nothing stored; odd but valid images run.

Cases are built in a temporary folder from the table below (so the corpus is the table):
image files a photo folder may hold, and grid files a user may write.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.codecs import CODECS
from tests.helpers import bench, tiny_grid, write_grid
from tests.test_bad_input import one_error_line, photo_folder, photo_grid, stored_cells


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def _bomb() -> bytes:
    """A valid PNG header for a 40000 × 40000 image (1.6 gigapixels) and one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


GOOD = _png(np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8))

#: (case, file name, bytes, expected message after "bench: error: <path>: ")
BAD_IMAGES: list[tuple[str, str, bytes, str]] = [
    ("empty file", "empty.png", b"", "empty file"),
    ("truncated PNG", "half.png", GOOD[: len(GOOD) // 2], "corrupt or truncated image (image file is truncated)"),
    ("garbage with a PNG name", "noise.png", b"\x89PNG not really", "not a readable image"),
    ("text named .jpg", "notes.jpg", b"these are notes, not a photograph\n", "not a readable image"),
    ("truncated JPEG", "cut.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "corrupt or truncated image (Truncated File Read)"),
    ("decompression bomb", "bomb.png", _bomb(),
     "too many pixels for a safe decode (Image size (1600000000 pixels) exceeds limit of 178956970 pixels, "
     "could be decompression bomb DOS attack.)"),
    ("name with spaces", "my holiday photo.png", b"", "empty file"),
    ("name with quotes", "it's \"fine\".png", b"", "empty file"),
    ("name with a leading dash", "-rf.png", b"", "empty file"),
    ("non-ASCII name", "été ☀.png", b"", "empty file"),
]



def _jpeg(array: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


_RGB = np.random.default_rng(2).integers(0, 255, (37, 53, 3), dtype=np.uint8)

#: Odd but valid images: decoded to RGB 8-bit and coded like any other.
ODD_IMAGES: list[tuple[str, str, bytes]] = [
    ("CMYK JPEG", "cmyk.jpg", _jpeg(_RGB, "CMYK")),
    ("16-bit grayscale PNG", "deep.png", _png((np.arange(37 * 53, dtype=np.uint16).reshape(37, 53) * 30))),
    ("1×1 pixel", "dot.png", _png(np.full((1, 1, 3), 200, np.uint8))),
    ("odd dimensions 37×53", "odd.png", _png(_RGB)),
    ("RGBA with transparency", "alpha.png", _png(np.dstack([_RGB, np.full((37, 53), 90, np.uint8)]))),
    ("palette PNG", "palette.png", (lambda b: (Image.fromarray(_RGB).convert("P").save(b, format="PNG"), b.getvalue())[1])(io.BytesIO())),
]


@pytest.mark.parametrize("case,name,data,message", BAD_IMAGES, ids=[c[0] for c in BAD_IMAGES])
def test_bad_image(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, name: str, data: bytes,
                   message: str) -> None:
    folder = photo_folder(tmp_path)
    (folder / name).write_bytes(data)
    grid = write_grid(tmp_path / "g.yaml", photo_grid(folder))
    assert bench("run", "--grid", grid, "--out", tmp_path / "out", "--quiet") == 2
    assert one_error_line(capsys) == f"bench: error: {folder / name}: {message}"
    assert stored_cells(tmp_path / "out", "photos") == 0


@pytest.mark.parametrize("case,name,data", ODD_IMAGES, ids=[c[0] for c in ODD_IMAGES])
def test_odd_but_valid_image_runs(tmp_path: Path, case: str, name: str, data: bytes) -> None:
    from bench.images import load_image

    folder = photo_folder(tmp_path, n=1)
    (folder / name).write_bytes(data)
    image = load_image(folder / name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    grid = write_grid(tmp_path / "g.yaml", photo_grid(folder))
    assert bench("run", "--grid", grid, "--out", tmp_path / "out", "--quiet") == 0
    assert stored_cells(tmp_path / "out", "photos") == 1


def _grid(change: Callable[[dict], object]) -> str:
    import yaml

    grid = tiny_grid()
    change(grid)
    return yaml.safe_dump(grid, sort_keys=False)


def _known(registry: str) -> str:
    from bench.datasets import DATASETS
    from bench.models import MODELS
    from bench.scenarios import SCENARIOS
    from bench.tasks import TASKS

    reg = {"codec": CODECS, "task": TASKS, "model": MODELS, "dataset": DATASETS, "scenario": SCENARIOS}[registry]
    return ", ".join(reg.names())


#: (case, grid file content, expected message after "bench: error: <grid file>: ")
BAD_GRIDS: list[tuple[str, str | bytes, str | Callable[[], str]]] = [
    ("broken YAML", "name: x\ncodecs: [jpeg\n", "line 3, column 1: invalid YAML (expected ',' or ']', but got '<stream end>')"),
    ("tab indentation", "name: x\n\tcodecs: []\n", "line 2, column 1: invalid YAML (found character '\\t' that cannot start any token)"),
    ("a list, not a mapping", "- codec: jpeg\n", "<top>: expected a mapping of keys, got list"),
    ("an empty file", "", "<top>: the grid is empty"),
    ("not UTF-8", b"\xff\xfe\x00name", "cannot read grid file: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    ("unknown codec", _grid(lambda d: d["codecs"][0].update(codec="jpg")),
     lambda: f"codecs[0].codec: Unknown codec 'jpg'. Did you mean: jpeg? Known: {_known('codec')}."),
    ("unknown task", _grid(lambda d: d["experiments"][0].update(task="clasification")),
     lambda: f"experiments[0].task: Unknown task 'clasification'. Did you mean: classification, balanced-classification? Known: {_known('task')}."),
    ("unknown model", _grid(lambda d: d["experiments"][0]["model"].update(name="resnet5O")),
     lambda: f"experiments[0].model.name: Unknown model 'resnet5O'. Known: {_known('model')}."),
    ("unknown dataset", _grid(lambda d: d["experiments"][0]["dataset"].update(name="shape")),
     lambda: f"experiments[0].dataset.name: Unknown dataset 'shape'. Did you mean: shapes? Known: {_known('dataset')}."),
    ("unknown scenario", _grid(lambda d: d["experiments"][0].update(scenarios=["A", "E"])),
     lambda: f"experiments[0].scenarios[1]: Unknown scenario 'E'. Known: {_known('scenario')}."),
    ("qualities not a list", _grid(lambda d: d["codecs"][0].update(qualities="high")),
     "codecs[0].qualities: Input should be a valid list (got 'high')"),
    ("quality out of range", _grid(lambda d: d["codecs"][0].update(qualities=[5, 101])),
     "codecs[0].qualities[1]: 101 is outside jpeg's quality (higher is better) range 0..100"),
    ("unknown codec parameter", _grid(lambda d: d["codecs"][0].update(subsampling_mode=1)),
     "codecs[0].subsampling_mode: unknown key. Did you mean: subsampling?"),
    ("epochs zero", _grid(lambda d: d["experiments"][0]["train"].update(epochs=0)),
     "experiments[0].train.epochs: Input should be greater than or equal to 1 (got 0)"),
    ("lr a string", _grid(lambda d: d["experiments"][0]["train"].update(lr="fast")),
     "experiments[0].train.lr: Input should be a valid number, unable to parse string as a number (got 'fast')"),
    ("no experiments", _grid(lambda d: d.pop("experiments")), "experiments: required key is missing"),
    ("negative target", _grid(lambda d: d.update(targets_bpp=[-0.5])),
     "targets_bpp[0]: a target must be above 0 and at most 24 bpp (got -0.5)"),
    ("a grid name that leaves the output folder", _grid(lambda d: d.update(name="../escape")),
     "name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$' (got '../escape')"),
]


@pytest.mark.parametrize("case,text,message", BAD_GRIDS, ids=[c[0] for c in BAD_GRIDS])
def test_bad_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, text: str | bytes,
                  message: str | Callable[[], str]) -> None:
    path = tmp_path / "g.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert bench("run", "--grid", path, "--out", tmp_path / "out", "--quiet") == 2
    expected = message() if callable(message) else message
    assert one_error_line(capsys) == f"bench: error: {path}: {expected}"
    assert not (tmp_path / "out").exists()  # refused before any work: nothing written


def test_the_corpus_has_at_least_25_bad_inputs() -> None:
    """With the cases of tests/test_bad_input.py (missing or file-not-folder, empty folder,
    unwritable output, missing bpgenc, bad devices, an unknown name through the console
    script), the corpus well exceeds the 25 the project asks for."""
    assert len(BAD_IMAGES) + len(BAD_GRIDS) >= 25
