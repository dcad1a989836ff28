"""Never leave a half-written file, never write over an input: atomic writes, output checks.

:func:`atomic_path` gives every writer (``torch.save``, h5py, pandas, matplotlib) a hidden
temporary file beside the target and renames it onto the target only once it is complete
and on disk; :func:`atomic_stream` and :func:`atomic_hdf5` do the same for writers that take
a file object (``torch.save``) and for HDF5 files, and turn a full disk into an ``OSError``;
:func:`atomic_directory` does it for folders (zarr stores).
:func:`check_output` refuses a bad output location before any long work starts, and
:func:`remove_stale_temporaries` clears what a killed writer left behind.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import h5py

from emseg_lib.errors import EmsegInputError, EmsegWarning, format_bytes

T = TypeVar("T")


def _temporary_beside(target: Path, kind: str = "tmp") -> Path:
    """``.NAME.PID-XXXXXXXX.tmp.SUFFIX`` in the target's folder (same file system, same
    suffix; the writer's process id tells :func:`remove_stale_temporaries` whether it lives).
    ``kind`` ``"old"``: where :func:`atomic_directory` moves the folder it replaces."""
    return target.with_name(
        f".{target.stem}.{os.getpid()}-{secrets.token_hex(4)}.{kind}{target.suffix}")


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def _hidden_beside(target: Path) -> Iterator[tuple[Path, str, int]]:
    """The hidden temporaries of ``target`` (:func:`_temporary_beside`): each entry, its kind
    (``"tmp"`` or ``"old"``) and its writer's process id."""
    try:
        entries = list(target.parent.iterdir())
    except OSError:  # no folder there (yet), or one that cannot be listed
        return
    pattern = re.compile(rf"\.{re.escape(target.stem)}\.(\d+)-[0-9a-f]{{8}}\.(tmp|old)"
                         rf"{re.escape(target.suffix)}")
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not entry.is_symlink():
            yield entry, match.group(2), int(match.group(1))


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Remove the hidden temporaries of ``target`` left by writers that were killed outright.

    Only files and folders named as :func:`atomic_path` and :func:`atomic_directory` name them
    (``.NAME.PID-XXXXXXXX.tmp.SUFFIX``) whose process no longer runs on this machine are
    removed, and a folder a killed writer was replacing (``.NAME.PID-XXXXXXXX.old.SUFFIX``)
    only once ``target`` exists (:func:`restore_interrupted_swap` puts it back otherwise);
    returns their paths.
    """
    target = Path(target)
    removed = []
    for entry, kind, pid in list(_hidden_beside(target)):
        if _writer_alive(pid) or (kind == "old" and not target.exists()):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def restore_interrupted_swap(target: str | Path) -> Path | None:
    """Put back the folder (a zarr store) that a writer killed in the middle of
    :func:`atomic_directory`'s swap had moved aside, leaving ``target`` absent: the newest
    ``.NAME.PID-XXXXXXXX.old.SUFFIX`` of a dead writer is renamed to ``target`` (its
    replacement, never put in place, is a stale temporary), with one
    :class:`~emseg_lib.errors.EmsegWarning`. Returns the folder it came from, else None."""
    target = Path(target)
    if target.exists() or target.is_symlink():
        return None
    moved = [entry for entry, kind, pid in _hidden_beside(target)
             if kind == "old" and not _writer_alive(pid)]
    if not moved:
        return None
    old = max(moved, key=lambda entry: entry.stat().st_mtime_ns)
    os.rename(old, target)
    warnings.warn(EmsegWarning(
        f"{target}: restored from {old.name}, where a run stopped while replacing it had "
        "moved it (its replacement was never put in place)"), stacklevel=2)
    return old


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
    tmp = _temporary_beside(target)
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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


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
    tmp, old = _temporary_beside(target), _temporary_beside(target, "old")
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        with interrupts_deferred():
            if target.exists():
                os.rename(target, old)
            os.rename(tmp, target)
            if old.exists():
                _remove(old)
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


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


#: the longest file name in bytes, where the file system does not say
NAME_MAX = 255
#: digits of the largest process id (Linux's pid_max 4194304) in a temporary's name
_PID_DIGITS = 7


def _longest_temporary_name(target: Path) -> str:
    """The longest name :func:`_temporary_beside` can give ``target``'s hidden temporaries."""
    return f".{target.stem}.{'9' * _PID_DIGITS}-{'f' * 8}.tmp{target.suffix}"


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):  # a folder not there yet, or a system that does not say
        return NAME_MAX


def check_name_lengths(flag: str, given: Path, written: Sequence[Path], hint: str = "") -> None:
    """Raise unless every file written for the path ``given`` of ``flag`` (``written``: named
    after it, beside it) and the hidden temporaries they are written through have names the
    file system takes (:data:`NAME_MAX` bytes on most); ``hint`` ends the message.

    Raises:
        EmsegInputError: one line naming the flag, the path and the longest name it may have.
    """
    def size(name: str) -> int:
        return len(os.fsencode(name))

    limit = _name_max(given.parent)
    longest = max(size(name) for path in written
                  for name in (path.name, _longest_temporary_name(path)))
    if longest > limit:
        extra = longest - size(given.name)
        raise EmsegInputError(
            f"{given}: the name given to {flag} is {size(given.name)} bytes, and the files "
            f"written beside it under names made from it (hidden temporaries, a preview or "
            f"scores) are up to {extra} bytes longer; the file system takes names of at most "
            f"{limit} bytes: use a name of at most {limit - extra} bytes{hint}")


def check_not_input(path: str | Path, inputs: Sequence[str | Path]) -> None:
    """Raise unless ``path`` is none of ``inputs``, also not through a symbolic or hard link,
    and not inside an input that is a folder (a zarr store, a folder of slices).

    Raises:
        EmsegInputError: one line naming ``path`` and the input it would destroy.
    """
    path = Path(path)
    for source in inputs:  # a folder holding an input: named as such, before the same-file test
        if path.resolve() in Path(source).resolve().parents:
            raise EmsegInputError(f"{path}: holds the input {source}; writing there would "
                                  "destroy it, choose another output")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise EmsegInputError(f"{path}: is the input {source}; writing there would "
                                  "destroy it, choose another output")
        if Path(source).is_dir() and Path(source).resolve() in path.resolve().parents:
            raise EmsegInputError(f"{path}: is inside the input folder {source} (a zarr store "
                                  "or a folder of slices); writing there would change that "
                                  "input, choose another output")


#: files that make a folder a zarr store (v2 array, v2 group, v3 node)
ZARR_METADATA = (".zarray", ".zgroup", "zarr.json")


def _check_store_output(path: Path, inputs: Sequence[str | Path]) -> None:
    """A zarr store replaces a folder: never one holding an input, only a zarr store."""
    for source in inputs:
        if path.resolve() in Path(source).resolve().parents:
            raise EmsegInputError(f"{path}: holds the input {source}; writing there would "
                                  "destroy it, choose another output")
    if path.is_dir() and not any((path / name).is_file() for name in ZARR_METADATA):
        raise EmsegInputError(f"{path}: is a folder but not a zarr store; emseg replaces only "
                              "zarr stores, choose another output")


def check_output(path: str | Path, *, inputs: Sequence[str | Path] = (),
                 overwrite: bool = False, expected_bytes: int | None = None,
                 store: bool = False) -> Path:
    """Check an output file location before any work starts; returns it as a Path.

    Args:
        path: the file to be written.
        inputs: files (or folders) the command reads; the output must be none of them, also
            not through a symbolic or hard link.
        overwrite: allow replacing an existing file (it is replaced atomically at the end).
        expected_bytes: estimated size of the output in bytes; refused if the folder's file
            system has less free space.
        store: the output is a folder, a zarr store (:func:`atomic_directory`): an existing
            one may be replaced (with ``overwrite``) if it is a zarr store holding no input.

    Raises:
        EmsegInputError: one line naming ``path``: a folder given as output (other than a
            zarr store for ``store``), the output is or holds an input, it exists without
            ``overwrite``, its folder is missing or not writable, or there is too little free
            disk space.
    """
    path = Path(path)
    check_not_input(path, inputs)
    if store:
        _check_store_output(path, inputs)
    elif path.is_dir():
        raise EmsegInputError(f"{path}: is a folder; give the output file's name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise EmsegInputError(f"{path}: already exists; choose another output or pass "
                              "--overwrite to replace it")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise EmsegInputError(f"{path}: {folder} is not a folder")
    if not folder.is_dir():
        raise EmsegInputError(f"{path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EmsegInputError(f"{path}: folder {folder} is not writable")
    if expected_bytes is not None:
        free = shutil.disk_usage(folder).free
        if expected_bytes > free:
            raise EmsegInputError(
                f"{path}: the output needs about {format_bytes(expected_bytes)} but only "
                f"{format_bytes(free)} is free in {folder}"
            )
    return path
