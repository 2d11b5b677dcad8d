"""Rate–distortion curves in CompressAI's results JSON layout, read and written.

CompressAI publishes its codecs' curves (``results/image/kodak/*.json``) as::

    {"name": "JPEG", "description": "...",
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "encoding_time": [...], "decoding_time": [...]}}

one value per operating point: means over the images of per-image bpp, PSNR (RGB, 8-bit),
MS-SSIM and seconds. ``bench`` reads such files as reference curves of a fidelity
experiment (drawn and ranked beside its codecs) and writes each codec's curve of a run in
the same layout (``compressai/<dataset>/<codec>.json`` in the run folder), so that it
overlays the published ones in ``compressai.utils.plot``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

#: CompressAI's names for the per-point values, by the name ``bench`` gives them.
RESULT_KEYS = {"bpp": "bpp", "psnr": "psnr-rgb", "ms_ssim": "ms-ssim-rgb",
               "encode_s": "encoding_time", "decode_s": "decoding_time"}


@dataclass(frozen=True)
class ReferenceCurve:
    """A published curve: its label in tables and plots, and its points by rising bpp."""

    label: str
    name: str
    description: str
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]
    ms_ssim: tuple[float, ...] | None
    #: The file it was read from, and the SHA-256 of its bytes (the run record keeps both).
    file: str = ""
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def record(self) -> dict[str, Any]:
        """What a run's record keeps of it: reports are drawn from the record, not the file."""
        out = asdict(self)
        out.pop("extra")
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ReferenceCurve:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k != "extra"}
        return cls(**values)


def _numbers(value: Any, what: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"results.{what}: expected a list of numbers")
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"results.{what}: expected a list of numbers") from None
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"results.{what}: holds a value that is not a finite number")
    return out


def parse_reference(doc: Any, label: str | None = None, file: str = "", sha256: str = "") -> ReferenceCurve:
    """A curve from a parsed CompressAI results document; ``ValueError`` naming what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise ValueError("expected CompressAI's results layout: an object with 'name' and 'results'")
    results = doc["results"]
    for key in ("bpp", RESULT_KEYS["psnr"]):
        if key not in results:
            raise ValueError(f"results has no {key!r} (it has {', '.join(sorted(results)) or 'nothing'})")
    bpp, psnr = _numbers(results["bpp"], "bpp"), _numbers(results[RESULT_KEYS["psnr"]], RESULT_KEYS["psnr"])
    ms_ssim = _numbers(results[RESULT_KEYS["ms_ssim"]], RESULT_KEYS["ms_ssim"]) if RESULT_KEYS["ms_ssim"] in results else None
    for name, values in (("psnr-rgb", psnr), ("ms-ssim-rgb", ms_ssim)):
        if values is not None and len(values) != len(bpp):
            raise ValueError(f"results.{name} has {len(values)} values for {len(bpp)} bpp values")
    if any(b <= 0 for b in bpp):
        raise ValueError("results.bpp: every rate must be above 0")
    order = sorted(range(len(bpp)), key=lambda k: bpp[k])
    name = str(doc.get("name") or "")
    if not (label or name):
        raise ValueError("the curve has no 'name': give it a label")
    return ReferenceCurve(
        label=label or name, name=name, description=str(doc.get("description") or ""),
        bpp=tuple(bpp[k] for k in order), psnr=tuple(psnr[k] for k in order),
        ms_ssim=tuple(ms_ssim[k] for k in order) if ms_ssim is not None else None, file=file, sha256=sha256,
    )


def load_reference(path: str | Path, label: str | None = None) -> ReferenceCurve:
    """Read a published curve; a ``ConfigError`` naming the file and the problem."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: reference curve file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the reference curve ({exc.strerror or exc})"]) from None
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not JSON ({exc})"]) from None
    try:
        return parse_reference(doc, label, str(path), hashlib.sha256(data).hexdigest())
    except ValueError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None


def compressai_document(name: str, description: str, points: list[dict[str, Any]]) -> dict[str, Any]:
    """A codec's curve in CompressAI's results layout, its points by rising bpp; each point
    a mapping with ``bpp``, ``psnr``, ``ms_ssim``, ``encode_s``, ``decode_s`` (means over the
    images) and ``quality``. MS-SSIM that is undefined (small images) is written as null."""
    points = sorted(points, key=lambda p: p["bpp"])
    results: dict[str, list[Any]] = {}
    for ours, theirs in RESULT_KEYS.items():
        results[theirs] = [_json_number(p.get(ours)) for p in points]
    results["quality"] = [p.get("quality") for p in points]
    return {"name": name, "description": description, "results": results}


def _json_number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
