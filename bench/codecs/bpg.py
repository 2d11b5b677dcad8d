"""BPG (Bellard's HEVC-intra format) through the ``bpgenc`` / ``bpgdec`` programs of libbpg.

Images go to the programs as lossless PNG files in a temporary directory that is removed
afterwards, also when a program fails. The programs are found through the ``bpgenc`` /
``bpgdec`` parameters, else ``$BENCH_BPGENC`` / ``$BENCH_BPGDEC``, else on ``PATH``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image

from bench.codecs.base import Codec, CodecParams, OperatingPoint
from bench.codecs.programs import find_program, program_version, read_output, run_program
from bench.errors import CodecError, ImageError
from bench.images import decode_image_bytes, rgb8_problem

INSTALL_HINT = "install libbpg: see README"


def bpgenc_version(bpgenc: str | None) -> str:
    """``bpgenc-<version>`` from ``bpgenc -h``; a hash of the binary if it prints none."""
    return program_version(bpgenc, ("-h",), r"BPG Image Encoder version (\S+)", "bpgenc")


class BPG(Codec):
    """BPG at a quantisation parameter (QP 0..51, lower is better), 8-bit, 4:4:4 by default."""

    class Params(CodecParams):
        chroma: Literal[444, 420] = 444
        #: Program name or path; None means $BENCH_BPGENC, else ``bpgenc`` on PATH.
        bpgenc: str | None = None
        #: Program name or path; None means $BENCH_BPGDEC, else ``bpgdec`` on PATH.
        bpgdec: str | None = None

    name = "bpg"
    quality_range: ClassVar[tuple[int, int]] = (0, 51)
    quality_meaning = "QP (lower is better)"
    quality_descending = True
    #: The version of the default ``bpgenc``; an instance reports the one it runs.
    version = bpgenc_version(find_program(None, "BENCH_BPGENC", "bpgenc"))

    def __init__(self, params: CodecParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.bpgenc = find_program(self.params.bpgenc, "BENCH_BPGENC", "bpgenc")
        self.bpgdec = find_program(self.params.bpgdec, "BENCH_BPGDEC", "bpgdec")
        # The version belongs to the program this instance runs, which the parameters or
        # the environment may choose, so it shadows the class attribute.
        self.version = bpgenc_version(self.bpgenc)  # type: ignore[misc]

    def identity(self) -> dict[str, Any]:
        # Where the programs live is not what they produce: the version stands for them.
        identity = super().identity()
        identity["params"] = self.params.model_dump(mode="json", exclude={"bpgenc", "bpgdec"})
        return identity

    def unavailable_reason(self, quality: int | None = None) -> str | None:
        for role, path in (("bpgenc", self.bpgenc), ("bpgdec", self.bpgdec)):
            if path is None:
                return f"{role} not found ({INSTALL_HINT})"
        return None

    def _require(self) -> tuple[str, str]:
        if (problem := self.unavailable_reason()) is not None:
            raise CodecError(f"{self.name}: {problem}")
        assert self.bpgenc is not None and self.bpgdec is not None
        return self.bpgenc, self.bpgdec

    def encode(self, images: Sequence[np.ndarray], point: OperatingPoint) -> list[bytes]:
        bpgenc, _ = self._require()
        if (problem := self.check_quality(point.quality)) is not None:
            raise CodecError(problem)
        for image in images:  # check the whole batch before starting any program
            if (problem := rgb8_problem(image)) is not None:
                raise CodecError(f"{self.name}: {problem}")
        streams = []
        with tempfile.TemporaryDirectory(prefix="bench-bpg-") as tmp:
            for i, image in enumerate(images):
                png, out = Path(tmp, f"{i}.png"), Path(tmp, f"{i}.bpg")
                # compress_level=1: lossless either way, and the fastest to write
                Image.fromarray(np.ascontiguousarray(image)).save(png, "PNG", compress_level=1)
                run_program([
                    bpgenc, "-o", str(out), "-q", str(point.quality),
                    "-f", str(self.params.chroma), "-b", "8", str(png),
                ])
                streams.append(read_output(out, "bpgenc"))
        return streams

    def decode(self, streams: Sequence[bytes]) -> list[np.ndarray]:
        _, bpgdec = self._require()
        images = []
        with tempfile.TemporaryDirectory(prefix="bench-bpg-") as tmp:
            for i, stream in enumerate(streams):
                where = f"{self.name} stream {i}"
                if not stream:
                    raise CodecError(f"{where}: empty stream")
                src, png = Path(tmp, f"{i}.bpg"), Path(tmp, f"{i}.png")
                src.write_bytes(stream)
                run_program([bpgdec, "-o", str(png), str(src)])
                try:
                    images.append(decode_image_bytes(read_output(png, "bpgdec"), where, ("PNG",)))
                except ImageError as exc:
                    raise CodecError(str(exc)) from exc
        return images
