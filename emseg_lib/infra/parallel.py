"""Work spread over processes: slices of a volume, threshold pairs of a grid.

:func:`worker_pool` gives a pool whose ``map`` runs a picklable function over items in
``workers`` processes, or in this process when ``workers == 1``. Results come back in input
order, so the output does not depend on the number of workers. Workers are forked where the
platform can (no re-import of the caller's script, which may be a notebook or stdin); they
run NumPy/SciPy/scikit-image code only, never torch.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from emseg_lib.errors import EmsegInputError

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """``workers`` if given (>= 1), else every available core."""
    if workers is None:
        return available_cores()
    if workers < 1:
        raise EmsegInputError(f"--workers must be >= 1, got {workers}")
    return int(workers)


class SerialPool:
    """The in-process stand-in for a process pool (``workers == 1``)."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``fn`` applied to every item, in order."""
        return map(fn, items)


class ProcessPool:
    """A process pool whose ``map`` keeps the input order."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``fn`` applied to every item in the worker processes, results in input order."""
        return self._executor.map(fn, items)


def _ignore_ctrl_c() -> None:
    """Worker initialiser: Ctrl-C reaches the whole process group; the parent handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def worker_pool(workers: int | None = None) -> Iterator[SerialPool | ProcessPool]:
    """A pool of ``workers`` processes (default: every core); serial when 1.

    Workers ignore Ctrl-C (no traceback per worker): the parent gets the KeyboardInterrupt,
    and when the ``with`` block ends with an exception the work not yet started is cancelled.
    """
    count = resolve_workers(workers)
    if count == 1:
        yield SerialPool()
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    executor = ProcessPoolExecutor(count, mp_context=context, initializer=_ignore_ctrl_c)
    try:
        yield ProcessPool(executor)
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def parallel_map(fn: Callable[[Any], R], items: list[Any], workers: int | None = None
                 ) -> list[R]:
    """``[fn(item) for item in items]`` over ``workers`` processes (no more than items)."""
    count = min(resolve_workers(workers), max(len(items), 1))
    with worker_pool(count) as pool:
        return list(pool.map(fn, items))
