"""The codec interface: images in, real bitstreams out, and back."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from bench.errors import CodecError
from bench.images import rgb8_problem
from bench.registry import PluginKind
from bench.weights import WeightFile, missing_weights


@dataclass(frozen=True, order=True)
class OperatingPoint:
    """A codec at one quality setting (the codec's own knob: JPEG quality, BPG QP, ...)."""

    quality: int

    def __str__(self) -> str:
        return str(self.quality)


class CodecParams(BaseModel):
    """Codec-specific settings from the grid; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Codec(ABC):
    """A plugin that turns RGB uint8 images into bitstreams and back.

    ``encode`` and ``decode`` take and return batches so that a neural codec can run one
    forward pass per batch while a traditional codec fans out over processes. ``decode``
    gets the bytes and nothing else: a stream must carry all it needs.

    A subclass writes ``encode`` and ``decode`` and nothing more: defining them wraps them
    (``__init_subclass__``) in the checks every codec shares. Their input is checked before
    the codec sees it (a sequence of ``(H, W, 3)`` uint8 images; bytes), their
    output after (one bytes object per image; one ``(H, W, 3)`` uint8 image per stream), and
    any exception they raise becomes a one-line ``CodecError`` naming the codec and the image
    (or stream) it failed on. A ``CodecError`` of the codec's own passes through unchanged.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr, wrap in (("encode", _checked_encode), ("decode", _checked_decode)):
            fn = cls.__dict__.get(attr)
            if (callable(fn) and not getattr(fn, "__isabstractmethod__", False)
                    and not getattr(fn, "_bench_checked", False)):
                setattr(cls, attr, wrap(fn))

    name: ClassVar[str]
    version: ClassVar[str]
    kind: ClassVar[str] = "traditional"
    #: Inclusive range of the quality knob and what it means.
    quality_range: ClassVar[tuple[int, int]]
    quality_meaning: ClassVar[str] = "quality (higher is better)"
    #: True when a larger knob value means a lower rate (e.g. a quantisation parameter).
    quality_descending: ClassVar[bool] = False
    Params: ClassVar[type[CodecParams]] = CodecParams

    def __init__(self, params: CodecParams | None = None, **kwargs: Any) -> None:
        self.params = params if params is not None else self.Params(**kwargs)

    # -- what a plugin provides -------------------------------------------------------
    def unavailable_reason(self, quality: int | None = None) -> str | None:
        """Why this codec cannot run here (e.g. ``"bpgenc not found"``), or None; with a
        ``quality``, why it cannot run at that quality (by default: the first of its
        ``weight_files`` missing)."""
        return missing_weights(self.weight_files(quality)) if quality is not None else None

    def weight_files(self, quality: int | None = None) -> list[WeightFile]:
        """The weight files the codec downloads at ``quality`` (None: at every quality of its
        range, as a rate search may use any); ``bench fetch`` downloads the missing ones;
        none by default."""
        return []

    def to(self, device: str) -> Codec:
        """Run on ``device`` from now on where the codec can (a neural codec's transforms);
        not part of the identity: the bytes must not depend on it."""
        return self

    @property
    def poolable(self) -> bool:
        """True when worker processes may rebuild this codec from its name and params and
        share its work out (a neural codec on the CPU; never one on a GPU or in memory)."""
        return True

    @property
    def rate_is_estimate(self) -> bool:
        """True when a stream's length is not its rate (a likelihood estimate container)."""
        return False

    def rate_bits(self, stream: bytes) -> float:
        """The rate of one stream in bits: its real length unless ``rate_is_estimate``."""
        return 8.0 * len(stream)

    @abstractmethod
    def encode(self, images: Sequence[np.ndarray], point: OperatingPoint) -> list[bytes]:
        """Encode each ``(H, W, 3)`` uint8 image into a complete bitstream."""

    @abstractmethod
    def decode(self, streams: Sequence[bytes]) -> list[np.ndarray]:
        """Decode each bitstream into an ``(H, W, 3)`` uint8 image."""

    # -- derived ----------------------------------------------------------------------
    def check_quality(self, quality: int) -> str | None:
        lo, hi = self.quality_range
        if not (lo <= quality <= hi):
            return f"{quality} is outside {self.name}'s {self.quality_meaning} range {lo}..{hi}"
        return None

    def identity(self) -> dict[str, Any]:
        """What determines this codec's output: part of every cache and cell key."""
        return {
            "codec": self.name,
            "version": self.version,
            "params": self.params.model_dump(mode="json"),
        }

    def identity_hash(self) -> str:
        from bench.keys import stable_hash

        return stable_hash(self.identity(), 16)


# -- the checks every codec's encode/decode runs in ----------------------------------------------

_BYTES = (bytes, bytearray, memoryview)


def _describe_image(image: Any) -> str:
    shape = getattr(image, "shape", None)
    return f"{'x'.join(map(str, shape))} {image.dtype}" if shape is not None else type(image).__name__


def _describe_stream(stream: Any) -> str:
    return f"{len(stream) if isinstance(stream, _BYTES) else '?'} bytes"


def _failure(codec: Codec, step: str, what: str, i: int | None, items: Sequence[Any],
             describe: Callable[[Any], str], exc: BaseException) -> CodecError:
    text = " ".join(str(exc).split())
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    where = (f"{what} {i} of {len(items)} ({describe(items[i])})" if i is not None
             else f"a batch of {len(items)} {what}s")
    return CodecError(f"{codec.name}: {step} failed on {where}: {reason}")


def _culprit(run: Callable[[list[Any]], Any], items: Sequence[Any]) -> tuple[int | None, BaseException | None]:
    """The first item that fails on its own, and how: a batch's exception does not say which
    item it came from, so on failure (only then) each item is run alone."""
    for i, item in enumerate(items):
        try:
            run([item])
        except Exception as exc:  # noqa: BLE001 - any failure of the codec's own code
            return i, exc
    return None, None


def _locate(codec: Codec, step: str, what: str, run: Callable[[list[Any]], Any], items: Sequence[Any],
            describe: Callable[[Any], str], exc: Exception) -> CodecError:
    if len(items) == 1:
        return _failure(codec, step, what, 0, items, describe, exc)
    i, alone = _culprit(run, items)
    if isinstance(alone, CodecError):
        return alone
    return _failure(codec, step, what, i, items, describe, alone if alone is not None else exc)


def _checked_encode(encode: Callable[..., list[bytes]]) -> Callable[..., list[bytes]]:
    @functools.wraps(encode)
    def checked(self: Codec, images: Sequence[np.ndarray], point: OperatingPoint, *args: Any, **kwargs: Any) -> list[bytes]:
        if isinstance(images, np.ndarray) and images.ndim < 4 or isinstance(images, (str, bytes)) \
                or not hasattr(images, "__len__"):
            raise CodecError(f"{self.name}: encode takes a sequence of (H, W, 3) uint8 images, "
                             f"got {_describe_image(images)}")
        if not isinstance(point, OperatingPoint):
            raise CodecError(f"{self.name}: encode takes an OperatingPoint, got {type(point).__name__}")
        for i, image in enumerate(images):
            if (problem := rgb8_problem(image)) is not None:
                raise CodecError(f"{self.name}: image {i} of {len(images)}: {problem}")
        try:
            streams = encode(self, images, point, *args, **kwargs)
        except CodecError:
            raise
        except Exception as exc:
            raise _locate(self, "encode", "image", lambda part: encode(self, part, point, *args, **kwargs),
                          images, _describe_image, exc) from exc
        if not isinstance(streams, Sequence) or len(streams) != len(images):
            raise CodecError(f"{self.name}: encode returned {_count(streams)} for {len(images)} images")
        for i, stream in enumerate(streams):
            if not isinstance(stream, _BYTES):
                raise CodecError(f"{self.name}: encode returned a {type(stream).__name__} for image {i}, "
                                 "expected bytes")
        return list(streams)

    checked._bench_checked = True  # type: ignore[attr-defined]
    return checked


def _checked_decode(decode: Callable[..., list[np.ndarray]]) -> Callable[..., list[np.ndarray]]:
    @functools.wraps(decode)
    def checked(self: Codec, streams: Sequence[bytes], *args: Any, **kwargs: Any) -> list[np.ndarray]:
        if isinstance(streams, _BYTES + (str,)) or not hasattr(streams, "__len__"):
            raise CodecError(f"{self.name}: decode takes a sequence of streams (bytes), "
                             f"got {type(streams).__name__}")
        for i, stream in enumerate(streams):
            if not isinstance(stream, _BYTES):
                raise CodecError(f"{self.name} stream {i}: a stream must be bytes, got {type(stream).__name__}")
        try:
            images = decode(self, streams, *args, **kwargs)
        except CodecError:
            raise
        except Exception as exc:
            raise _locate(self, "decode", "stream", lambda part: decode(self, part, *args, **kwargs),
                          streams, _describe_stream, exc) from exc
        if not isinstance(images, Sequence) or len(images) != len(streams):
            raise CodecError(f"{self.name}: decode returned {_count(images)} for {len(streams)} streams")
        for i, image in enumerate(images):
            if (problem := rgb8_problem(image)) is not None:
                raise CodecError(f"{self.name}: decoding stream {i} gave no image: {problem}")
        return list(images)

    checked._bench_checked = True  # type: ignore[attr-defined]
    return checked


def _count(result: Any) -> str:
    return f"{len(result)} items" if isinstance(result, Sequence) else f"a {type(result).__name__}"


#: Registry check: a codec plugin is a complete ``Codec`` subclass, called like one.
validate_codec_class = PluginKind(Codec, {"name": str, "version": str, "quality_range": tuple})
