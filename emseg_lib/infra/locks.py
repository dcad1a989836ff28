"""Lock files held by one live process at a time (released when it dies)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from emseg_lib.errors import EmsegInputError


def _lock_holder(lock: Path) -> tuple[str, str]:
    """``(pid, host)`` written in a lock file by :func:`held_lock` (empty where unreadable)."""
    try:
        pid, _, host = lock.read_text().strip().partition(" ")
    except OSError:
        pid, host = "", ""
    return pid, host


def _acquire(lock: Path, refusal: Callable[[str, str], str]) -> int:
    import fcntl  # POSIX only; imported here so that inference works without it

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EmsegInputError(refusal(*_lock_holder(lock))) from None
        try:
            still_there = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            still_there = False
        if still_there:  # else its previous holder removed it meanwhile: lock the new one
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    return fd


@contextmanager
def held_lock(lock: str | Path, refusal: Callable[[str, str], str]) -> Iterator[Path]:
    """Hold the lock file ``lock`` for the ``with`` block: an exclusive ``flock``, which the
    system releases when its holder dies (a killed holder's file is taken over); the file
    names the holder (``PID HOST``) and is removed at the end. Yields its path.

    Raises:
        EmsegInputError: another live process holds it; the message is
            ``refusal(pid, host)`` of the holder (empty strings where unknown).
    """
    lock = Path(lock)
    fd = _acquire(lock, refusal)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)
