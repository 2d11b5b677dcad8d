"""Crash safety: a run killed with SIGKILL at random moments and resumed each time ends with
the same table as an uninterrupted run — no duplicate row, no lost finished cell, and no
half-written cache entry read — and leaves no process behind (its forkserver and pool
workers die with it)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import tiny_grid, write_grid

#: The kill moments' seed (``BENCH_CRASH_SEED=N pytest tests/test_crash.py`` repeats the test
#: with other moments; scripts/crash_loop.sh runs ten in a row).
SEED = int(os.environ.get("BENCH_CRASH_SEED", "0"))
#: Kills before the run is left to finish.
KILLS = 5
#: The tiny grid's cells.
CELLS = 7
#: An environment variable every process a test's run starts inherits: how the test finds
#: them after the kill, whoever their parent is by then.
TAG = "BENCH_TEST_RUN_TAG"
#: How long a killed run's processes may outlive it (seconds).
GRACE_S = 10.0

linux_only = pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="reads /proc")


def _bench(grid: Path, out: Path, tag: str = "") -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "bench"
    return subprocess.Popen([str(exe), "run", "--grid", str(grid), "--out", str(out), "--quiet", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, TAG: tag})


def _tagged(tag: str) -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every live process carrying ``tag`` (a zombie's
    environment reads empty: it counts as gone)."""
    needle, found = f"{TAG}={tag}".encode(), {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):  # exited while being read
            continue
        found[int(proc.name)] = (ppid, cmd[:160])
    return found


def _assert_none_left(tag: str) -> None:
    """No process ``tag`` marks is alive, at the latest ``GRACE_S`` from now."""
    deadline = time.monotonic() + GRACE_S
    while (alive := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"alive {GRACE_S:.0f} s after the run was killed: {alive}"


def _ends_before(proc: subprocess.Popen[bytes], out: Path, seconds: float, stored: int) -> bool:
    """Whether ``proc`` ends within ``seconds`` and before ``stored`` cells are in its store."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        if time.monotonic() >= deadline or len(_rows(out)) >= stored:
            return False
        time.sleep(0.05)
    return True


def _began(out: Path) -> bool:
    db = out / "tiny" / "results.sqlite"
    if not db.exists():
        return False
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


def _rows(out: Path) -> list[tuple]:
    db = out / "tiny" / "results.sqlite"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT key, scenario, codec, quality, bpp, psnr, metrics FROM cells").fetchall()
    except sqlite3.OperationalError:  # killed before the schema was written
        return []
    finally:
        con.close()


def _table(out: Path) -> pd.DataFrame:
    lb = pd.read_csv(out / "tiny" / "leaderboard.csv")
    return lb.sort_values(["scenario", "codec", "quality", "metric"]).reset_index(drop=True)


@linux_only
def test_kill_and_resume_gives_the_uninterrupted_table(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.yaml", tiny_grid())
    clean = _bench(grid, tmp_path / "clean")
    t0 = time.monotonic()
    while clean.poll() is None and not _began(tmp_path / "clean"):
        time.sleep(0.05)
    startup = time.monotonic() - t0  # until the run is recorded: imports, grid, plan
    assert clean.wait(timeout=600) == 0, clean.stderr.read().decode()
    full = time.monotonic() - t0

    rng = random.Random(SEED)
    out, kills, seen, progress = tmp_path / "killed", 0, set(), []
    tag = uuid.uuid4().hex
    while True:
        proc = _bench(grid, out, tag)
        # up to KILLS random moments, each within the time the work still pending took in
        # the uninterrupted run (its cells' share of it, after the start-up), and at the
        # latest once a random number of the pending cells is stored (a run on cores that
        # others share can be faster than the clean one was), so that every kill comes
        # before the resumed run is done; then the run is left to finish (kills that always
        # came before the slowest step, the A training, would never let it through)
        if kills < KILLS:
            work = (full - startup) * (CELLS - len(seen)) / CELLS
            moment = startup + rng.uniform(0.1, 0.7) * work
            stored = rng.randint(len(seen) + 1, CELLS) if len(seen) < CELLS else CELLS + 1
        else:
            moment, stored = 600.0, CELLS + 1
        if _ends_before(proc, out, moment, stored):
            assert proc.returncode == 0, proc.stderr.read().decode()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        _assert_none_left(tag)  # its forkserver and pool workers died with it
        rows = _rows(out)
        keys = [r[0] for r in rows]
        assert len(keys) == len(set(keys))  # no duplicate row
        assert seen <= set(keys)  # no finished cell lost
        seen = set(keys)
        progress.append(len(seen))
    _assert_none_left(tag)  # nor does a run that finished
    assert kills >= 1
    print(f"seed {SEED}: {kills} kills (cells stored after each: {progress}), "
          f"uninterrupted run {full:.1f} s (start-up {startup:.1f} s)")
    rows = _rows(out)
    assert len(rows) == len({r[0] for r in rows}) == CELLS
    # the same table as the run that was never interrupted (bit for bit: seeded training, real bytes)
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "clean"))
    # no half-written cache entry left where a reader would take it
    for entry in (out / "cache" / "transcode").glob("*/*"):
        assert entry.name.startswith(".") or (entry / "meta.json").is_file(), entry


def test_sigint_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.yaml", tiny_grid())
    out = tmp_path / "out"
    proc = _bench(grid, out)
    deadline = time.monotonic() + 300
    while not _rows(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first cell is stored
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    err = proc.stderr.read().decode()
    assert "bench: interrupted; finished cells are stored. Run the same command again to resume." in err
    assert "Traceback" not in err
    stored = {r[0] for r in _rows(out)}
    assert 1 <= len(stored) < 7
    con = sqlite3.connect(out / "tiny" / "results.sqlite")
    assert con.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    con.close()
    resumed = _bench(grid, out)
    assert resumed.wait(timeout=600) == 0
    assert stored < {r[0] for r in _rows(out)} and len(_rows(out)) == 7


def _kill_once_busy(proc: subprocess.Popen[bytes], tag: str, ready: Callable[[dict[int, tuple[int, str]]], bool]) -> None:
    """SIGKILL ``proc`` as soon as ``ready`` holds for its processes, then expect them all gone."""
    deadline = time.monotonic() + 300
    while not ready(procs := _tagged(tag)):
        assert proc.poll() is None and time.monotonic() < deadline, (proc.poll(), procs)
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _assert_none_left(tag)


@linux_only
def test_a_killed_run_takes_its_forkserver_and_workers_with_it(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.yaml", tiny_grid())
    tag = uuid.uuid4().hex
    proc = _bench(grid, tmp_path / "out", tag)

    def pool_running(procs: dict[int, tuple[int, str]]) -> bool:  # two workers forked by its forkserver
        servers = {pid for pid, (ppid, cmd) in procs.items() if ppid == proc.pid and "forkserver" in cmd}
        return sum(ppid in servers for ppid, _ in procs.values()) >= 2

    _kill_once_busy(proc, tag, pool_running)


#: A pool on the ``spawn`` context (where there is no forkserver) with bench's initializer,
#: its two workers busy when it says "ready".
SPAWN_POOL = textwrap.dedent("""
    import multiprocessing, os, time
    from concurrent.futures import ProcessPoolExecutor
    from bench.transcode import _init_worker

    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(os.getpid(),))
    pids = set()
    while len(pids) < 2:  # each worker has run its initializer
        pids |= {f.result() for f in [pool.submit(os.getpid) for _ in range(4)]}
    busy = [pool.submit(time.sleep, 300) for _ in range(2)]
    print(" ".join(map(str, pids)), flush=True)
    time.sleep(600)
""")


@linux_only
def test_spawned_workers_exit_when_their_run_is_killed() -> None:
    tag = uuid.uuid4().hex
    # stderr: its resource tracker reports the semaphores it cleans up after the kill
    proc = subprocess.Popen([sys.executable, "-c", SPAWN_POOL], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, TAG: tag})
    workers = {int(p) for p in proc.stdout.readline().split()}
    assert len(workers) == 2 and workers <= set(_tagged(tag)), proc.poll()
    _kill_once_busy(proc, tag, lambda procs: True)
