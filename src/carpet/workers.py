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
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

__all__ = ["run_in_workers", "terminate_as_interrupt", "check_stop"]


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


def _die_with_parent(parent: int) -> None:
    """Worker initializer: default SIGTERM, no SIGINT, and death when the parent process ends."""
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


def _one_pool(fn, tasks: Sequence[Any], workers: int, flags: Path) -> Iterator[tuple[Any, Any, bool]]:
    """Yield ``(task, result_or_exception, started)`` as tasks end; a broken pool yields the rest
    with their ``BrokenProcessPool`` and whether they had started."""
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
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
                   lost: Callable[[Any, BaseException], Any]) -> Iterator[Any]:
    """Yield ``fn(task)`` for every task, computed in ``workers`` processes, in completion order.

    ``fn`` must be a top-level function and must not raise for an ordinary failure (return it
    instead). A task whose worker dies while it runs alone yields ``lost(task, exception)``; tasks
    that merely shared a broken pool are run again.
    """
    pending = list(tasks)
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
