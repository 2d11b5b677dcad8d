"""The ``vtm`` and ``hm`` codecs: their YCbCr hand-off, the picture size read from a stream's
parameter sets, and their program plumbing through stand-ins.

Neither reference software is installable here, so the plumbing tests run STAND-INS: small
Python scripts that speak the encoders' and decoders' command lines, check every argument
(flags, QP range, width and height, chroma format, bit depth, that the cfg exists, that they
run in the temporary folder), check that the YUV file is one planar 4:4:4 picture of the
image's size, and "encode" it the way the real programs are shaped: padded to a multiple of
8 with a conformance window, at a 10-bit internal depth, quantised by a QP-dependent step,
in an Annex B stream whose parameter sets (written to the specification) declare the size.
They are NOT VTM or HM; they prove the argument lists, discovery, size handling, temp-folder
cleanup and error messages. The tests against the real programs run only where they are.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from compressai.transforms.functional import rgb2ycbcr, ycbcr2rgb
from PIL import Image

from bench.codecs import CODECS, OperatingPoint
from bench.codecs.annexb import PictureSize, hevc_picture_size, vvc_picture_size
from bench.codecs.reference_software import HM, VTM
from bench.codecs.yuv import read_yuv444, rgb_to_ycbcr, write_yuv444, ycbcr_to_rgb
from bench.errors import CodecError
from bench.metrics.fidelity import psnr

# -- parameter sets written to the specification (the stand-ins use the same code) --------

WRITER = r'''
def _bits(value, n):
    return [(value >> (n - 1 - i)) & 1 for i in range(n)]


class BitWriter:
    def __init__(self):
        self.bits = []

    def u(self, value, n):
        self.bits += _bits(value, n)

    def ue(self, value):
        v = value + 1
        self.bits += [0] * (v.bit_length() - 1) + _bits(v, v.bit_length())

    def align(self):
        self.bits += [0] * (-len(self.bits) % 8)

    def rbsp(self):
        self.bits.append(1)  # rbsp_stop_one_bit, then alignment zeros
        self.align()
        return bytes(int("".join(map(str, self.bits[i:i + 8])), 2) for i in range(0, len(self.bits), 8))


def nal(header, rbsp):
    """A NAL unit with its start code, emulation prevention bytes inserted."""
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return b"\x00\x00\x00\x01" + bytes(header) + bytes(out)


def window(w, bits):
    bits.u(int(any(w)), 1)
    if any(w):
        for offset in w:
            bits.ue(offset)


def hevc_sps(width, height, win=(0, 0, 0, 0), chroma=3, sub_layers=0, sub_layer_flags=()):
    b = BitWriter()
    b.u(0, 4); b.u(sub_layers, 3); b.u(1, 1)
    b.u(0, 2); b.u(0, 1); b.u(4, 5)              # profile space, tier, idc (RExt)
    b.u(1 << 27, 32)                             # compatibility flags: mostly zeros
    b.u(0b1001, 4); b.u(0, 43); b.u(0, 1); b.u(153, 8)
    flags = list(sub_layer_flags) or [(0, 0)] * sub_layers
    for p, l in flags:
        b.u(p, 1); b.u(l, 1)
    if sub_layers:
        b.u(0, 2 * (8 - sub_layers))
    for p, l in flags:
        if p:
            b.u(0, 88)
        if l:
            b.u(120, 8)
    b.ue(0); b.ue(chroma)
    if chroma == 3:
        b.u(0, 1)
    b.ue(width); b.ue(height)
    window(win, b)
    b.ue(2); b.ue(2)                             # bit depths 10
    return nal((33 << 1, 1), b.rbsp())


def vvc_sps(width, height, win=(0, 0, 0, 0), chroma=3, gci=None, sublayers=0, sublayer_levels=(),
            sub_profiles=0, rpr=False):
    b = BitWriter()
    b.u(0, 4); b.u(0, 4); b.u(sublayers, 3); b.u(chroma, 2); b.u(2, 2); b.u(1, 1)
    b.u(33, 7); b.u(0, 1); b.u(83, 8); b.u(1, 1); b.u(0, 1)
    b.u(int(gci is not None), 1)
    if gci is not None:                          # gci: the number of additional bits
        for i in range(71):
            b.u(i % 3 == 0, 1)
        b.u(gci, 8)
        for i in range(gci):
            b.u(1, 1)
    b.align()
    levels = list(sublayer_levels) or [0] * sublayers
    for present in levels:
        b.u(present, 1)
    b.align()
    for present in levels:
        if present:
            b.u(51, 8)
    b.u(sub_profiles, 8)
    for i in range(sub_profiles):
        b.u(0x01000001 * (i + 1), 32)
    b.u(0, 1); b.u(int(rpr), 1)
    if rpr:
        b.u(0, 1)
    b.ue(width); b.ue(height)
    window(win, b)
    b.u(0, 1); b.ue(2)                           # no subpictures; bit depth 10
    return nal((0, (15 << 3) | 1), b.rbsp())


def vvc_pps(width, height, win=None):
    b = BitWriter()
    b.u(0, 6); b.u(0, 4); b.u(0, 1)
    b.ue(width); b.ue(height)
    window(win or (0, 0, 0, 0), b)
    b.u(0, 1)                                    # no scaling window
    return nal((0, (16 << 3) | 1), b.rbsp())
'''

STANDIN = WRITER + r'''
import base64, json, os, sys, zlib
import numpy as np

role = os.path.basename(sys.argv[0])
args = sys.argv[1:]
VTM = role in ("EncoderAppStatic", "DecoderAppStatic")
ENCODER = role in ("EncoderAppStatic", "TAppEncoderStatic")
record = {"role": role, "args": args, "cwd": os.getcwd()}


def log():
    with open(os.environ["STANDIN_LOG"], "a") as f:
        f.write(json.dumps(record) + "\n")


def bad(why):
    log()
    sys.exit("stand-in: " + why + ": " + " ".join(args))


if args == ["--help"]:
    log()
    print("VVCSoftware: VTM Encoder Version 0.0-standin [Linux]" if VTM
          else "HM software: Encoder Version [0.0-standin] (including RExt)[Linux]")
    sys.exit(1)
if os.environ.get("STANDIN_FAIL") == role:
    log()
    sys.stderr.write("some progress\nError: simulated failure\n")
    sys.exit(1)

PAYLOAD_VTM, PAYLOAD_HM = bytes((0, (28 << 3) | 1)), bytes((48 << 1, 1))  # unspecified NAL types

if ENCODER:
    extra = (["--ConformanceWindowMode=1"] if VTM else
             ["--SEIDecodedPictureHash", "--Level=5.1", "--CUNoSplitIntraACT=0", "--ConformanceMode=1"])
    if len(args) != 20 + len(extra) or args[20:] != extra:
        bad("bad arguments")
    flags = [args[i] for i in range(0, 18, 2)]
    if flags != ["-i", "-c", "-q", "-o", "-b", "-wdt", "-hgt", "-fr", "-f"] or args[14:18] != ["-fr", "1", "-f", "1"]:
        bad("bad flags")
    yuv, cfg, qp, out, width, height = args[1], args[3], int(args[5]), args[9], int(args[11]), int(args[13])
    if args[7] != os.devnull or args[18] != "--InputChromaFormat=444":
        bad("bad recon or chroma format")
    depth = int(args[19].removeprefix("--InputBitDepth="))
    if not args[19].startswith("--InputBitDepth=") or depth not in (8, 10):
        bad("bad bit depth")
    if not 0 <= qp <= (63 if VTM else 51):
        bad("QP out of range")
    if not os.path.isfile(cfg) or "IntraPeriod" not in open(cfg).read():
        bad("no cfg")
    if os.path.dirname(yuv) != os.getcwd() or os.path.dirname(out) != os.getcwd():
        bad("not run in the temporary folder")
    data = open(yuv, "rb").read()
    size = 3 * width * height * (1 if depth == 8 else 2)
    if len(data) != size:
        bad(f"YUV file of {len(data)} bytes, not one {width}x{height} 4:4:4 picture of {size}")
    planes = np.frombuffer(data, np.uint8 if depth == 8 else "<u2").reshape(3, height, width).astype(np.int64)
    if planes.max() >= 1 << depth:
        bad("samples above the bit depth")
    internal = planes << (10 - depth)
    # ConformanceWindowMode=1: pad to a multiple of 8 by repeating the edge, window right/bottom
    pw, ph = -(-width // 8) * 8, -(-height // 8) * 8
    internal = np.pad(internal, ((0, 0), (0, ph - height), (0, pw - width)), mode="edge")
    step = max(1, round(2 ** ((qp - 4) / 6)))
    coded = np.clip(np.rint(internal / step) * step, 0, 1023).astype("<u2")
    header = json.dumps({"w": width, "h": height, "pw": pw, "ph": ph}).encode()
    body = base64.b64encode(header + b"\n" + zlib.compress(coded.tobytes(), 9))
    win = (0, pw - width, 0, ph - height)
    if VTM:
        stream = vvc_sps(pw, ph, win) + vvc_pps(pw, ph) + nal(PAYLOAD_VTM, body)
    else:
        stream = hevc_sps(pw, ph, win) + nal(PAYLOAD_HM, body)
    if os.environ.get("STANDIN_SILENT") != role:
        open(out, "wb").write(stream)
    record["wrote"] = len(stream)
else:
    if len(args) != 6 or [args[0], args[2], args[4]] != ["-b", "-o", "-d"] or args[5] not in ("8", "10"):
        bad("bad arguments")
    src, out, depth = args[1], args[3], int(args[5])
    stream = open(src, "rb").read()
    marker = b"\x00\x00\x01" + (PAYLOAD_VTM if VTM else PAYLOAD_HM)
    if marker not in stream:
        log()
        sys.stderr.write("Error: no picture in the bitstream\n")
        sys.exit(1)
    header, packed = base64.b64decode(stream.split(marker)[1]).split(b"\n", 1)
    h = json.loads(header)
    coded = np.frombuffer(zlib.decompress(packed), "<u2").reshape(3, h["ph"], h["pw"]).astype(np.int64)
    picture = coded[:, :h["h"], :h["w"]]  # the decoder crops the conformance window
    if os.environ.get("STANDIN_BAD_SIZE") == role:
        picture = coded[:, :h["h"] + 1, :h["w"]]
    if depth == 8:
        data = np.clip((picture + 2) >> 2, 0, 255).astype(np.uint8).tobytes()
    else:
        data = picture.astype("<u2").tobytes()
    open(out, "wb").write(data)
log()
'''

ROLES = {"vtm": ("EncoderAppStatic", "DecoderAppStatic"), "hm": ("TAppEncoderStatic", "TAppDecoderStatic")}
CFG_TEXT = "# stand-in intra configuration\nIntraPeriod : 1\nInternalBitDepth : 10\n"


def writer() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(WRITER, namespace)  # noqa: S102 - the test's own source
    return namespace


class StandIns:
    """Stand-in programs for both codecs, a cfg for each, and what the programs were called with."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "calls.jsonl"
        self.bin = root / "bin"
        self.bin.mkdir()
        for role in (*ROLES["vtm"], *ROLES["hm"]):
            path = self.bin / role
            path.write_text(f"#!{sys.executable}\n{STANDIN}")
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        self.cfg = {name: root / f"{name}-intra.cfg" for name in ROLES}
        for path in self.cfg.values():
            path.write_text(CFG_TEXT)

    def records(self, role: str) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [r for r in lines if r["role"] == role and r["args"] != ["--help"]]

    def calls(self, role: str) -> list[list[str]]:
        return [r["args"] for r in self.records(role)]


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIns:
    programs = StandIns(tmp_path)
    monkeypatch.setenv("STANDIN_LOG", str(programs.log))
    for name, (encoder, decoder) in ROLES.items():
        prefix = f"BENCH_{name.upper()}"
        monkeypatch.setenv(f"{prefix}_ENCODER", str(programs.bin / encoder))
        monkeypatch.setenv(f"{prefix}_DECODER", str(programs.bin / decoder))
        monkeypatch.setenv(f"{prefix}_CONFIG", str(programs.cfg[name]))
    return programs


@pytest.fixture(params=["vtm", "hm"])
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def crop(image: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.ascontiguousarray(image[:h, :w])


# -- the codecs through the stand-ins ------------------------------------------------------


def test_round_trip_argument_lists_rate_and_cleanup(name: str, standins: StandIns, kodak_crop: np.ndarray) -> None:
    images = [kodak_crop, crop(kodak_crop, 53, 37)]  # 256x192, and a size that is no multiple of 8
    codec = CODECS.get(name)()
    assert codec.unavailable_reason() is None
    assert codec.version == f"{name}-0.0-standin"  # read from the stand-in's banner
    streams = codec.encode(images, OperatingPoint(0))
    decoded = codec.decode(streams)

    # at QP 0 the stand-in is lossless: what is left is the hand-off, to the bit
    for image, out in zip(images, decoded, strict=True):
        assert out.shape == image.shape
        assert np.array_equal(out, ycbcr_to_rgb(rgb_to_ycbcr(image)))
        assert np.abs(out.astype(int) - image).max() <= 3
    encoder, decoder = ROLES[name]
    enc, dec = standins.records(encoder), standins.records(decoder)
    assert len(enc) == len(dec) == 2
    assert [len(s) for s in streams] == [r["wrote"] for r in enc]  # the rate is the .bin, nothing added
    extra = list(type(codec).extra_encoder_args)
    for record, image in zip(enc, images, strict=True):
        args = record["args"]
        h, w = image.shape[:2]
        assert args == ["-i", args[1], "-c", str(standins.cfg[name]), "-q", "0", "-o", os.devnull,
                        "-b", args[9], "-wdt", str(w), "-hgt", str(h), "-fr", "1", "-f", "1",
                        "--InputChromaFormat=444", "--InputBitDepth=8", *extra]
    assert [r["args"][4:] for r in dec] == [["-d", "8"]] * 2
    used = [Path(p) for r in enc + dec for p in (r["args"][1], r["args"][3] if r in dec else r["args"][9])]
    assert all(p.is_absolute() for p in used)
    assert not any(p.parent.exists() for p in used), "temporary directory left behind"
    assert all(Path(r["cwd"]) == Path(r["args"][1]).parent for r in enc + dec)


def test_the_extra_arguments_are_compressais(standins: StandIns) -> None:
    assert VTM.extra_encoder_args == ("--ConformanceWindowMode=1",)
    assert HM.extra_encoder_args == ("--SEIDecodedPictureHash", "--Level=5.1", "--CUNoSplitIntraACT=0",
                                     "--ConformanceMode=1")
    assert (VTM.quality_range, HM.quality_range) == ((0, 63), (0, 51))
    assert VTM.quality_descending and HM.quality_descending


def test_qp_reaches_the_encoder(name: str, standins: StandIns, kodak_crop: np.ndarray) -> None:
    codec = CODECS.get(name)()
    qps = [0, 22, 37, 51]
    streams = [codec.encode([kodak_crop], OperatingPoint(q))[0] for q in qps]
    assert [c[5] for c in standins.calls(ROLES[name][0])] == [str(q) for q in qps]
    sizes = [len(s) for s in streams]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    psnrs = [psnr(kodak_crop, codec.decode([s])[0]) for s in streams]
    assert psnrs == sorted(psnrs, reverse=True)


def test_ten_bit_hand_off_is_lossless(name: str, standins: StandIns, kodak_crop: np.ndarray) -> None:
    codec = CODECS.get(name)(bit_depth=10)
    image = crop(kodak_crop, 61, 45)
    [stream] = codec.encode([image], OperatingPoint(0))
    [decoded] = codec.decode([stream])
    assert np.array_equal(decoded, image)
    encoder, decoder = ROLES[name]
    assert standins.calls(encoder)[0][19] == "--InputBitDepth=10"
    assert standins.calls(decoder)[0][4:] == ["-d", "10"]
    assert codec.identity()["params"] == {"bit_depth": 10}


@pytest.mark.parametrize("step", ["encoder", "decoder"])
def test_a_failing_program_is_its_last_line_and_leaves_no_folder(
    name: str, step: str, standins: StandIns, kodak_crop: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = CODECS.get(name)()
    image = crop(kodak_crop, 32, 40)
    [stream] = codec.encode([image], OperatingPoint(30))
    role = ROLES[name][step == "decoder"]
    monkeypatch.setenv("STANDIN_FAIL", role)
    with pytest.raises(CodecError, match=f"^{role} exited 1: Error: simulated failure$"):
        if step == "encoder":
            codec.encode([image], OperatingPoint(30))
        else:
            codec.decode([stream])
    assert not Path(standins.records(role)[-1]["args"][1]).parent.exists(), "temporary directory left behind"


def test_a_decoded_picture_of_another_size_is_an_error(
    name: str, standins: StandIns, kodak_crop: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = CODECS.get(name)()
    [stream] = codec.encode([crop(kodak_crop, 53, 37)], OperatingPoint(30))
    decoder = ROLES[name][1]
    monkeypatch.setenv("STANDIN_BAD_SIZE", decoder)
    with pytest.raises(CodecError, match=f"^{decoder} wrote 5994 bytes, expected 5883 for one 37x53 "
                                         "4:4:4 8-bit picture$"):
        codec.decode([stream])


def test_an_encoder_without_output(
    name: str, standins: StandIns, kodak_crop: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = ROLES[name][0]
    monkeypatch.setenv("STANDIN_SILENT", encoder)
    with pytest.raises(CodecError, match=f"^{encoder} exited 0 but wrote no output$"):
        CODECS.get(name)().encode([crop(kodak_crop, 16, 16)], OperatingPoint(30))


def test_garbage_and_empty_streams_run_no_decoder(name: str, standins: StandIns) -> None:
    codec = CODECS.get(name)()
    kind = "VVC" if name == "vtm" else "HEVC"
    with pytest.raises(CodecError, match=f"^{name} stream 0: no {kind} sequence parameter set"):
        codec.decode([b"garbage" * 10])
    with pytest.raises(CodecError, match="empty stream"):
        codec.decode([b""])
    assert standins.calls(ROLES[name][1]) == []


def test_a_stream_that_is_not_444_is_an_error(standins: StandIns) -> None:
    w = writer()
    stream = w["vvc_sps"](64, 64, chroma=1) + w["vvc_pps"](64, 64)
    with pytest.raises(CodecError, match="chroma_format_idc 1, not 4:4:4"):
        VTM().decode([stream])


def test_bad_quality_runs_no_program(name: str, standins: StandIns) -> None:
    codec = CODECS.get(name)()
    top = codec.quality_range[1]
    with pytest.raises(CodecError, match="outside"):
        codec.encode([np.zeros((16, 16, 3), np.uint8)], OperatingPoint(top + 1))
    assert standins.calls(ROLES[name][0]) == []
    codec.encode([np.zeros((16, 16, 3), np.uint8)], OperatingPoint(top))


def test_identity_has_the_cfg_content_not_the_paths(name: str, standins: StandIns, tmp_path: Path) -> None:
    codec = CODECS.get(name)()
    identity = codec.identity()
    assert identity["params"] == {"bit_depth": 8}
    assert identity["version"] == f"{name}-0.0-standin" and identity["handoff"] == 1
    assert identity["config"].startswith("sha256:")
    # the same programs and cfg elsewhere: the same identity
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    encoder, decoder = ROLES[name]
    for role in (encoder, decoder):
        os.link(standins.bin / role, moved / role)
    (moved / "same.cfg").write_text(CFG_TEXT)
    same = CODECS.get(name)(encoder=str(moved / encoder), decoder=str(moved / decoder), config=str(moved / "same.cfg"))
    assert same.identity() == identity
    # another cfg content: another identity
    (moved / "other.cfg").write_text(CFG_TEXT + "SAO : 0\n")
    assert CODECS.get(name)(config=str(moved / "other.cfg")).identity_hash() != codec.identity_hash()


def test_the_cfg_is_found_in_the_encoders_source_tree(
    name: str, standins: StandIns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "cfg").mkdir()
    encoder = ROLES[name][0]
    (tree / "bin" / encoder).symlink_to(standins.bin / encoder)  # resolved to the stand-ins' folder
    cls = CODECS.get(name)
    monkeypatch.delenv(f"BENCH_{name.upper()}_CONFIG")
    monkeypatch.setenv(f"BENCH_{name.upper()}_ENCODER", str(tree / "bin" / encoder))
    assert cls().unavailable_reason() == (f"{cls.config_name} not found (set the config parameter or "
                                          f"$BENCH_{name.upper()}_CONFIG: see README)")
    (tree / "bin" / encoder).unlink()
    os.link(standins.bin / encoder, tree / "bin" / encoder)
    (tree / "cfg" / cls.config_name).write_text(CFG_TEXT)
    codec = cls()
    assert codec.unavailable_reason() is None
    assert codec.config == tree / "cfg" / cls.config_name
    codec.encode([np.zeros((8, 8, 3), np.uint8)], OperatingPoint(30))
    assert standins.calls(encoder)[0][3] == str(tree / "cfg" / cls.config_name)
    assert cls(config=str(tmp_path / "nowhere.cfg")).unavailable_reason() == (
        f"config file {tmp_path / 'nowhere.cfg'} not found")


def test_not_installed(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ENCODER", "DECODER", "CONFIG"):
        monkeypatch.delenv(f"BENCH_{name.upper()}_{var}", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: nothing to find
    codec = CODECS.get(name)()
    encoder, decoder = ROLES[name]
    label = name.upper()
    assert codec.unavailable_reason() == f"{encoder} not found (install {label}: see README)"
    assert codec.version == "unavailable"
    with pytest.raises(CodecError, match=f"^{name}: {encoder} not found"):
        codec.encode([np.zeros((16, 16, 3), np.uint8)], OperatingPoint(30))
    with pytest.raises(CodecError, match=f"^{name}: {encoder} not found"):
        codec.decode([b"x"])
    program = tmp_path / encoder
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    assert CODECS.get(name)().unavailable_reason() == f"{decoder} not found (install {label}: see README)"


# -- the hand-off --------------------------------------------------------------------------


def compressai_forward(image: np.ndarray) -> np.ndarray:
    """CompressAI's utils/bench VTM/HM conversion, line for line."""
    rgb = torch.from_numpy(image.transpose(2, 0, 1).copy()).float() / 255
    return (np.clip(rgb2ycbcr(rgb).numpy(), 0, 1) * 255).astype(np.uint8)


def test_the_8_bit_hand_off_is_compressais_bytes(kodak_images: list[np.ndarray]) -> None:
    for image in kodak_images:
        planes = rgb_to_ycbcr(image, 8)
        assert planes.dtype == np.uint8 and planes.shape == (3, *image.shape[:2])
        assert np.array_equal(planes, compressai_forward(image))
    # and back: CompressAI's float inverse, rounded where CompressAI truncates
    planes = rgb_to_ycbcr(kodak_images[0], 8)
    theirs = ycbcr2rgb(torch.from_numpy(planes.astype(np.float32) / 255)).numpy()
    expected = np.rint(np.clip(theirs, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.array_equal(ycbcr_to_rgb(planes, 8), expected)


def test_the_hand_off_round_trip(kodak_images: list[np.ndarray]) -> None:
    errors, psnrs = [], []
    for image in kodak_images:
        assert np.array_equal(ycbcr_to_rgb(rgb_to_ycbcr(image, 10), 10), image)  # 10 bits: exact
        back = ycbcr_to_rgb(rgb_to_ycbcr(image, 8), 8)
        errors.append(int(np.abs(back.astype(int) - image).max()))
        psnrs.append(psnr(image, back))
    # 8 bits truncated as CompressAI does: up to 3 levels (R and B take 1.6 and 1.9 Cr / Cb steps)
    assert max(errors) == 3
    assert 46.3 < float(np.mean(psnrs)) < 46.5  # the figure the docstrings quote


def test_every_rgb_value_round_trips_within_the_bounds() -> None:
    # all 2^24 colours would be 50 MB of planes; a 4096x4096 image of them is the same
    values = np.arange(1 << 24, dtype=np.uint32)
    image = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], -1).astype(np.uint8)
    image = image.reshape(4096, 4096, 3)
    assert np.array_equal(ycbcr_to_rgb(rgb_to_ycbcr(image, 10), 10), image)
    assert np.abs(ycbcr_to_rgb(rgb_to_ycbcr(image, 8), 8).astype(int) - image).max() == 3


def test_yuv_files_are_planar_and_little_endian(tmp_path: Path) -> None:
    planes = np.arange(3 * 2 * 5, dtype=np.uint16).reshape(3, 2, 5) * 33
    write_yuv444(tmp_path / "p.yuv", planes)
    data = (tmp_path / "p.yuv").read_bytes()
    assert data[:4] == bytes([0, 0, 33, 0]) and len(data) == 60
    assert np.array_equal(read_yuv444(data, 2, 5, 10, "dec"), planes)
    with pytest.raises(CodecError, match="^dec wrote 60 bytes, expected 90 for one 5x3 4:4:4 10-bit picture$"):
        read_yuv444(data, 3, 5, 10, "dec")
    with pytest.raises(CodecError, match="above 10 bits"):
        read_yuv444(np.full(30, 1024, "<u2").tobytes(), 2, 5, 10, "dec")


# -- the picture size from the parameter sets ---------------------------------------------


def _hvcc_stream(heif: bytes) -> bytes:
    """The parameter sets of a HEIF file's hvcC box, as an Annex B stream."""
    record = heif[heif.index(b"hvcC") + 4:]
    pos, units = 23, []
    for _ in range(record[22]):
        count = int.from_bytes(record[pos + 1:pos + 3], "big")
        pos += 3
        for _ in range(count):
            length = int.from_bytes(record[pos:pos + 2], "big")
            units.append(record[pos + 2:pos + 2 + length])
            pos += 2 + length
    return b"".join(b"\x00\x00\x00\x01" + u for u in units)


@pytest.mark.parametrize("chroma", ["420", "444"])
@pytest.mark.parametrize("size", [(150, 203), (37, 53), (64, 64)])
def test_hevc_size_of_real_x265_streams(chroma: str, size: tuple[int, int]) -> None:
    """x265 (through libheif) pads to its coding block size and writes a conformance window;
    the size after it is the one libheif records in its ispe box."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    h, w = size
    image = Image.fromarray(np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", quality=50, chroma=chroma)
    heif = buffer.getvalue()
    ispe = heif.index(b"ispe") + 8
    expected = (int.from_bytes(heif[ispe:ispe + 4], "big"), int.from_bytes(heif[ispe + 4:ispe + 8], "big"))
    found = hevc_picture_size(_hvcc_stream(heif))
    assert (found.width, found.height) == expected
    assert found.chroma_format_idc == (1 if chroma == "420" else 3)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, (61, 45)),
    ({"sub_layers": 2, "sub_layer_flags": [(1, 1), (0, 1)]}, (61, 45)),
    ({"chroma": 1, "win": (0, 1, 0, 2)}, (62, 44)),
])
def test_hevc_size_through_the_specifications_branches(kwargs: dict[str, Any], expected: tuple[int, int]) -> None:
    win = kwargs.pop("win", (0, 3, 0, 3))
    size = hevc_picture_size(writer()["hevc_sps"](64, 48, win, **kwargs) + b"\x00\x00\x01\x26\x01slice")
    assert (size.width, size.height) == expected


@pytest.mark.parametrize(("sps", "pps", "expected"), [
    ({}, {}, PictureSize(61, 45, 3)),                                      # the window inferred from the SPS
    ({"gci": 0}, {}, PictureSize(61, 45, 3)),
    ({"gci": 13, "sub_profiles": 2}, {}, PictureSize(61, 45, 3)),
    ({"sublayers": 3, "sublayer_levels": [1, 0, 1]}, {}, PictureSize(61, 45, 3)),
    ({"rpr": True}, {"win": (1, 2, 0, 1)}, PictureSize(61, 47, 3)),        # the PPS's own window
    ({"chroma": 1}, {}, PictureSize(58, 42, 1)),                           # offsets in chroma samples
])
def test_vvc_size_through_the_specifications_branches(
    sps: dict[str, Any], pps: dict[str, Any], expected: PictureSize
) -> None:
    w = writer()
    stream = w["vvc_sps"](64, 48, (0, 3, 0, 3), **sps) + w["vvc_pps"](64, 48, **pps)
    assert vvc_picture_size(stream) == expected


def test_a_smaller_vvc_picture_has_no_inferred_window() -> None:
    w = writer()
    assert vvc_picture_size(w["vvc_sps"](64, 48, (0, 3, 0, 3), rpr=True) + w["vvc_pps"](32, 24)) == PictureSize(32, 24, 3)


def test_broken_parameter_sets_are_codec_errors() -> None:
    w = writer()
    sps = w["hevc_sps"](64, 48)
    with pytest.raises(CodecError, match="HEVC sequence parameter set ends early"):
        hevc_picture_size(sps[:12])
    with pytest.raises(CodecError, match="no VVC picture parameter set"):
        vvc_picture_size(w["vvc_sps"](64, 48))
    with pytest.raises(CodecError, match="leaves no picture"):
        hevc_picture_size(w["hevc_sps"](8, 8, (0, 8, 0, 0)))


# -- the real programs, where they are installed -----------------------------------------


@pytest.mark.parametrize("codec_name", ["vtm", "hm"])
def test_real_program_if_installed(codec_name: str, kodak_crop: np.ndarray) -> None:
    """Runs only where VTM / HM is installed and its cfg found (not in this environment)."""
    codec = CODECS.get(codec_name)()
    if codec.unavailable_reason() is not None:
        pytest.skip(codec.unavailable_reason())
    image = crop(kodak_crop, 61, 83)
    streams = [codec.encode([image], OperatingPoint(q))[0] for q in (42, 32, 22)]
    decoded = codec.decode(streams)
    assert all(d.shape == image.shape for d in decoded)
    assert len(streams[0]) < len(streams[1]) < len(streams[2])
    psnrs = [psnr(image, d) for d in decoded]
    assert psnrs[0] < psnrs[1] < psnrs[2]
    size = type(codec).picture_size(streams[0])
    assert (size.width, size.height, size.chroma_format_idc) == (83, 61, 3)
