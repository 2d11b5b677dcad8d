"""Where a run's work happens: this machine (a process pool), or a Ray cluster.

With ``--executor ray`` the transcode stage's chunks and every cell are Ray tasks with
their resource needs (a CPU; a GPU too when cells run on CUDA). The driver stays the only
writer of the store: a cell task returns its row (and its sample images) and the driver
records it as it arrives, so a stop keeps every finished cell. Workers read and write the
cache, which must therefore be on a path every node sees (a shared file system); cache
entries are written under a temporary name and renamed into place, so concurrent writers
and killed workers never leave a half-written entry behind.

Cells of an experiment share its scenario-A model: it is trained once, as its own task
submitted before the transcode stage (they run side by side), and the cells are sent once
it is in the cache.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError
from bench.workbench import RunState, Workbench

if TYPE_CHECKING:
    from bench.grid import Cell
    from bench.runner import RunOptions
    from bench.store import Store

EXECUTORS = ("local", "ray")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray: Ray is not installed here (pip install 'bench[ray]')") from None
    return ray


def _unwrap(exc: BaseException) -> BaseException:
    """A task's own exception (a ``CodecError``, say) rather than Ray's wrapper of it."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _single_threaded(fn: Callable[..., Any], *args: Any) -> Any:
    """A transcode chunk on a Ray worker: one torch thread, as in the local pool's workers
    (a worker that ran a cell before may have more), so neural streams come out the same."""
    import torch

    torch.set_num_threads(1)
    return fn(*args)


#: The share of a GPU a neural transcode chunk asks for: a small codec's batch leaves most
#: of a GPU idle, so several chunks share one.
GPU_SHARE = 0.25


def _neural(fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """Whether a transcode task codes with a neural codec (a chunk's sets are of one kind)."""
    from bench.codecs import CODECS
    from bench.transcode import _worker_sets

    return fn is _worker_sets and CODECS.get(args[0][0][0]).kind == "neural"


class RayPool:
    """The ``submit`` side of a ``concurrent.futures.Executor`` on Ray: the transcode stage
    hands its chunks to it exactly as to the local process pool. With ``gpu`` (the run's
    cells are on CUDA) a neural codec's chunk asks for a share of a GPU and runs there as one
    batch, so its streams are made on the kind of device that decodes them."""

    def __init__(self, ray: Any, gpu: bool = False) -> None:
        self.ray = ray
        self._remote = ray.remote(num_cpus=1, max_retries=2)(_single_threaded)
        self._gpu_remote = (ray.remote(num_cpus=1, num_gpus=GPU_SHARE, max_retries=2)(_single_threaded)
                            if gpu else None)
        #: The cluster's CPUs: how many chunks the transcode stage keeps in flight.
        self._max_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        if self._gpu_remote is not None and _neural(fn, args):
            from bench.transcode import sets_on_device

            ref = self._gpu_remote.remote(sets_on_device, "cuda", *args)
        else:
            ref = self._remote.remote(fn, *args)
        self._refs.append(ref)
        inner, outer = ref.future(), Future()

        def done(f: Future[Any]) -> None:
            if f.cancelled():
                outer.cancel()
            elif f.exception() is not None:
                outer.set_exception(_unwrap(f.exception()))
            else:
                outer.set_result(f.result())

        inner.add_done_callback(done)
        return outer

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for ref in self._refs:
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - finished already, or the cluster is gone
                    pass
        self._refs = []


@dataclass
class Job:
    """What a cell task needs to rebuild the run on a worker: the grid (validated again
    there), the cache, the device and what the driver already decided (``RunState``)."""

    run_id: str
    grid: dict[str, Any]
    source: str
    cache_root: str
    device: str
    force: bool
    quiet: bool
    cwd: str
    workers: int
    #: Torch threads per cell (and CPUs it asks for): a cell computes the same numbers with
    #: the same thread count, whichever executor runs it.
    threads: int = 1
    state: RunState = field(default_factory=RunState)
    #: The driver's cell keys, in the plan's order: a worker must make the same.
    cells: list[str] = field(default_factory=list)


#: One Workbench per run and worker process: originals, scenario-A models and latents are
#: loaded once and shared by the cells that worker gets; with the run's keyed cells.
_BENCHES: dict[str, tuple[Workbench, dict[str, Cell]]] = {}


def _worker_bench(job: Job) -> tuple[Workbench, dict[str, Cell]]:
    if job.run_id not in _BENCHES:
        from bench.cache import Cache
        from bench.config import parse_grid
        from bench.grid import resolve
        from bench.progress import Progress

        if Path(job.cwd).is_dir():  # relative paths in the grid mean the driver's folder
            os.chdir(job.cwd)
        plan = resolve(parse_grid(job.grid, job.source), job.source)
        _BENCHES.clear()
        bench = Workbench(plan, Cache(job.cache_root), job.device, job.workers, job.force, Progress(job.quiet),
                          lambda n: None, job.state)
        cells = bench.key_cells(plan.cells)
        if len(cells) != len(job.cells) or any(c.key != k for c, k in zip(cells, job.cells)):
            raise BenchError(f"worker {socket.gethostname()}:{os.getpid()} resolves the grid to other cells than "
                             "the driver (other plugin versions or files there?)")
        _BENCHES[job.run_id] = bench, {c.key: c for c in cells}
    bench, cells = _BENCHES[job.run_id]
    bench.transcodes.choices.update(job.state.choices)
    bench.models.fresh.update(job.state.fresh_weights)
    import torch

    torch.set_num_threads(job.threads)
    return bench, cells


def reference_task(job: Job, exp_index: int) -> int:
    """Train (or load) an experiment's scenario-A model on a worker; the trainings done."""
    bench, _ = _worker_bench(job)
    bench.models.reference(bench.plan.experiments[exp_index])
    return bench.counters.trainings


def cell_task(job: Job, key: str) -> tuple[dict[str, Any], dict[str, Any] | None, int]:
    """One cell on a worker: its row, its sample images (scenario B) and trainings done."""
    from bench.runner import compute_cell

    bench, cells = _worker_bench(job)
    before = bench.counters.trainings
    row, sample = compute_cell(bench, cells[key])
    row["record"]["ran_on"] = f"{socket.gethostname()}:{os.getpid()}"  # which node and worker
    return row, sample, bench.counters.trainings - before


def cell_threads(opts: RunOptions) -> int:
    """Torch threads a cell runs with: ``--cell-threads``, else torch's default here."""
    import torch

    return opts.cell_threads or torch.get_num_threads()


class RayExecutor:
    """Runs the transcode chunks and the cells of a run as Ray tasks."""

    def __init__(self, opts: RunOptions) -> None:
        self.ray = _ray()
        self.opts = opts
        self.started = False
        if not self.ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": not opts.quiet,
                                      "logging_level": "WARNING"}
            if opts.address:
                kwargs["address"] = opts.address
            else:  # a Ray instance on this machine, as wide as --workers
                kwargs["num_cpus"] = opts.workers
                if (opts.cell_threads or 1) > opts.workers:
                    raise BenchError(f"--cell-threads {opts.cell_threads}: a cell would need more CPUs than the "
                                     f"{opts.workers} of this Ray instance (--workers)")
            try:
                self.ray.init(**kwargs)
            except ConnectionError as exc:
                raise BenchError(f"--address {opts.address}: no Ray cluster answers there ({exc})") from None
            self.started = True
        self._reference_refs: dict[Any, str] = {}
        self._trainings = 0
        #: Neural transcode chunks go to GPU workers (the cells' device is CUDA).
        self.transcode_on_gpu = False

    def device(self, requested: str) -> str:
        """The cells' device: ``auto`` is CUDA when the cluster has GPUs (the driver need not);
        on CUDA the neural transcode chunks run on GPU workers too."""
        if requested == "auto":
            requested = "cuda" if self.ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
        elif requested.startswith("cuda") and self.ray.cluster_resources().get("GPU", 0) == 0:
            raise BenchError(f"--device {requested}: the Ray cluster has no GPU")
        self.transcode_on_gpu = requested.startswith("cuda")
        return requested

    def pool(self, workers: int) -> RayPool:
        return RayPool(self.ray, gpu=self.transcode_on_gpu)

    def _resources(self, job: Job) -> dict[str, float]:
        return {"num_cpus": job.threads, "num_gpus": 1 if job.device.startswith("cuda") else 0}

    def job(self, bench: Workbench, run_id: str, device: str, cells: list[Cell]) -> Job:
        return Job(cells=[c.key for c in cells], run_id=run_id, grid=bench.plan.grid.model_dump(mode="json"), source=bench.plan.source,
                   cache_root=str(bench.cache.root.resolve()), device=device, force=self.opts.force,
                   quiet=self.opts.quiet, cwd=os.getcwd(), workers=self.opts.workers,
                   threads=cell_threads(self.opts), state=bench.state())

    def start_references(self, bench: Workbench, pending: list[Cell], job: Job) -> None:
        """Submit the training of every scenario-A model a pending cell needs and the cache
        lacks (or all of them with --force): they run while the driver transcodes."""
        task = self.ray.remote(**self._resources(job), max_retries=1)(reference_task)
        seen: set[str] = set()
        for cell in pending:
            exp = cell.exp
            if not exp.trains_reference:
                continue
            key = bench.models.reference_key(exp)
            if key in seen:  # experiments sharing a scenario-A model train it once
                continue
            seen.add(key)
            if self.opts.force or not bench.cache.has_model(key):
                self._reference_refs[task.remote(job, exp.index)] = key

    def evaluate(self, bench: Workbench, pending: list[Cell], store: Store, job: Job,
                 record: Callable[[dict[str, Any], dict[str, Any] | None], None]) -> None:
        """Wait for the scenario-A models, send every cell, record each row as it arrives."""
        ray = self.ray
        try:
            for ref in list(self._reference_refs):
                self._trainings += ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            raise _unwrap(exc) from None
        bench.counters.trainings += self._trainings
        bench.models.fresh.update(self._reference_refs.values())
        job.state = bench.state()  # the transcode stage may have searched more
        job_ref = ray.put(job)
        task = ray.remote(**self._resources(job), max_retries=1)(cell_task)
        refs = {task.remote(job_ref, cell.key): cell for cell in pending}
        with bench.progress.bar(len(pending), "cells", "cells") as bar:
            try:
                while refs:
                    ready, _ = ray.wait(list(refs), num_returns=1)
                    refs.pop(ready[0])
                    try:
                        row, sample, trainings = ray.get(ready[0])
                    except ray.exceptions.RayTaskError as exc:
                        raise _unwrap(exc) from None
                    bench.counters.trainings += trainings
                    record(row, sample)
                    bar.update()
            finally:
                for ref in refs:  # a failure or a stop: nothing left running on the cluster
                    ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
