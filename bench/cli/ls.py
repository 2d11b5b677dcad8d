from __future__ import annotations

import argparse

HELP = "list registered codecs, tasks, models, datasets or scenarios and whether they are usable here"

KINDS = ("codecs", "tasks", "models", "datasets", "scenarios")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS)


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
            if required:
                rows.append((name, f"ok  ({cls.task}; needs {', '.join(required)}; {cls.description})"))
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
