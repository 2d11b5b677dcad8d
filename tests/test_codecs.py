"""Traditional codecs on real (small) images, and BPG's program plumbing through a stand-in."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import pytest
from PIL import Image

from bench.codecs import CODECS, Codec, OperatingPoint
from bench.codecs.bpg import BPG
from bench.codecs.heif import HEIC
from bench.errors import CodecError
from bench.metrics.fidelity import psnr
from bench.metrics.rate import bpp

# (registry name, parameters) of every traditional codec that runs in-process.
CASES = [
    ("jpeg", {}),
    ("webp", {}),
    ("avif", {}),
    ("heic", {"chroma": 420}),
    ("heic", {"chroma": 444}),
]
CASE_IDS = [name + "".join(f"-{v}" for v in params.values()) for name, params in CASES]


def make_codec(name: str, params: dict[str, Any]) -> Codec:
    codec = CODECS.get(name)(**params)
    # every one of these ships with the project's dependencies: unavailable is a failure
    assert codec.unavailable_reason() is None, f"{name}: {codec.unavailable_reason()}"
    return codec


@pytest.fixture(params=CASES, ids=CASE_IDS)
def codec(request: pytest.FixtureRequest) -> Codec:
    return make_codec(*request.param)


def middle_quality(codec: Codec) -> OperatingPoint:
    lo, hi = codec.quality_range
    return OperatingPoint((lo + hi) // 2)


# -- every in-process codec --------------------------------------------------------------


@pytest.mark.parametrize("size", [(192, 256), (53, 37), (65, 63)], ids=["192x256", "53x37", "65x63"])
def test_round_trip_keeps_shape_and_dtype(codec: Codec, kodak_crop: np.ndarray, size: tuple[int, int]) -> None:
    h, w = size
    image = np.ascontiguousarray(kodak_crop[:h, :w])
    [stream] = codec.encode([image], middle_quality(codec))
    [decoded] = codec.decode([stream])
    assert isinstance(stream, bytes)
    assert decoded.shape == (h, w, 3) and decoded.dtype == np.uint8
    assert bpp(stream, h, w) == 8 * len(stream) / (h * w)
    assert psnr(image, decoded) > 25  # a real reconstruction, not just the right shape


def test_batches_are_independent(codec: Codec, kodak_crop: np.ndarray) -> None:
    a, b = kodak_crop[:64, :96], kodak_crop[64:, 96:]
    point = middle_quality(codec)
    assert codec.encode([a, b], point) == codec.encode([a], point) + codec.encode([b], point)


def test_psnr_and_size_grow_with_quality(codec: Codec, kodak_crop: np.ndarray) -> None:
    qualities = [15, 50, 90]
    streams = [codec.encode([kodak_crop], OperatingPoint(q))[0] for q in qualities]
    psnrs = [psnr(kodak_crop, codec.decode([s])[0]) for s in streams]
    assert psnrs[0] < psnrs[1] < psnrs[2], psnrs
    assert len(streams[0]) < len(streams[1]) < len(streams[2])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((16, 16, 3), np.float32),
        np.zeros((16, 16), np.uint8),
        np.zeros((16, 16, 4), np.uint8),
        np.zeros((0, 16, 3), np.uint8),
        [[[0, 0, 0]]],
    ],
    ids=["float32", "gray-2d", "rgba", "empty", "list"],
)
def test_invalid_input_is_a_codec_error(codec: Codec, bad: Any) -> None:
    with pytest.raises(CodecError, match=codec.name):
        codec.encode([bad], middle_quality(codec))


def test_quality_out_of_range_is_a_codec_error(codec: Codec, kodak_crop: np.ndarray) -> None:
    with pytest.raises(CodecError, match="outside"):
        codec.encode([kodak_crop], OperatingPoint(codec.quality_range[1] + 1))


def test_bad_streams_are_codec_errors(codec: Codec, kodak_crop: np.ndarray) -> None:
    [stream] = codec.encode([kodak_crop], middle_quality(codec))
    png = io.BytesIO()
    Image.fromarray(kodak_crop).save(png, "PNG")
    for bad in (b"", b"not an image at all" * 8, stream[: len(stream) // 2], png.getvalue()):
        with pytest.raises(CodecError):
            codec.decode([bad])


def test_version_names_the_library(codec: Codec) -> None:
    if codec.name == "heic":
        import pillow_heif

        assert pillow_heif.__version__ in codec.version and pillow_heif.libheif_version() in codec.version
    else:
        assert f"pillow-{PIL.__version__}" in codec.version
    assert codec.identity()["version"] == codec.version


# -- JPEG and WebP are bare Pillow --------------------------------------------------------


@pytest.mark.parametrize("name, pillow_format", [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_same_bytes_and_psnr_as_bare_pillow_on_kodak(
    name: str, pillow_format: str, kodak_images: list[np.ndarray]
) -> None:
    """With default parameters, bench's stream is what a bare ``Image.save`` writes, so its
    bpp and PSNR equal published Pillow numbers (e.g. CompressAI's tables)."""
    codec = make_codec(name, {})
    for quality in (25, 75):
        streams = codec.encode(kodak_images, OperatingPoint(quality))
        decoded = codec.decode(streams)
        for image, stream, ours in zip(kodak_images, streams, decoded, strict=True):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, pillow_format, quality=quality)
            bare = buf.getvalue()
            assert len(stream) == len(bare) and stream == bare
            reference = np.asarray(Image.open(io.BytesIO(bare)).convert("RGB"))
            assert psnr(image, ours) == psnr(image, reference)


def test_jpeg_subsampling_parameter_reaches_pillow(kodak_crop: np.ndarray) -> None:
    point = OperatingPoint(75)
    default, s444 = (make_codec("jpeg", p).encode([kodak_crop], point)[0] for p in ({}, {"subsampling": "4:4:4"}))
    assert len(s444) > len(default)  # 4:2:0 is Pillow's default
    assert Image.open(io.BytesIO(s444)).layer[0][1:3] == (1, 1)  # luma sampled like chroma


# -- HEIC specifics -------------------------------------------------------------------------


def test_heic_stream_has_no_x265_settings_sei(kodak_crop: np.ndarray) -> None:
    """x265 can write ~2 kB of its settings as text into every stream; that is not image
    data. With libheif 1.23 the stream is identical with or without ``x265:info=0`` (libheif
    sets it and also drops user-data SEI), so check the outcome: no x265 text in the stream."""
    codec = make_codec("heic", {})
    [stream] = codec.encode([kodak_crop], OperatingPoint(50))
    assert b"x265" not in stream and b"options:" not in stream
    assert codec.enc_params()["x265:info"] == "0"


def test_heic_x265_parameters_reach_x265(kodak_crop: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """``x265:`` keys are parsed by x265 itself (an unknown one fails), so ``info=0`` is not
    silently ignored."""
    monkeypatch.setattr("bench.codecs.heif.X265_FIXED", {"x265:no-such-option": "1"})
    with pytest.raises(CodecError, match="no-such-option"):
        make_codec("heic", {}).encode([kodak_crop], OperatingPoint(50))


def test_heic_parameters_change_the_stream_and_identity(kodak_crop: np.ndarray) -> None:
    point = OperatingPoint(50)
    codecs = [make_codec("heic", p) for p in ({}, {"chroma": 444}, {"preset": "fast"}, {"tune": "psnr"})]
    streams = {c.encode([kodak_crop], point)[0] for c in codecs}
    assert len(streams) == len(codecs)
    assert len({c.identity_hash() for c in codecs}) == len(codecs)


def test_heic_rejects_unknown_parameters() -> None:
    with pytest.raises(ValueError):
        HEIC(chroma=422)
    with pytest.raises(ValueError):
        HEIC(present="slow")


def _bare_heif(image: np.ndarray, quality: int, enc_params: dict[str, str]) -> bytes:
    """pillow-heif called directly, with the arguments bench's heic codec passes."""
    import pillow_heif

    h, w = image.shape[:2]
    buf = io.BytesIO()
    pillow_heif.encode("RGB", (w, h), image.tobytes(), buf, quality=quality, enc_params=dict(enc_params),
                       save_nclx_profile=True, tile_size=0)
    return buf.getvalue()


@pytest.mark.parametrize("chroma", [420, 444])
def test_heic_defaults_write_what_they_wrote_before_the_x265_options(kodak_crop: np.ndarray, chroma: int) -> None:
    """Unset, the x265 options change neither the stream nor the cache key: the bytes are
    pillow-heif's with the arguments heic passed before the options existed, and the key's
    parameters are the three it had."""
    codec = make_codec("heic", {"chroma": chroma})
    before = {"chroma": str(chroma), "preset": "slow", "tune": "ssim", "x265:info": "0"}
    for quality in (20, 60):
        assert codec.encode([kodak_crop], OperatingPoint(quality))[0] == _bare_heif(kodak_crop, quality, before)
    assert codec.identity()["params"] == {"chroma": chroma, "preset": "slow", "tune": "ssim"}


@pytest.mark.parametrize("params, enc_param", [
    ({"psy_rd": 0}, ("x265:psy-rd", "0")),
    ({"psy_rdoq": 0.5}, ("x265:psy-rdoq", "0.5")),
    ({"aq_mode": 0}, ("x265:aq-mode", "0")),
    ({"tu_intra_depth": 3}, ("tu-intra-depth", "3")),
], ids=["psy_rd", "psy_rdoq", "aq_mode", "tu_intra_depth"])
def test_heic_x265_options_reach_the_encoder(kodak_crop: np.ndarray, params: dict[str, Any],
                                             enc_param: tuple[str, str]) -> None:
    """Each option is the libheif/x265 parameter it names: the stream is pillow-heif's with
    that parameter added, differs from the default's, is the same on every encode, decodes,
    and the option is part of the key."""
    point = OperatingPoint(50)
    default, codec = make_codec("heic", {}), make_codec("heic", params)
    [stream] = codec.encode([kodak_crop], point)
    key, value = enc_param
    assert codec.enc_params() == {**default.enc_params(), key: value}
    assert stream == _bare_heif(kodak_crop, 50, {**default.enc_params(), key: value})
    assert stream != default.encode([kodak_crop], point)[0]
    assert stream == codec.encode([kodak_crop], point)[0]
    [decoded] = codec.decode([stream])
    assert decoded.shape == kodak_crop.shape and psnr(kodak_crop, decoded) > 30
    assert codec.identity_hash() != default.identity_hash()


def test_heic_without_aq_codes_at_a_constant_qp(kodak_crop: np.ndarray) -> None:
    """With aq_mode 0, libheif's CRF (100 - q) / 2 on one intra picture is x265's constant QP:
    the knob steps like BPG's QP (what the class docstring claims)."""
    settings = {"chroma": 444, "psy_rd": 0, "psy_rdoq": 0, "aq_mode": 0}
    codec = make_codec("heic", settings)
    for quality, qp in ((20, 40), (50, 25)):
        [stream] = codec.encode([kodak_crop], OperatingPoint(quality))
        assert stream == _bare_heif(kodak_crop, quality, {**codec.enc_params(), "x265:qp": str(qp)})


@pytest.mark.parametrize("params", [
    {"psy_rd": -1}, {"psy_rd": 6}, {"psy_rdoq": 51}, {"aq_mode": 5}, {"aq_mode": 0.5},
    {"tu_intra_depth": 0}, {"tu_intra_depth": 5}, {"x265": {"qp": "30"}}, {"psy_rd": float("nan")},
], ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_heic_rejects_bad_x265_options_at_construction(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        HEIC(**params)


# -- BPG through a stand-in for bpgenc/bpgdec ----------------------------------------------
#
# libbpg is not installable here, so these tests run a STAND-IN: a small Python script that
# speaks bpgenc's and bpgdec's command lines, checks the arguments it gets, records them and
# "encodes" by wrapping the PNG it is given. It is NOT BPG; it proves the plumbing only
# (argument lists, discovery, temp-file cleanup, error messages).

STANDIN = r'''
import json, os, sys
role = os.path.basename(sys.argv[0])
args = sys.argv[1:]
MAGIC = b"STANDIN-NOT-BPG\n"
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(json.dumps({"role": role, "args": args}) + "\n")
if args == ["-h"]:
    print("BPG Image Encoder version 0.0-standin")
    sys.exit(1)  # like the real bpgenc
if os.environ.get("STANDIN_FAIL") == role:
    sys.stderr.write("some progress\nError: simulated failure\n")
    sys.exit(3)
if role == "bpgenc":
    ok = (len(args) == 9 and args[0] == "-o" and args[2] == "-q" and 0 <= int(args[3]) <= 51
          and args[4] == "-f" and args[5] in ("420", "444") and args[6:8] == ["-b", "8"])
    if not ok:
        sys.exit("bad arguments: " + " ".join(args))
    data = open(args[8], "rb").read()
    if not data.startswith(b"\x89PNG"):
        sys.exit("input is not a PNG")
    if os.environ.get("STANDIN_SILENT") != role:
        open(args[1], "wb").write(MAGIC + data)
else:
    if len(args) != 3 or args[0] != "-o" or not args[1].endswith(".png"):
        sys.exit("bad arguments: " + " ".join(args))
    data = open(args[2], "rb").read()
    if not data.startswith(MAGIC):
        sys.stderr.write("Could not decode image\n")
        sys.exit(1)
    open(args[1], "wb").write(data[len(MAGIC):])
'''


class StandIn:
    """The stand-in programs and what they were called with."""

    def __init__(self, root: Path) -> None:
        self.log = root / "calls.jsonl"
        self.bin = root / "bin"
        self.bin.mkdir()
        for role in ("bpgenc", "bpgdec"):
            path = self.bin / role
            path.write_text(f"#!{sys.executable}\n{STANDIN}")
            path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def calls(self, role: str) -> list[list[str]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c["args"] for c in lines if c["role"] == role and c["args"] != ["-h"]]


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    programs = StandIn(tmp_path)
    monkeypatch.setenv("STANDIN_LOG", str(programs.log))
    monkeypatch.setenv("BENCH_BPGENC", str(programs.bin / "bpgenc"))
    monkeypatch.setenv("BENCH_BPGDEC", str(programs.bin / "bpgdec"))
    return programs


def test_bpg_standin_argument_lists_and_cleanup(standin: StandIn, kodak_crop: np.ndarray) -> None:
    images = [np.ascontiguousarray(kodak_crop[:53, :37]), np.ascontiguousarray(kodak_crop[:48, :64])]
    codec = BPG()
    assert codec.unavailable_reason() is None
    assert codec.version == "bpgenc-0.0-standin"  # read from the stand-in's -h
    streams = codec.encode(images, OperatingPoint(30))
    decoded = codec.decode(streams)
    # the stand-in is lossless, so this is a plumbing check, not a rate-distortion one
    for image, out in zip(images, decoded, strict=True):
        assert np.array_equal(image, out)

    enc_calls, dec_calls = standin.calls("bpgenc"), standin.calls("bpgdec")
    assert [c[:8] for c in enc_calls] == [["-o", c[1], "-q", "30", "-f", "444", "-b", "8"] for c in enc_calls]
    assert len(enc_calls) == 2 and len(dec_calls) == 2
    used = [Path(p) for c in enc_calls + dec_calls for p in (c[1], c[-1])]
    assert all(p.is_absolute() for p in used)
    assert not any(p.parent.exists() for p in used), "temporary directory left behind"


def test_bpg_chroma_420_and_identity_without_paths(standin: StandIn, kodak_crop: np.ndarray) -> None:
    codec = BPG(chroma=420, bpgenc=str(standin.bin / "bpgenc"))
    codec.encode([kodak_crop[:32, :32]], OperatingPoint(0))
    assert standin.calls("bpgenc")[0][2:6] == ["-q", "0", "-f", "420"]
    assert codec.identity() == {"codec": "bpg", "version": "bpgenc-0.0-standin", "params": {"chroma": 420}}
    assert BPG.quality_descending and BPG.quality_range == (0, 51)


@pytest.mark.parametrize("role", ["bpgenc", "bpgdec"])
def test_bpg_program_failure_message_and_cleanup(
    role: str, standin: StandIn, kodak_crop: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = BPG()
    [stream] = codec.encode([kodak_crop[:32, :32]], OperatingPoint(28))
    monkeypatch.setenv("STANDIN_FAIL", role)
    with pytest.raises(CodecError, match=f"^{role} exited 3: Error: simulated failure$"):
        if role == "bpgenc":
            codec.encode([kodak_crop[:32, :32]], OperatingPoint(28))
        else:
            codec.decode([stream])
    call = standin.calls(role)[-1]
    assert not Path(call[-1]).parent.exists(), "temporary directory left behind after a failure"


def test_bpg_garbage_stream(standin: StandIn) -> None:
    with pytest.raises(CodecError, match="^bpgdec exited 1: Could not decode image$"):
        BPG().decode([b"garbage" * 10])
    with pytest.raises(CodecError, match="empty stream"):
        BPG().decode([b""])


def test_bpg_program_without_output(
    standin: StandIn, kodak_crop: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_SILENT", "bpgenc")
    with pytest.raises(CodecError, match="bpgenc exited 0 but wrote no output"):
        BPG().encode([kodak_crop[:32, :32]], OperatingPoint(28))


def test_bpg_bad_input_runs_no_program(standin: StandIn) -> None:
    with pytest.raises(CodecError, match="outside"):
        BPG().encode([np.zeros((16, 16, 3), np.uint8)], OperatingPoint(52))
    with pytest.raises(CodecError, match="dtype"):
        BPG().encode([np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3))], OperatingPoint(28))
    assert standin.calls("bpgenc") == []


def test_bpg_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_BPGENC", raising=False)
    monkeypatch.delenv("BENCH_BPGDEC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: nothing to find
    codec = BPG()
    assert codec.unavailable_reason() == "bpgenc not found (install libbpg: see README)"
    assert codec.version == "unavailable"
    with pytest.raises(CodecError, match="bpgenc not found"):
        codec.encode([np.zeros((16, 16, 3), np.uint8)], OperatingPoint(28))
    with pytest.raises(CodecError, match="bpgenc not found"):
        codec.decode([b"x"])


def test_bpg_decoder_not_found(standin: StandIn, tmp_path: Path) -> None:
    codec = BPG(bpgdec=str(tmp_path / "no-such-bpgdec"))
    assert codec.unavailable_reason() == "bpgdec not found (install libbpg: see README)"


def test_real_bpg_if_installed(kodak_crop: np.ndarray) -> None:
    """Runs only where libbpg is installed (not in this environment)."""
    codec = BPG()
    if codec.unavailable_reason() is not None:
        pytest.skip(codec.unavailable_reason())
    streams = [codec.encode([kodak_crop], OperatingPoint(q))[0] for q in (45, 32, 20)]
    psnrs = [psnr(kodak_crop, codec.decode([s])[0]) for s in streams]
    assert psnrs[0] < psnrs[1] < psnrs[2]
    assert codec.version.startswith("bpgenc-")
