from __future__ import annotations

import argparse
from typing import Any

HELP = "list registered codecs, tasks, models, datasets or scenarios and whether they are usable here"

KINDS = ("codecs", "tasks", "models", "datasets", "scenarios")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS)


def required_params(cls: type) -> list[str]:
    """The parameters a plugin cannot be built without (its ``Params`` fields without defaults)."""
    params = getattr(cls, "Params", None)
    fields = getattr(params, "model_fields", {})
    return [name for name, info in fields.items() if info.is_required()]


def _embedded_qualities(name: str) -> list[int]:
    """The qualities a neural codec has shipped weights for (``weights: embedded``)."""
    from bench.codecs import CODECS

    codec = CODECS.get(name)(weights="embedded")
    lo, hi = codec.quality_range
    return [q for q in range(lo, hi + 1) if codec.unavailable_reason(q) is None]


def _codec_status(name: str) -> str:
    from bench.codecs import CODECS

    cls = CODECS.get(name)
    lo, hi = cls.quality_range
    if needs := required_params(cls):  # nothing to instantiate: say what it needs
        return f"ok  (needs {', '.join(needs)}; {cls.quality_meaning} {lo}..{hi}; version {cls.version})"
    codec = cls()
    why = codec.unavailable_reason()
    detail = f"{codec.quality_meaning} {lo}..{hi}; version {codec.version}"
    embedded = _embedded_qualities(name) if why and codec.kind == "neural" else []
    if embedded:  # the zoo files are missing, the shipped ones are not
        detail = f"weights: embedded, qualities {', '.join(map(str, embedded))}; {why}; version {codec.version}"
        why = None
    return f"unavailable: {why}" if why else f"ok  ({detail})"


def _model_status(name: str) -> str:
    from bench.models import MODELS

    cls = MODELS.get(name)
    if needs := required_params(cls):  # packages can be checked without the required parameters
        missing = cls.missing_packages() if hasattr(cls, "missing_packages") else None
        return f"unavailable: {missing}" if missing else f"ok  ({cls.task}; needs {', '.join(needs)}; {cls.description})"
    why = cls().unavailable_reason()
    return f"unavailable: {why}" if why else f"ok  ({cls.task}; {cls.description})"


def _described(registry: Any, name: str) -> str:
    cls = registry.get(name)
    needs = required_params(cls)
    return f"ok  ({'needs ' + ', '.join(needs) + '; ' if needs else ''}{cls.description})"


def _status(kind: str, name: str) -> str:
    if kind == "codecs":
        return _codec_status(name)
    if kind == "models":
        return _model_status(name)
    if kind == "tasks":
        from bench.tasks import TASKS
        return _described(TASKS, name)
    if kind == "datasets":
        from bench.datasets import DATASETS
        return _described(DATASETS, name)
    from bench.scenarios import SCENARIOS
    return SCENARIOS.get(name).description


def _registry(kind: str) -> Any:
    if kind == "codecs":
        from bench.codecs import CODECS as reg
    elif kind == "models":
        from bench.models import MODELS as reg
    elif kind == "tasks":
        from bench.tasks import TASKS as reg
    elif kind == "datasets":
        from bench.datasets import DATASETS as reg
    else:
        from bench.scenarios import SCENARIOS as reg
    return reg


def _rows(kind: str) -> list[tuple[str, str]]:
    """One row per registered name: a broken or failing plugin is a row saying why, never a
    traceback that hides every other plugin."""
    from bench.errors import BenchError
    from bench.registry import one_line

    registry = _registry(kind)
    broken = registry.broken()
    rows = []
    for name in registry.names():
        if name in broken:
            rows.append((name, f"broken: {broken[name]}"))
            continue
        try:
            status = _status(kind, name)
        except (BenchError, ImportError) as exc:  # a missing optional package or program
            status = f"unavailable: {exc}"
        except Exception as exc:  # noqa: BLE001 - a plugin's own bug is its row, not the listing's end
            status = f"broken: {one_line(exc)}"
        rows.append((name, status))
    return rows


def main(args: argparse.Namespace) -> int:
    rows = _rows(args.kind)
    width = max(len(n) for n, _ in rows)
    for name, status in rows:
        print(f"{name:<{width}}  {status}")
    return 0
