"""Outputs built from the results store alone: leaderboard CSV, plots, summary."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from bench.errors import BenchError
from bench.report.leaderboard import cost_frame, leaderboard_frame
from bench.report.plots import plot_all
from bench.report.ranking import confidence_of, ranking_frame
from bench.store import Store


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: str, path: Path) -> None:
    """Give a temporary file the mode a plain ``open`` would (mkstemp's is 0600) and move it
    into place."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        _publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class RunRows(NamedTuple):
    """What a folder's outputs are built from, read from its store once."""

    #: The cells of the folder's latest run.
    rows: list[dict[str, Any]]
    #: That run's record (``Store.last_run``).
    run: dict[str, Any]


def _open(folder: Path) -> Store:
    db = folder / "results.sqlite"
    if not db.is_file():
        raise BenchError(f"{folder}: no results store (results.sqlite); run `bench run` first")
    return Store(db)


def _last_run(store: Store, folder: Path) -> dict[str, Any]:
    last = store.last_run()
    if last is None:
        raise BenchError(f"{folder / 'results.sqlite'}: holds no run")
    return last


def load_rows(folder: Path) -> RunRows:
    """The cells of the folder's latest run, and that run's record."""
    store = _open(folder)
    try:
        last = _last_run(store, folder)
        return RunRows(store.cells(last["cells"]), last)
    finally:
        store.close()


def atomic_write_parquet(path: Path, frame: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        _publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_leaderboard(folder: Path, loaded: RunRows | None = None) -> Path:
    """``leaderboard.csv`` and ``.parquet``: every cell's metrics with rate and fidelity."""
    rows, last = loaded or load_rows(folder)
    path = folder / "leaderboard.csv"
    frame = leaderboard_frame(rows, confidence_of(last["grid"]))
    atomic_write_text(path, frame.to_csv(index=False))
    atomic_write_parquet(path.with_suffix(".parquet"), frame)
    return path


def write_ranking(folder: Path, loaded: RunRows | None = None) -> Path:
    """``ranking.csv`` and ``.parquet``: codecs ranked by Bjøntegaard delta (``bench.report.ranking``)."""
    rows, last = loaded or load_rows(folder)
    path = folder / "ranking.csv"
    frame = ranking_frame(rows, last["grid"])
    atomic_write_text(path, frame.to_csv(index=False))
    atomic_write_parquet(path.with_suffix(".parquet"), frame)
    return path


def write_costs(folder: Path, loaded: RunRows | None = None) -> Path | None:
    """``costs.csv``: scenario D's cost table (None, and no file, when the run has no D rows)."""
    frame = cost_frame((loaded or load_rows(folder)).rows)
    path = folder / "costs.csv"
    if frame.empty:
        path.unlink(missing_ok=True)
        return None
    atomic_write_text(path, frame.to_csv(index=False))
    return path


def write_compressai(folder: Path, loaded: RunRows | None = None) -> list[Path]:
    """Each codec's rate–distortion curve per dataset in CompressAI's results JSON layout
    (``compressai/<dataset>/<codec>.json``, ``bench.report.curves``): its B points. The
    folder is replaced as a whole, so it never holds a curve of an earlier run."""
    from bench.report.curves import compressai_curves

    rows, last = loaded or load_rows(folder)
    docs = compressai_curves(rows, last["grid"])
    final = folder / "compressai"
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".compressai.tmp-"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's is 0700
        for (dataset, codec), doc in docs.items():
            path = tmp / _file_name(dataset) / f"{_file_name(codec)}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(doc, indent=2) + "\n")
        old = folder / f".compressai.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        if docs:
            os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [final / _file_name(d) / f"{_file_name(c)}.json" for d, c in docs]


def _file_name(label: str) -> str:
    """A label as a file name: path separators and other unsafe characters become ``-``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", label).strip("-.") or "_"


def load_samples(folder: Path) -> list[dict[str, Any]]:
    """The sample images the latest run's cells kept (for the visual grid)."""
    store = Store(folder / "results.sqlite")
    try:
        last = store.last_run()
        return store.samples(last["cells"]) if last is not None else []
    finally:
        store.close()


def write_plots(folder: Path, loaded: RunRows | None = None,
                samples: list[dict[str, Any]] | None = None) -> list[Path]:
    rows, last = loaded or load_rows(folder)
    return plot_all(rows, folder / "plots", load_samples(folder) if samples is None else samples, last["grid"])


def write_outputs(folder: Path) -> None:
    """Every output of the folder's latest run, from one read of its store."""
    from bench.report.html import write_report

    store = _open(folder)
    try:
        last = _last_run(store, folder)
        loaded = RunRows(store.cells(last["cells"]), last)
        samples = store.samples(last["cells"])
    finally:
        store.close()
    write_leaderboard(folder, loaded)
    write_ranking(folder, loaded)
    write_costs(folder, loaded)
    write_plots(folder, loaded, samples)
    write_compressai(folder, loaded)
    write_report(folder, loaded)


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
