"""Local worker processes for ``carpet batch``: they end with their parent, and a lost one costs one task.

``concurrent.futures.ProcessPoolExecutor`` alone has two habits a long batch cannot live with:

* when one worker dies (killed, out of memory) the pool is *broken* and every queued task fails
  with it; here the tasks that had not started are resubmitted to a fresh pool, and the ones that
  were running when it broke are rerun one at a time, so only a task that kills its worker by
  itself is reported lost;
* workers outlive a parent that is terminated; here each worker asks the kernel to kill it when its
  parent dies (Linux ``PR_SET_PDEATHSIG``: covers SIGKILL of the parent too), ignores Ctrl-C (the
  parent decides), and SIGTERM of the parent is turned into ``KeyboardInterrupt`` so that it stops
  its workers and exits through the same clean-up as Ctrl-C. While a pool runs, the handler only
  sets a flag that the waiting loop checks four times a second: an exception raised by a signal
  handler is lost (and printed) when it lands in a finalizer or a fork hook, and the stop must not be.

Which tasks had started is known from a flag file each worker creates before its task and
removes after it (a killed worker cannot remove it). No library offers this; it is small.

Start-up is paid once per worker, not per task: workers are forked (``fork`` start method) and live
for the whole run, so modules the parent imported before (``preload``) cost nothing in the workers,
and what a worker imports or caches during its first task serves its later ones. The cores are
split between the workers: each worker's ITK thread pool (SimpleITK's filters) gets ``cores // workers``
threads, so that ``workers`` processes do not run ``workers × cores`` threads (OpenMP, OpenBLAS and MKL
pools get the same number through the environment if they start in the worker; numpy's OpenBLAS,
loaded by the parent, keeps its own: carpet's studies make no BLAS calls large enough to thread).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

__all__ = ["run_in_workers", "terminate_as_interrupt", "check_stop", "limit_native_threads", "usable_cores"]


_stop_requested = threading.Event()


@contextmanager
def terminate_as_interrupt(raise_now: bool = True) -> Iterator[None]:
    """While active (main thread only), SIGTERM and SIGINT set the flag :func:`run_in_workers`
    checks and, with ``raise_now`` (work done in this process), raise ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        _stop_requested.set()
        if raise_now:
            raise KeyboardInterrupt(f"signal {signum}")

    _stop_requested.clear()
    previous = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop_requested.clear()


def check_stop() -> None:
    """Raise ``KeyboardInterrupt`` if SIGTERM/SIGINT arrived (even if its own exception was lost)."""
    if _stop_requested.is_set():
        raise KeyboardInterrupt("stop requested")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container or ``taskset`` may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


#: Environment variables read by native thread pools when they start (OpenMP, OpenBLAS, MKL, ITK).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


def limit_native_threads(threads: int) -> None:
    """Give ITK's thread pool (SimpleITK filters) ``threads`` threads, now and in a later import, and
    the same number to OpenMP, OpenBLAS and MKL pools that have not started yet (through the environment)."""
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    sitk = sys.modules.get("SimpleITK")
    if sitk is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _start_worker(parent: int, threads: int) -> None:
    """Worker initializer: die with the parent (:func:`_die_with_parent`), its share of the cores."""
    _die_with_parent(parent)
    limit_native_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Default SIGTERM, no SIGINT, and death when the parent process ends."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the parent's handler
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from carpet.io.outdir import close_inherited_locks

    close_inherited_locks()  # the --out lock is the parent's: it must end with the parent
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own clean-up has to do
        pass
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _flagged(fn: Callable[[Any], Any], task: Any, flag: str) -> Any:
    Path(flag).touch()
    result = fn(task)
    Path(flag).unlink()
    return result


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and end the running workers now (they hold no lock and no output
    that counts: a study is moved into place only complete)."""
    processes = list((pool._processes or {}).values())  # noqa: SLF001 - no public handle on them
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(timeout=5)


#: Forked workers inherit what the parent imported (Python 3.14 makes ``forkserver`` the default on Linux).
_FORK = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


def _one_pool(fn, tasks: Sequence[Any], workers: int, flags: Path) -> Iterator[tuple[Any, Any, bool]]:
    """Yield ``(task, result_or_exception, started)`` as tasks end; a broken pool yields the rest
    with their ``BrokenProcessPool`` and whether they had started."""
    workers = min(workers, len(tasks))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_FORK, initializer=_start_worker,
                             initargs=(os.getpid(), max(1, usable_cores() // workers))) as pool:
        futures = {}
        for i, task in enumerate(tasks):
            flag = flags / f"{id(task)}-{i}"
            futures[pool.submit(_flagged, fn, task, str(flag))] = (task, flag)
        try:
            pending = set(futures)
            while pending:
                check_stop()
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task, flag = futures[fut]
                    try:
                        outcome, started = fut.result(), False
                    except Exception as exc:  # noqa: BLE001 - lost worker, or a result that did not pickle
                        outcome, started = exc, flag.exists()
                        flag.unlink(missing_ok=True)
                    yield task, outcome, started
        except BaseException:
            _stop(pool)
            raise


def run_in_workers(fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int,
                   lost: Callable[[Any, BaseException], Any], preload: Sequence[str] = ()) -> Iterator[Any]:
    """Yield ``fn(task)`` for every task, computed in ``workers`` processes, in completion order.

    ``fn`` must be a top-level function and must not raise for an ordinary failure (return it
    instead). A task whose worker dies while it runs alone yields ``lost(task, exception)``; tasks
    that merely shared a broken pool are run again. Tasks start in the order given (put the longest
    first, so that no long task starts last). ``preload``: modules imported here before the workers
    are forked, so that they inherit them instead of each importing them. Each worker's native
    thread pools get ``cores // workers`` threads (at least 1; a task rerun alone gets every core).
    """
    pending = list(tasks)
    for module in preload:
        try:
            importlib.import_module(module)
        except ImportError:  # only a saving: a worker that needs it imports it (and fails) itself
            pass
    with tempfile.TemporaryDirectory(prefix="carpet-workers-") as tmp:
        flags = Path(tmp)
        while pending:
            again, suspects = [], []
            for task, outcome, started in _one_pool(fn, pending, workers, flags):
                if not isinstance(outcome, BaseException):
                    yield outcome
                elif not isinstance(outcome, BrokenProcessPool):
                    yield lost(task, outcome)
                else:
                    (suspects if started else again).append(task)
            for task in suspects:  # alone, so that a task that kills its worker names itself
                for _, outcome, _ in _one_pool(fn, [task], 1, flags):
                    yield lost(task, outcome) if isinstance(outcome, BaseException) else outcome
            if again and len(again) == len(pending):  # workers die before any task starts
                for task in again:
                    yield lost(task, BrokenProcessPool("workers ended before starting a task"))
                return
            pending = again
