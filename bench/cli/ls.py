from __future__ import annotations

import argparse

HELP = "list registered codecs, tasks, models, datasets or scenarios and whether they are usable here"

KINDS = ("codecs", "tasks", "models", "datasets", "scenarios")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS)


def _embedded_qualities(name: str) -> list[int]:
    """The qualities a neural codec has shipped weights for (``weights: embedded``)."""
    from bench.codecs import CODECS

    codec = CODECS.get(name)(weights="embedded")
    lo, hi = codec.quality_range
    return [q for q in range(lo, hi + 1) if codec.unavailable_reason(q) is None]


def _rows(kind: str) -> list[tuple[str, str]]:
    from bench.errors import BenchError

    if kind == "codecs":
        from bench.codecs import CODECS
        rows = []
        for name in CODECS.names():
            try:
                codec = CODECS.get(name)()
                why = codec.unavailable_reason()
                lo, hi = codec.quality_range
                detail = f"{codec.quality_meaning} {lo}..{hi}; version {codec.version}"
                embedded = _embedded_qualities(name) if why and codec.kind == "neural" else []
                if embedded:  # the zoo files are missing, the shipped ones are not
                    detail = (f"weights: embedded, qualities {', '.join(map(str, embedded))}; "
                              f"{why}; version {codec.version}")
                    why = None
            except (BenchError, ImportError) as exc:
                why, detail = str(exc), ""
            rows.append((name, f"unavailable: {why}" if why else f"ok  ({detail})"))
        return rows
    if kind == "models":
        from bench.models import MODELS
        rows = []
        for name in MODELS.names():
            cls = MODELS.get(name)
            required = [f for f, info in cls.Params.model_fields.items() if info.is_required()]
            if required:  # packages can be checked without the required parameters
                missing = cls.missing_packages() if hasattr(cls, "missing_packages") else None
                rows.append((name, f"unavailable: {missing}" if missing
                             else f"ok  ({cls.task}; needs {', '.join(required)}; {cls.description})"))
                continue
            why = cls().unavailable_reason()
            rows.append((name, f"unavailable: {why}" if why else f"ok  ({cls.task}; {cls.description})"))
        return rows
    if kind == "tasks":
        from bench.tasks import TASKS
        return [(n, f"ok  ({TASKS.get(n).description})") for n in TASKS.names()]
    if kind == "datasets":
        from bench.datasets import DATASETS
        return [(n, f"ok  ({DATASETS.get(n).description})") for n in DATASETS.names()]
    from bench.scenarios import SCENARIOS
    return [(n, SCENARIOS.get(n).description) for n in SCENARIOS.names()]


def main(args: argparse.Namespace) -> int:
    rows = _rows(args.kind)
    width = max(len(n) for n, _ in rows)
    for name, status in rows:
        print(f"{name:<{width}}  {status}")
    return 0
