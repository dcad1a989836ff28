"""Never leave a half-written file: atomic writes.

:func:`atomic_path` gives every writer (``torch.save``, h5py, pandas, matplotlib) a hidden
temporary file beside the target and renames it onto the target only once it is complete
and on disk; :func:`atomic_stream` and :func:`atomic_hdf5` do the same for writers that take
a file object (``torch.save``) and for HDF5 files, and turn a full disk into an ``OSError``;
:func:`atomic_directory` does it for folders (zarr stores).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import h5py

from emseg_lib.infra.interrupts import interrupts_deferred
from emseg_lib.infra.temporaries import remove_path, temporary_beside

T = TypeVar("T")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``target`` in one step.

    The temporary is hidden (``.NAME.XXXXXXXX.tmp.SUFFIX``) and keeps the target's suffix,
    so writers that choose a format from the suffix work unchanged. After the ``with`` block
    the temporary is flushed to disk (``fsync``) and renamed onto ``target``; readers see the
    old file or the new one, never a mix. If the block raises (KeyboardInterrupt included)
    the temporary is removed and ``target`` is left as it was; a process killed outright
    (SIGKILL, power cut) leaves at most the hidden temporary, never a partial ``target``.

    The folder must exist. A ``target`` that is a symbolic link is written through (the
    file it points to is replaced); an existing target keeps its permission bits.

    Example::

        with atomic_path(run_dir / "last.pt") as tmp:
            torch.save(state, tmp)
    """
    target = Path(target)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    tmp = temporary_beside(target)
    try:
        yield tmp
        _fsync(tmp)
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not every file system can sync a folder
        _fsync(target.parent)
    except OSError:
        pass


def _fsync_tree(folder: Path) -> None:
    for parent, _, files in os.walk(folder):
        for name in files:
            _fsync(Path(parent) / name)
        _fsync(Path(parent))


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a new temporary folder to build ``target`` (a folder: a zarr store) in; on
    success it takes ``target``'s place.

    The temporary is hidden beside ``target`` (``.NAME.PID-XXXXXXXX.tmp.SUFFIX``). After the
    block its files are flushed to disk; an existing ``target`` is moved aside (hidden
    ``.NAME.PID-XXXXXXXX.old.SUFFIX``), the temporary renamed onto ``target`` and the old
    folder removed, with Ctrl-C held meanwhile (:func:`interrupts_deferred`). If the block
    raises (KeyboardInterrupt included) the temporary is removed and ``target`` left as it
    was; a process killed outright leaves at most the hidden folders, which
    :func:`remove_stale_temporaries` clears, and one killed between the two renames the
    previous folder as ``.old``, which :func:`restore_interrupted_swap` puts back.

    Example::

        with atomic_directory("seg.zarr") as tmp:
            zarr.open_group(tmp, mode="w")
    """
    target = Path(target)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    tmp, old = temporary_beside(target), temporary_beside(target, "old")
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        with interrupts_deferred():
            if target.exists():
                os.rename(target, old)
            os.rename(tmp, target)
            if old.exists():
                remove_path(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.rename(old, target)
        raise
    try:
        _fsync(target.parent)
    except OSError:
        pass


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


class GuardedFile(io.RawIOBase):
    """A temporary file for writers that cannot survive a failing file (see :func:`atomic_stream`).

    HDF5 cannot close a file once a write to it has failed (the handle stays open and the
    library crashes when the process exits), and ``torch.save``'s zip writer replaces the
    error by a RuntimeError of its own. So any failure inside the writer's calls (disk full,
    file too large, an I/O error, a Ctrl-C arriving there) is recorded here, the writer is
    told that all went well, and later writes are dropped; :meth:`raise_pending` raises the
    failure between the writer's calls.
    """

    def __init__(self, file: BinaryIO, target: Path) -> None:
        super().__init__()
        self._file = file
        self._target = target
        self._failure: BaseException | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _guarded(self, call: Callable[[], T], fallback: T, *, writes: bool = False) -> T:
        if writes and self._failure is not None:
            return fallback
        try:
            return call()
        except BaseException as err:  # noqa: B036 - HDF5 must not see it, see the class
            self._failure = self._failure or err
            return fallback

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._guarded(lambda: self._file.seek(offset, whence), offset)

    def tell(self) -> int:
        return self._guarded(self._file.tell, 0)

    def readinto(self, buffer: Any) -> int:
        return self._guarded(lambda: self._file.readinto(buffer), len(buffer))

    def _write_all(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):  # an unbuffered file may take part of the data per call
            done += self._file.write(view[done:])
        return done

    def write(self, data: Any) -> int:
        return self._guarded(lambda: self._write_all(data), len(data), writes=True)

    def truncate(self, size: int | None = None) -> int:
        return self._guarded(lambda: self._file.truncate(size), size or 0, writes=True)

    def flush(self) -> None:
        self._guarded(self._file.flush, None, writes=True)

    def raise_pending(self) -> None:
        """Raise the recorded failure: a KeyboardInterrupt as it was, an OSError naming the
        target (the temporary's name would mean nothing to the user)."""
        failure = self._failure
        if failure is None:
            return
        if isinstance(failure, OSError):
            raise OSError(failure.errno, failure.strerror or str(failure),
                          str(self._target)) from failure
        raise failure


class Hdf5Output:
    """An HDF5 file being written by :func:`atomic_hdf5`: ``file`` and :meth:`flush`."""

    def __init__(self, file: h5py.File, guard: GuardedFile) -> None:
        self.file = file
        self._guard = guard

    def flush(self) -> None:
        """Write what HDF5 holds in memory to the file; raise the first failure so far
        (disk full: OSError naming the target; Ctrl-C: KeyboardInterrupt, once HDF5 is done)."""
        with interrupts_deferred():
            self.file.flush()
        self._guard.raise_pending()


@contextmanager
def atomic_stream(target: str | Path) -> Iterator[GuardedFile]:
    """Write ``target`` atomically (see :func:`atomic_path`) through a :class:`GuardedFile`.

    For writers that take a file object and cannot survive a failing file (``torch.save``,
    h5py): every write seems to succeed, and the first failure (disk full, quota, file-size
    limit, Ctrl-C) is raised when the block ends, an ``OSError`` naming ``target``; the
    temporary is then removed and ``target`` left as it was.

    Example::

        with atomic_stream(run_dir / "last.pt") as stream:
            torch.save(state, stream)
    """
    target = Path(target)
    with atomic_path(target) as tmp, tmp.open("w+b", buffering=0) as raw:
        stream = GuardedFile(raw, target)
        yield stream
        stream.raise_pending()


@contextmanager
def atomic_hdf5(target: str | Path) -> Iterator[Hdf5Output]:
    """Write an HDF5 file to ``target`` atomically, through :func:`atomic_stream`.

    Unlike ``h5py.File`` on a path, a write that fails (disk full, quota, file-size limit)
    does not leave HDF5 unable to close the file: the failure is raised as an ``OSError``
    naming ``target`` at the next :meth:`Hdf5Output.flush` or at the end of the block, the
    temporary is removed and ``target`` left as it was. Call ``flush()`` after each chunk of
    a long write to stop at the first failure.

    Example::

        with atomic_hdf5("seg.h5") as out:
            out.file.create_dataset("labels", data=labels)
    """
    with atomic_stream(target) as stream:
        handle = h5py.File(stream, "w")
        try:
            yield Hdf5Output(handle, stream)
        finally:
            with interrupts_deferred():
                handle.close()
