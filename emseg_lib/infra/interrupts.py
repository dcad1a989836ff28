"""Ctrl-C held while a step that must not be cut in half runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then act on it as it would have.

    For steps that must not be cut in half: a zarr write (its stores write in a background
    thread that would go on writing after the interrupt), renaming folders into place, and
    HDF5 calls on an :func:`atomic_hdf5` file (HDF5 writes through Python file methods: a
    KeyboardInterrupt raised inside one, before :class:`GuardedFile` can catch it, leaves the
    file unable to close).
    Only the main thread receives signals; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)
