"""The Ray executor: a Ray instance on this machine with 2 CPUs runs the same grid as the
local executor, and the rows are the same (everything but timings and where they ran)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray  # the ray extra is part of `make test`: a missing Ray fails here, it is not skipped

from bench.config import parse_grid
from bench.errors import BenchError
from bench.grid import resolve
from bench.runner import RunOptions, run
from bench.store import Store
from tests.helpers import bench, tiny_grid, write_grid

#: Row fields that say when, where and how fast a cell ran, not what it measured.
RUN_FIELDS = {"run_id", "created"}
RECORD_TIMINGS = {"wall_s", "encode_s_mean", "decode_s_mean", "cost", "ran_on"}


def ray_grid() -> dict:
    """A, B and C on a scene set, a per-dataset bitrate target, and scenario D on the
    embedded hyperprior: every kind of cell the executor ships."""
    grid = tiny_grid(name="ray")
    grid["codecs"] = [{"codec": "jpeg", "qualities": [20]},
                      {"codec": "webp", "label": "webp-0.8", "targets_bpp": [0.8]},
                      {"codec": "bmshj2018-hyperprior", "label": "hyperprior", "weights": "embedded",
                       "qualities": [1]}]
    exp = grid["experiments"][0]
    exp["dataset"] = {"name": "shapes", "n_train": 48, "n_val": 24, "size": 48}
    exp["model"] = {"name": "tiny-resnet"}
    exp["scenarios"] = ["A", "B", "C", "D"]
    exp["compressed_domain"] = {"train": {"epochs": 1, "batch_size": 16, "lr": 0.003}, "codecs": ["hyperprior"],
                                "variants": [{"arch": "aa"}]}
    return grid


def comparable(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in RUN_FIELDS}
    record = dict(out.pop("record"))
    for k in RECORD_TIMINGS:
        record.pop(k, None)
    record.pop("compressed_domain", None)  # trained: True/False and seconds
    if "search" in record.get("rate_control", {}):
        record["rate_control"] = {**record["rate_control"],
                                  "search": {k: v for k, v in record["rate_control"]["search"].items() if k != "search_s"}}
    return {**out, "record": record}


def rows(folder: Path) -> dict[str, dict]:
    store = Store(folder / "results.sqlite")
    try:
        return {r["key"]: comparable(r) for r in store.cells()}
    finally:
        store.close()


def test_ray_and_local_runs_give_the_same_rows(tmp_path: Path) -> None:
    plan = resolve(parse_grid(ray_grid()), "ray.yaml")
    # one torch thread per cell in both (float sums depend on the thread count): Ray runs two
    # cells at a time on its 2 CPUs, the local executor one after another
    local = run(plan, RunOptions(out=tmp_path / "local", workers=2, quiet=True, cell_threads=1))
    remote = run(plan, RunOptions(out=tmp_path / "ray", workers=2, quiet=True, executor="ray", cell_threads=1))
    assert not ray.is_initialized()  # the instance the run started is shut down again
    assert local["status"] == remote["status"] == "finished"
    assert remote["cells_run"] == local["cells_run"] == len(plan.cells) == 8
    assert remote["trainings"] == local["trainings"] == 5  # A once, 3 × C, D (not A once per cell)
    assert remote["transcodes"] == local["transcodes"]
    store = Store(tmp_path / "ray" / "ray" / "results.sqlite")
    try:  # every cell ran in a Ray worker process, none in this one
        ran_on = [r["record"]["ran_on"] for r in store.cells()]
        assert len(ran_on) == 8 and all(not w.endswith(f":{os.getpid()}") for w in ran_on)
    finally:
        store.close()
    a, b = rows(tmp_path / "local" / "ray"), rows(tmp_path / "ray" / "ray")
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key] == b[key], key
    scenarios = {r["scenario"] for r in b.values()}
    assert scenarios == {"A", "B", "C", "D:aa"}
    # the driver wrote the visual grid's samples it got back from the B cells
    store = Store(tmp_path / "ray" / "ray" / "results.sqlite")
    try:
        assert len(store.samples()) == 3
    finally:
        store.close()
    # resumed on Ray: nothing left to do, nothing re-encoded
    again = run(plan, RunOptions(out=tmp_path / "ray", workers=2, quiet=True, executor="ray", cell_threads=1))
    assert (again["cells_run"], again["encodes"], again["trainings"]) == (0, 0, 0)


def test_ray_errors_name_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = write_grid(tmp_path / "g.yaml", tiny_grid())
    assert bench("run", "--grid", grid, "--out", tmp_path / "o", "--address", "127.0.0.1:1", "--quiet") == 2
    assert capsys.readouterr().err.strip() == ("bench: error: --address 127.0.0.1:1: only --executor ray "
                                               "connects to a cluster")
    assert bench("run", "--grid", grid, "--out", tmp_path / "o", "--cell-threads", "0", "--quiet") == 2
    assert capsys.readouterr().err.strip() == "bench: error: --cell-threads 0: must be at least 1"
    with pytest.raises(BenchError, match="--device cuda: the Ray cluster has no GPU"):
        run(resolve(parse_grid(tiny_grid())), RunOptions(out=tmp_path / "o2", quiet=True, executor="ray",
                                                         device="cuda", workers=2))
    assert not ray.is_initialized()


def test_neural_chunks_ask_for_a_gpu_share_when_the_cells_run_on_cuda() -> None:
    """The routing of transcode chunks (a stand-in for Ray records what each task asks for;
    a real GPU worker could not be tried here): with the cells on CUDA a neural codec's chunk
    asks for a share of a GPU and runs with its codec there; a traditional codec's stays on a CPU."""
    from concurrent.futures import Future

    from bench.executors import GPU_SHARE, RayPool
    from bench.transcode import _worker_sets, sets_on_device

    asked: list[tuple[dict, tuple]] = []

    class Ref:
        def future(self) -> Future:
            f: Future = Future()
            f.set_result("done")
            return f

    class Remote:
        def __init__(self, options: dict) -> None:
            self.options = options

        def remote(self, *args):
            asked.append((self.options, args))
            return Ref()

    class FakeRay:
        def remote(self, **options):
            return lambda fn: Remote(options)

        def cluster_resources(self) -> dict:
            return {"CPU": 4, "GPU": 1}

    neural = [("bmshj2018-hyperprior", {"weights": "embedded"}, 1, None, True)]
    on_gpu = RayPool(FakeRay(), gpu=True)
    assert on_gpu.submit(_worker_sets, neural, []).result() == "done"
    on_gpu.submit(_worker_sets, [("jpeg", {}, 50, None, False)], [])
    on_cpu = RayPool(FakeRay(), gpu=False)
    on_cpu.submit(_worker_sets, neural, [])
    (neural_opts, neural_args), (jpeg_opts, jpeg_args), (cpu_opts, cpu_args) = asked
    assert neural_opts["num_gpus"] == GPU_SHARE and neural_args[:3] == (sets_on_device, "cuda", neural)
    assert "num_gpus" not in jpeg_opts and jpeg_args[0] is _worker_sets
    assert "num_gpus" not in cpu_opts and cpu_args[0] is _worker_sets
