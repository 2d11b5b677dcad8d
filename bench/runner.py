"""A run's stages and the store's lifecycle: read and key the splits → transcode → compute
the cells (each by its scenario) → record → report."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench import rows
from bench.cache import Cache
from bench.errors import BenchError
from bench.executors import EXECUTORS, RayExecutor, cell_threads
from bench.grid import Cell, Plan, ResolvedExperiment
from bench.progress import Progress
from bench.provenance import provenance
from bench.scenarios import SCENARIOS
from bench.store import Store
from bench.transcodes import PIXELS, Setting
from bench.workbench import Workbench


@dataclass
class RunOptions:
    out: Path = Path("results")
    cache_dir: Path | None = None
    device: str = "auto"
    workers: int = 1
    force: bool = False
    quiet: bool = False
    argv: list[str] | None = None
    #: ``local`` (this machine's process pool) or ``ray`` (bench.executors).
    executor: str = "local"
    #: A Ray cluster's address (``ray`` only; none: a Ray instance on this machine).
    address: str | None = None
    #: Torch threads per cell (the CPUs a Ray cell task asks for); None: torch's default.
    #: Float results depend on it: runs compare exactly only at the same value.
    cell_threads: int | None = None
    #: Which cache entries keep decoded pixels beside their bitstreams (``bench.transcodes.PIXELS``):
    #: ``auto`` (neural codecs' only), ``keep`` (all: read without decoding, 10–40× the
    #: bytes) or ``derive`` (none: every image decoded from its stream when read).
    pixels: str = "auto"


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise BenchError(f"--device {device}: expected cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise BenchError(f"--device {device}: CUDA is not available here (torch {torch.__version__})")
    if device != "cuda" and int(device[5:]) >= torch.cuda.device_count():
        raise BenchError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def run_dir(out: Path, name: str) -> Path:
    return Path(out) / name


def ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from None


def _needs(bench: Workbench, cell: Cell) -> list[tuple[str, str, Setting]]:
    """The (split, codec label, setting) transcodes a pending cell reads."""
    if cell.codec_label is None:
        return []
    setting = bench.transcodes.setting(cell)
    return [(split, cell.codec_label, setting) for split in cell.exp.scenario(cell.scenario).transcodes]


def _transcode_stage(bench: Workbench, pending: list[Cell]) -> None:
    todo: dict[str, tuple[ResolvedExperiment, str, str, Setting]] = {}
    for cell in pending:
        for split, label, q in _needs(bench, cell):
            key = bench.transcodes.needed(cell.exp, split, label, q)
            if key is not None:
                todo.setdefault(key, (cell.exp, split, label, q))
    total = sum(len(bench.splits.get(exp, split)) for exp, split, _, _ in todo.values())
    with bench.progress.bar(total, f"transcode ({len(todo)} sets)", "images") as bar:
        bench.transcodes.make(list(todo.values()), bar)


def compute_cell(bench: Workbench, cell: Cell) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One cell's row and, where its scenario keeps them, its sample images (what the store keeps)."""
    t0 = time.perf_counter()
    scenario = cell.exp.scenario(cell.scenario)
    result = scenario.run(bench.context(cell))
    result.row["record"]["wall_s"] = time.perf_counter() - t0
    result.row["record"]["torch_threads"] = torch.get_num_threads()  # float results depend on it
    sample = None
    if scenario.samples and result.transcoded is not None:
        sample = rows.sample(cell, bench.splits.get(cell.exp, "val"), result.transcoded)
    return result.row, sample


def _recorder(bench: Workbench, store: Store, run_id: str) -> Callable[[dict[str, Any], dict[str, Any] | None], None]:
    def record(row: dict[str, Any], sample: dict[str, Any] | None) -> None:
        store.record({**row, "run_id": run_id, "created": time.time()})
        if sample is not None:
            store.put_sample(**sample)
        bench.counters.cells_run += 1

    return record


def _evaluate_stage(bench: Workbench, pending: list[Cell], store: Store, run_id: str) -> None:
    record = _recorder(bench, store, run_id)
    order = {name: i for i, name in enumerate(SCENARIOS.names())}  # A, B, C, D, then plugins
    with bench.progress.bar(len(pending), "cells", "cells") as bar:
        for cell in sorted(pending, key=lambda c: (c.exp.index, order.get(c.scenario, len(order)))):
            record(*compute_cell(bench, cell))
            bar.update()


def _check(opts: RunOptions) -> None:
    if opts.executor not in EXECUTORS:
        raise BenchError(f"--executor {opts.executor}: expected one of {', '.join(EXECUTORS)}")
    if opts.cell_threads is not None and opts.cell_threads < 1:
        raise BenchError(f"--cell-threads {opts.cell_threads}: must be at least 1")
    if opts.pixels not in PIXELS:
        raise BenchError(f"--pixels {opts.pixels}: expected one of {', '.join(PIXELS)}")
    if opts.address is not None and opts.executor != "ray":
        raise BenchError(f"--address {opts.address}: only --executor ray connects to a cluster")


def check_precisions(plan: Plan, device: str) -> None:
    """Fail before any work when a schedule asks for a precision the cells' device lacks."""
    if torch.device(device).type == "cuda":
        return
    for exp in plan.experiments:
        for name, schedule, _ in exp.schedules():
            if schedule.precision == "fp16":
                raise BenchError(f"experiments[{exp.index}].{name}: precision fp16 needs a CUDA device "
                                 f"(the cells run on {device}); use bf16 on a CPU")


def _workbench(plan: Plan, opts: RunOptions, cache: Cache) -> tuple[Workbench, RayExecutor | None, str]:
    """The run's workbench, its Ray executor (``--executor ray``) and the cells' device."""
    progress = Progress(opts.quiet)
    if opts.executor == "local":
        device = resolve_device(opts.device)
        return (Workbench(plan, cache, device, opts.workers, opts.force, progress, pixels=opts.pixels),
                None, device)
    ray = RayExecutor(opts)
    try:  # the cells' device is the cluster's; the driver only transcodes, on CPU workers
        device = ray.device(opts.device)
    except BaseException:
        ray.close()
        raise
    return (Workbench(plan, cache, "cpu", max(opts.workers, 2), opts.force, progress, ray.pool,
                      pixels=opts.pixels), ray, device)


def _stages(bench: Workbench, ray: RayExecutor | None, cells: list[Cell], pending: list[Cell], store: Store,
            run_id: str, opts: RunOptions, device: str) -> None:
    """Transcode what the pending cells read, then compute the cells (here, or on Ray)."""
    if ray is None:
        _transcode_stage(bench, pending)
        bench.transcodes.close()  # the pool's processes would sit idle (and in memory) through the cells
        torch.set_num_threads(cell_threads(opts))
        _evaluate_stage(bench, pending, store, run_id)
        return
    job = ray.job(bench, run_id, device, cells)
    ray.start_references(bench, pending, job)
    _transcode_stage(bench, pending)
    ray.evaluate(bench, pending, store, job, _recorder(bench, store, run_id))


def run(plan: Plan, opts: RunOptions) -> dict[str, Any]:
    """Run every pending cell of ``plan``; return the run summary (also in ``summary.json``).

    The splits are read and fingerprinted first: a cell's key holds their content, so what
    is pending is known only then (and a bad input fails before anything is stored)."""
    t0 = time.perf_counter()
    _check(opts)
    folder = run_dir(opts.out, plan.grid.name)
    ensure_writable(folder)
    cache = Cache(opts.cache_dir or Path(opts.out) / "cache")
    ensure_writable(cache.root)
    bench, ray, device = _workbench(plan, opts, cache)
    try:
        check_precisions(plan, device)
    except BenchError:
        bench.close()
        if ray is not None:
            ray.close()
        raise
    store, run_id, status, threads = None, uuid.uuid4().hex[:12], "failed", torch.get_num_threads()
    try:
        cells = bench.key_cells(plan.cells)
        store = Store(folder / "results.sqlite")
        done = set() if opts.force else store.finished_keys()
        pending = [c for c in cells if c.key not in done]
        bench.counters.cells_total, bench.counters.cells_skipped = len(cells), len(cells) - len(pending)
        bench.progress.say(f"run {plan.grid.name}: {len(cells)} cells, {len(pending)} to compute, device {device}")
        store.begin_run(run_id, plan.grid.name, plan.record(), [c.key for c in cells],
                        provenance(device, opts.argv))
        _stages(bench, ray, cells, pending, store, run_id, opts, device)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if status != "finished" and store is not None:  # record the stop first: closing may be interrupted too
            store.end_run(run_id, status, {**asdict(bench.counters), "status": status})
            store.close()
        bench.close()
        if ray is not None:
            ray.close()
        torch.set_num_threads(threads)
    from bench.report import write_outputs, write_summary

    summary = {**asdict(bench.counters), "wall_s": round(time.perf_counter() - t0, 3),
               "run_id": run_id, "status": status, "device": device}
    store.end_run(run_id, status, summary)  # first: the report shows the run finished, with its end time
    store.close()
    write_summary(folder, summary)
    write_outputs(folder)
    return summary
