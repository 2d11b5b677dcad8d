"""No process outlives the run that started it, SIGKILL included.

A run's process pool forks its workers from a forkserver. Neither notices the run dying on
its own: the workers hold both ends of their task queue and the server's "alive" pipe, so
both would keep computing and waiting after a ``kill -9``. On Linux the kernel signals
them instead (``PR_SET_PDEATHSIG``): the forkserver gets SIGKILL when the run's thread that
started it exits, each worker when the forkserver does. Elsewhere a worker polls for the
run from a thread, and the server exits by itself once its last client is gone.

``bench.transcode.make_pool`` preloads this module in the forkserver with
``BENCH_FORKSERVER_OF`` (the run's pid) set for that launch only: importing it there is
what arms the server. Imported anywhere else it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

#: Set (to the run's pid) in the environment the forkserver is launched with, and nowhere else.
SERVER_ENV = "BENCH_FORKSERVER_OF"
#: How often a process without the kernel's help looks for its run (seconds).
POLL_S = 0.5
#: The exit status of a process that found its run gone.
EXIT_ORPHANED = 70

_PR_SET_PDEATHSIG = 1
#: "server" in an armed forkserver, "worker" in each process the server forks.
_role: str | None = None


def parent_death_signal() -> bool:
    """Ask the kernel to SIGKILL this process when its parent's thread that started it
    exits; False where ``prctl`` is missing (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def exit_with_parent(parent_pid: int) -> bool:
    """Die with the parent ``parent_pid`` (kernel-signalled), or exit now when it is already
    gone (it died before the signal was asked for). False, and nothing done, without prctl."""
    if not parent_death_signal():
        return False
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)
    return True


def watch(pid: int) -> None:
    """Exit this process (from a daemon thread, polling) once process ``pid`` is gone: the
    fallback where the kernel does not signal. ``pid`` is the parent or any ancestor."""
    direct = os.getppid() == pid

    def gone() -> bool:
        if direct:  # an orphan is re-parented at once: exact, and blind to pid reuse
            return os.getppid() != pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def loop() -> None:
        while not gone():
            time.sleep(POLL_S)
        os._exit(EXIT_ORPHANED)

    if gone():
        os._exit(EXIT_ORPHANED)
    threading.Thread(target=loop, name="bench-watch-run", daemon=True).start()


def exit_with_run(run_pid: int) -> None:
    """In a pool worker (its initializer): make sure it exits when the run ``run_pid`` does.
    A forkserver's worker is covered from the moment it was forked (``_arm_server``); one
    the run started itself (the ``spawn`` context) watches the run from a thread, because
    the run's thread that started it may end before the run does."""
    if _role != "worker":
        watch(run_pid)


def _after_fork_in_child(server_pid: int, run_pid: int) -> None:
    global _role
    if _role != "server":  # a worker's own fork: its parent is not the server
        return
    _role = "worker"
    if not exit_with_parent(server_pid):
        watch(run_pid)


def _arm_server(run_pid: int) -> None:
    """In the forkserver: die with the run, and have every worker it forks die with the
    server. Without prctl no thread is started here (a threaded server would fork unsafely):
    the server exits on its own once the run and its workers, which watch the run, are gone."""
    global _role
    exit_with_parent(run_pid)
    _role = "server"
    server = os.getpid()
    os.register_at_fork(after_in_child=lambda: _after_fork_in_child(server, run_pid))


if (_run := os.environ.pop(SERVER_ENV, None)) is not None and _run.isdigit():
    _arm_server(int(_run))
