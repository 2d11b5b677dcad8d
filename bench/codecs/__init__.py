"""Codec plugins. Built-ins are registered lazily; third parties use the
``bench.codecs`` entry-point group."""

from __future__ import annotations

from bench.codecs.base import Codec, CodecParams, OperatingPoint, validate_codec_class
from bench.registry import Registry

CODECS: Registry[type[Codec]] = Registry("codec", group="bench.codecs", validate=validate_codec_class)
CODECS.register("jpeg", "bench.codecs.pillow:JPEG")
CODECS.register("webp", "bench.codecs.pillow:WebP")
CODECS.register("avif", "bench.codecs.pillow:AVIF")
CODECS.register("heic", "bench.codecs.heif:HEIC")
CODECS.register("jpeg2000", "bench.codecs.imagecodecs:JPEG2000")
CODECS.register("jpegxl", "bench.codecs.imagecodecs:JPEGXL")
CODECS.register("bpg", "bench.codecs.bpg:BPG")
CODECS.register("vtm", "bench.codecs.reference_software:VTM")
CODECS.register("hm", "bench.codecs.reference_software:HM")
CODECS.register("bmshj2018-factorized", "bench.codecs.neural:BMSHJ2018Factorized")
CODECS.register("bmshj2018-hyperprior", "bench.codecs.neural:BMSHJ2018Hyperprior")
CODECS.register("mbt2018-mean", "bench.codecs.neural:MBT2018Mean")
CODECS.register("mbt2018", "bench.codecs.neural:MBT2018")
CODECS.register("cheng2020-anchor", "bench.codecs.neural:Cheng2020Anchor")
CODECS.register("cheng2020-attn", "bench.codecs.neural:Cheng2020Attn")
CODECS.register("gmm-hyperprior", "bench.codecs.neural:GMMHyperprior")

__all__ = ["CODECS", "Codec", "CodecParams", "OperatingPoint"]
