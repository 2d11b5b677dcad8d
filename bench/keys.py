"""Every key the harness computes, in one place.

A key is a hash of everything that determines a result and of nothing else:

- the **content** of the data — a split's pixels (``ImageSet.fingerprint``) and its
  targets (labels, boxes, masks, annotation fields: ``ImageSet.targets_fingerprint``),
  never just a dataset's name and parameters;
- every plugin's name, ``version`` and parameters (codec, task, model, dataset, scenario);
- the seed and the schedules;
- the harness's own version of the parts it computes (``HARNESS``).

Device, worker counts, paths and timings are not in any key: they go into the record.

What depends on what, so that a change recomputes exactly its dependants:

========================  ==================================================================
transcode of a split      its pixels, codec identity, operating point, ``HARNESS["transcode"]``
rate-control choice       the val split's pixels, codec identity, target, ``HARNESS["rate_control"]``
scenario-A weights        experiment identity (task, model, dataset, seed, train schedule),
                          the train split's content, ``HARNESS["train"]``
a scenario's weights      the cell's identity and the train split's content, ``HARNESS["train"]``
                          (not the val split: a val label does not retrain anything)
a cell                    its identity, the content of every split it reads, ``HARNESS``
========================  ==================================================================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bench.datasets.base import ImageSet
    from bench.ratecontrol import Target

#: Bumped when the meaning of a stored cell or cache entry changes for every key at once.
CELL_SCHEMA = 3

#: The harness's own parts that compute results, each with a version. Bump a part's number
#: when a change to it changes the numbers it produces: every key that depends on it changes,
#: and only those. ``tests/test_keys.py`` holds a digest of each part's sources and fails
#: when they change with the version left as it was.
HARNESS: dict[str, int] = {
    #: encoding, decoding and per-image fidelity (bench/transcode.py, bench/metrics/fidelity.py,
    #: bench/metrics/rate.py, bench/images.py)
    "transcode": 1,
    #: the quality search for a target bitrate (bench/ratecontrol.py)
    "rate_control": 1,
    #: the training loop and its schedules (bench/train.py)
    "train": 1,
    #: the metrics a cell reports and their bootstrap replicates (bench/metrics/detection.py,
    #: bench/metrics/segmentation.py, bench/metrics/bootstrap.py); 2: replicates stored
    "evaluate": 2,
}


#: The sources of each harness part: ``tests/test_keys.py`` holds their digest beside the
#: part's version, so a change to them is a decision about the version, not an accident.
HARNESS_SOURCES: dict[str, tuple[str, ...]] = {
    "transcode": ("transcode.py", "metrics/fidelity.py", "metrics/rate.py", "images.py"),
    "rate_control": ("ratecontrol.py",),
    "train": ("train.py",),
    "evaluate": ("metrics/detection.py", "metrics/segmentation.py", "metrics/bootstrap.py"),
}


#: Built-in plugins whose results come from more than their own module, and those sources:
#: the same check holds their ``version`` to a decision when any of them changes.
PLUGIN_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "scenario D": ("bench.scenarios.compressed_domain:CompressedDomain",
                   ("scenarios/compressed_domain.py", "domain/adapt.py", "domain/cost.py", "domain/joint.py",
                    "domain/nets.py", "domain/train.py")),
    "scenarios A, B, C": ("bench.scenarios.pixel:Finetuned", ("scenarios/pixel.py", "scenarios/base.py")),
    "classification": ("bench.tasks.classification:Classification", ("tasks/classification.py", "tasks/base.py")),
    "detection": ("bench.tasks.detection:Detection", ("tasks/detection.py", "tasks/base.py")),
    "segmentation": ("bench.tasks.segmentation:Segmentation", ("tasks/segmentation.py", "tasks/base.py")),
}


def _digest(files: tuple[str, ...]) -> str:
    from pathlib import Path

    root, h = Path(__file__).parent, hashlib.sha256()
    for name in files:
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()[:16]


def source_digests() -> dict[str, dict[str, Any]]:
    """Each harness part's and multi-file built-in plugin's version with the digest of its
    sources (``python -m bench.keys`` prints them)."""
    import importlib

    out: dict[str, dict[str, Any]] = {part: {"version": HARNESS[part], "digest": _digest(files)}
                                      for part, files in HARNESS_SOURCES.items()}
    for label, (where, files) in PLUGIN_SOURCES.items():
        module, _, attr = where.partition(":")
        version = getattr(importlib.import_module(module), attr).version
        out[label] = {"version": version, "digest": _digest(files)}
    return out


def stable_hash(obj: Any, n: int = 20) -> str:
    """A hex digest of ``obj`` as canonical JSON (sorted keys): equal inputs, equal keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


# -- content ----------------------------------------------------------------------------


def _update(h: Any, obj: Any) -> None:
    """Feed ``obj`` (arrays, sequences, mappings, scalars) into ``h``, types and shapes included."""
    if isinstance(obj, np.ndarray):
        h.update(f"nd{obj.dtype.str}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(f"{k!s}:".encode())
            _update(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}".encode())
        for v in obj:
            _update(h, v)
        h.update(b"]")
    elif isinstance(obj, (np.generic, int, float, str, bool)) or obj is None:
        h.update(f"{type(obj).__name__}={obj!r};".encode())
    else:
        raise TypeError(f"cannot fingerprint a {type(obj).__name__} among a split's targets")


def fingerprint(obj: Any) -> str:
    """The content hash of a split's labels and targets (arrays, lists of arrays, names)."""
    h = hashlib.sha256()
    _update(h, obj)
    return h.hexdigest()[:24]


def split_content(images: ImageSet) -> dict[str, str]:
    """What a split's results depend on: its pixels and its targets."""
    return {"pixels": images.fingerprint, "targets": images.targets_fingerprint}


# -- keys -------------------------------------------------------------------------------


def setting_identity(setting: int | Target) -> dict[str, Any]:
    """An operating point as keys see it: a quality, or a target bitrate."""
    if isinstance(setting, int):
        return {"quality": setting}
    return {"target": setting.identity()}


def transcode_key(pixels: str, codec: dict[str, Any], setting: int | Target) -> str:
    """A split (by its pixels' fingerprint) coded by ``codec`` at ``setting`` (a per-image
    target goes through the rate search too)."""
    harness: Any = HARNESS["transcode"] if isinstance(setting, int) else [HARNESS["transcode"], HARNESS["rate_control"]]
    return stable_hash({"schema": CELL_SCHEMA, "harness": harness, "set": pixels, "codec": codec,
                        **setting_identity(setting)}, 32)


def choice_key(pixels: str, codec: dict[str, Any], target: Target) -> str:
    """The quality that reaches a per-dataset target on a split (by its pixels)."""
    return stable_hash({"schema": CELL_SCHEMA, "harness": [HARNESS["transcode"], HARNESS["rate_control"]],
                        "set": pixels, "codec": codec, "target": target.identity()}, 32)


def reference_key(experiment: dict[str, Any], train: dict[str, str]) -> str:
    """Scenario A's weights: trained from the experiment's identity on the train split."""
    return stable_hash({"schema": CELL_SCHEMA, "harness": HARNESS["train"], "weights": "reference",
                        **experiment, "train_data": train}, 32)


def weights_key(kind: str, cell: dict[str, Any], train: dict[str, str], setting: int | Target | None) -> str:
    """Weights a scenario trains for one cell (``kind``: finetuned, compressed-domain, ...):
    the cell's identity, the train split and the operating point the cell resolved to (a
    per-dataset target's quality is searched on the val split), not the val split itself."""
    return stable_hash({"schema": CELL_SCHEMA, "harness": [HARNESS["transcode"], HARNESS["rate_control"],
                                                           HARNESS["train"]],
                        "weights": kind, "cell": cell, "train_data": train,
                        "resolved": setting_identity(setting) if setting is not None else None}, 32)


def harness_parts(coded: bool, trained: bool, searched: bool) -> dict[str, int]:
    """The harness parts a cell's result goes through: its metric always; coding when it
    reads a codec's output, the rate search when its operating point is a per-dataset
    target, the training loop when it or its scenario-A model trains."""
    parts = ["evaluate"] + ["transcode"] * coded + ["rate_control"] * searched + ["train"] * trained
    return {p: HARNESS[p] for p in parts}


def cell_key(cell: dict[str, Any], data: dict[str, dict[str, str]], harness: dict[str, int],
             names: dict[str, Any]) -> str:
    """A cell: its identity, the content of every split it reads (by split name), the
    versions of the harness parts it goes through (``harness_parts``) and the names its row
    shows (a renamed codec label or dataset folder gives a row with the new name; nothing
    is trained or coded again for it)."""
    return stable_hash({"schema": CELL_SCHEMA, "harness": harness, "cell": cell, "data": data, "names": names})


def identity_key(cell: dict[str, Any]) -> str:
    """A cell's identity alone (no data): tells cells of one grid apart before any data is read."""
    return stable_hash(cell)


if __name__ == "__main__":  # the digests tests/harness_digests.json records
    print(json.dumps(source_digests(), indent=2, sort_keys=True))
