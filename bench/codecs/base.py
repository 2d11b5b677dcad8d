"""The codec interface: images in, real bitstreams out, and back."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


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
    """

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
        ``quality``, why it cannot run at that quality (e.g. weights missing for it)."""
        return None

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
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def validate_codec_class(name: str, obj: object) -> None:
    """Registry check: a codec plugin must be a complete ``Codec`` subclass."""
    if not (isinstance(obj, type) and issubclass(obj, Codec)):
        raise TypeError(f"{obj!r} is not a subclass of bench.codecs.base.Codec")
    for attr in ("name", "version", "quality_range"):
        if not hasattr(obj, attr):
            raise TypeError(f"{obj.__name__} has no class attribute {attr!r}")
    if getattr(obj, "__abstractmethods__", None):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise TypeError(f"{obj.__name__} does not implement {missing}")
