"""VVC and HEVC intra coding through their reference software: VTM (``EncoderAppStatic`` /
``DecoderAppStatic``) and HM (``TAppEncoderStatic`` / ``TAppDecoderStatic``).

Both are driven as CompressAI's ``compressai.utils.bench`` drives them (its ``VTM`` and
``HM`` classes), so that the streams, and with them the rates, are the ones behind
CompressAI's published VTM curve:

- the RGB image becomes a planar 4:4:4 YCbCr file, BT.709 full range, 8-bit by default,
  with CompressAI's very arithmetic (``bench.codecs.yuv``);
- the encoder codes it as one intra picture with the intra configuration file
  (``encoder_intra_vtm.cfg`` / ``encoder_intra_main_rext.cfg``) and CompressAI's
  arguments: ``-i YUV -c CFG -q QP -o /dev/null -b BIN -wdt W -hgt H -fr 1 -f 1
  --InputChromaFormat=444 --InputBitDepth=8``, then ``--ConformanceWindowMode=1`` for VTM and
  ``--SEIDecodedPictureHash --Level=5.1 --CUNoSplitIntraACT=0 --ConformanceMode=1`` for HM;
- the decoder writes the picture back (``-b BIN -o YUV -d 8``), which becomes RGB again.

The rate is the length of the ``.bin`` file the encoder wrote, nothing added. Any width and
height work: ``ConformanceWindowMode=1`` (HM: its alias ``ConformanceMode``) pads the picture
to a multiple of 8 and records a conformance window, which the decoder crops away again.

Where this deviates from CompressAI, and why:

- ``decode`` gets the bytes alone, so the picture size to read the decoder's raw output
  with comes from the stream's own parameter sets (``bench.codecs.annexb``), and an output of
  any other size is an error (CompressAI reshapes to the input's size).
- Back to RGB, samples are rounded to the nearest level, where CompressAI truncates. No
  stream changes; the decoded image is closer to the original (the round trip of the
  hand-off alone: 46.4 dB on Kodak instead of 43.7 dB).
- ``bit_depth: 10`` is an option CompressAI does not have: a 10-bit hand-off
  (``--InputBitDepth=10``, ``-d 10``, the internal depth of both configuration files) that
  gives the RGB image back exactly, at the price of streams that differ from CompressAI's.
- Only the rates compare with CompressAI's published VTM curve, not the PSNR: that was
  measured (by the CompressAI version that made the curve) between the 8-bit YCbCr input and
  the decoded planes, both turned to RGB in float, so it leaves out what the hand-off costs.
  ``bench`` measures the decoded 8-bit RGB image against the original, as for every codec.
  CompressAI's own script today (truncating both ways, 8-bit RGB against the original) gives
  43.1 dB at QP 12 where the curve says 46.6 dB, at the same bpp (CompressAI issue #210).
- The programs run in the temporary folder, and the configuration file's content (not its
  path) is part of the codec's identity: a cfg is the encoder's settings.

Programs are found through the ``encoder`` / ``decoder`` parameters, else
``$BENCH_VTM_ENCODER`` / ``$BENCH_VTM_DECODER`` (HM: ``$BENCH_HM_...``), else on ``PATH``.
The configuration file is the ``config`` parameter, else ``$BENCH_VTM_CONFIG`` (HM:
``$BENCH_HM_CONFIG``), else the one in the source tree the encoder was built in
(``<tree>/bin/EncoderAppStatic`` → ``<tree>/cfg/encoder_intra_vtm.cfg``): none is shipped,
because the reference software rejects unknown keys and renames keys between versions, so a
cfg only fits the programs of its own tag.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from bench.codecs.annexb import PictureSize, hevc_picture_size, vvc_picture_size
from bench.codecs.base import Codec, CodecParams, OperatingPoint
from bench.codecs.programs import TIMEOUT_S, file_sha256, find_program, program_version, read_output, run_program
from bench.codecs.yuv import read_yuv444, rgb_to_ycbcr, write_yuv444, ycbcr_to_rgb
from bench.errors import CodecError

#: The version of this module's hand-off (conversion, file layout, arguments): part of the
#: identity, so that changing it changes every key that depends on the streams.
HANDOFF_VERSION = 1

#: Seconds of encoding allowed per pixel (at least ``TIMEOUT_S``): VTM at low QP takes about
#: 0.7 ms per pixel on a fast core; this is a hang detector, not a budget.
ENCODE_S_PER_PIXEL = 5e-3


class ReferenceSoftwareParams(CodecParams):
    """Parameters of the ``vtm`` and ``hm`` codecs."""

    #: Bits per sample of the YCbCr hand-off: 8 is CompressAI's; 10 is lossless for RGB.
    bit_depth: Literal[8, 10] = 8
    #: The encoder's configuration file; None: $BENCH_<CODEC>_CONFIG, else the cfg folder of
    #: the source tree the encoder lives in.
    config: str | None = None
    #: Encoder program name or path; None: $BENCH_<CODEC>_ENCODER, else the program on PATH.
    encoder: str | None = None
    #: Decoder program name or path; None: $BENCH_<CODEC>_DECODER, else the program on PATH.
    decoder: str | None = None


class _ReferenceSoftware(Codec):
    """What VTM and HM share; a subclass names its programs, its cfg and its extra arguments."""

    Params = ReferenceSoftwareParams
    quality_meaning = "QP (lower is better)"
    quality_descending = True

    #: Program names on PATH, the environment variables' prefix and the intra cfg's name.
    encoder_program: ClassVar[str]
    decoder_program: ClassVar[str]
    env_prefix: ClassVar[str]
    config_name: ClassVar[str]
    install_hint: ClassVar[str]
    #: Encoder arguments after CompressAI's common ones.
    extra_encoder_args: ClassVar[tuple[str, ...]]
    #: The cropped picture size a stream of this codec declares.
    picture_size: ClassVar[Callable[[bytes], PictureSize]]
    #: How the encoder names its version: arguments, a pattern whose group 1 is the
    #: version, and the name to put before it.
    version_probe: ClassVar[tuple[tuple[str, ...], str, str]]

    params: ReferenceSoftwareParams

    def __init__(self, params: CodecParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.encoder = find_program(self.params.encoder, f"{self.env_prefix}_ENCODER", self.encoder_program)
        self.decoder = find_program(self.params.decoder, f"{self.env_prefix}_DECODER", self.decoder_program)
        self.config, self._config_problem = self._find_config()
        # The version belongs to the program this instance runs, which the parameters or
        # the environment may choose, so it shadows the class attribute.
        self.version = self.encoder_version(self.encoder)  # type: ignore[misc]

    @classmethod
    def encoder_version(cls, encoder: str | None) -> str:
        """``<name>-<version>`` from the encoder's banner; a hash of the binary without one."""
        return program_version(encoder, *cls.version_probe)

    def _find_config(self) -> tuple[Path | None, str | None]:
        named = self.params.config or os.environ.get(f"{self.env_prefix}_CONFIG")
        if named:
            path = Path(named)
            return (path, None) if path.is_file() else (None, f"config file {named} not found")
        if self.encoder is not None:
            beside = Path(self.encoder).resolve().parent.parent / "cfg" / self.config_name
            if beside.is_file():
                return beside, None
        return None, (f"{self.config_name} not found (set the config parameter or "
                      f"${self.env_prefix}_CONFIG: see README)")

    def identity(self) -> dict[str, Any]:
        # Where the programs and the cfg live is not what they produce: the encoder's
        # version and the cfg's content stand for them.
        identity = super().identity()
        identity["params"] = self.params.model_dump(mode="json", exclude={"config", "encoder", "decoder"})
        identity["config"] = f"sha256:{file_sha256(self.config)}" if self.config is not None else None
        identity["handoff"] = HANDOFF_VERSION
        return identity

    def unavailable_reason(self, quality: int | None = None) -> str | None:
        for program, path in ((self.encoder_program, self.encoder), (self.decoder_program, self.decoder)):
            if path is None:
                return f"{program} not found ({self.install_hint})"
        return self._config_problem

    def _require(self) -> tuple[str, str, Path]:
        if (problem := self.unavailable_reason()) is not None:
            raise CodecError(f"{self.name}: {problem}")
        assert self.encoder is not None and self.decoder is not None and self.config is not None
        return self.encoder, self.decoder, self.config

    def encoder_args(self, yuv: Path, stream: Path, qp: int, height: int, width: int) -> list[str]:
        """The encoder's argument list for one picture (without the program)."""
        assert self.config is not None
        return [
            "-i", str(yuv), "-c", str(self.config), "-q", str(qp), "-o", os.devnull, "-b", str(stream),
            "-wdt", str(width), "-hgt", str(height), "-fr", "1", "-f", "1",
            "--InputChromaFormat=444", f"--InputBitDepth={self.params.bit_depth}",
            *self.extra_encoder_args,
        ]

    def encode(self, images: Sequence[np.ndarray], point: OperatingPoint) -> list[bytes]:
        encoder, _, _ = self._require()
        if (problem := self.check_quality(point.quality)) is not None:
            raise CodecError(problem)
        streams = []
        with tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-") as tmp:
            for i, image in enumerate(images):
                height, width = image.shape[:2]
                yuv, out = Path(tmp, f"{i}.yuv"), Path(tmp, f"{i}.bin")
                write_yuv444(yuv, rgb_to_ycbcr(image, self.params.bit_depth))
                run_program([encoder, *self.encoder_args(yuv, out, point.quality, height, width)],
                            timeout_s=max(TIMEOUT_S, ENCODE_S_PER_PIXEL * height * width), cwd=tmp)
                streams.append(read_output(out, self.encoder_program))
                yuv.unlink()  # a batch of large images need not pile up in the folder
        return streams

    def decode(self, streams: Sequence[bytes]) -> list[np.ndarray]:
        _, decoder, _ = self._require()
        bit_depth = self.params.bit_depth
        images = []
        with tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-") as tmp:
            for i, stream in enumerate(streams):
                where = f"{self.name} stream {i}"
                if not stream:
                    raise CodecError(f"{where}: empty stream")
                try:
                    size = type(self).picture_size(bytes(stream))
                except CodecError as exc:
                    raise CodecError(f"{where}: {exc}") from exc
                if size.chroma_format_idc != 3:
                    raise CodecError(f"{where}: coded with chroma_format_idc {size.chroma_format_idc}, "
                                     "not 4:4:4 (the configuration file sets another ChromaFormatIDC?)")
                src, yuv = Path(tmp, f"{i}.bin"), Path(tmp, f"{i}.yuv")
                src.write_bytes(stream)
                run_program([decoder, "-b", str(src), "-o", str(yuv), "-d", str(bit_depth)], cwd=tmp)
                data = read_output(yuv, self.decoder_program)
                planes = read_yuv444(data, size.height, size.width, bit_depth, self.decoder_program)
                images.append(ycbcr_to_rgb(planes, bit_depth))
                src.unlink()
                yuv.unlink()
        return images


class VTM(_ReferenceSoftware):
    """VVC intra through VTM, the VVC reference software (QP 0..63, lower is better)."""

    name = "vtm"
    quality_range: ClassVar[tuple[int, int]] = (0, 63)
    encoder_program = "EncoderAppStatic"
    decoder_program = "DecoderAppStatic"
    env_prefix = "BENCH_VTM"
    config_name = "encoder_intra_vtm.cfg"
    install_hint = "install VTM: see README"
    extra_encoder_args = ("--ConformanceWindowMode=1",)
    picture_size = staticmethod(vvc_picture_size)

    # "VVCSoftware: VTM Encoder Version 23.0 [Linux][GCC ...]"
    version_probe = (("--help",), r"VTM Encoder Version (\S+)", "vtm")
    #: The version of the default ``EncoderAppStatic``; an instance reports the one it runs.
    version = program_version(find_program(None, "BENCH_VTM_ENCODER", encoder_program), *version_probe)


class HM(_ReferenceSoftware):
    """HEVC intra through HM, the HEVC reference software (QP 0..51, lower is better)."""

    name = "hm"
    quality_range: ClassVar[tuple[int, int]] = (0, 51)
    encoder_program = "TAppEncoderStatic"
    decoder_program = "TAppDecoderStatic"
    env_prefix = "BENCH_HM"
    config_name = "encoder_intra_main_rext.cfg"
    install_hint = "install HM: see README"
    # CompressAI's: an MD5 picture hash SEI (bytes in the stream, as in its numbers), level
    # 5.1, the SCC tools' no-TU-split-for-ACT off (HM-16.21 and later know the key), and the
    # automatic conformance window (ConformanceMode is HM's alias of ConformanceWindowMode)
    extra_encoder_args = ("--SEIDecodedPictureHash", "--Level=5.1", "--CUNoSplitIntraACT=0", "--ConformanceMode=1")
    picture_size = staticmethod(hevc_picture_size)

    # "HM software: Encoder Version [18.0] (including RExt)[Linux][GCC ...]"
    version_probe = (("--help",), r"Encoder Version \[([^\]]+)\]", "hm")
    #: The version of the default ``TAppEncoderStatic``; an instance reports the one it runs.
    version = program_version(find_program(None, "BENCH_HM_ENCODER", encoder_program), *version_probe)
