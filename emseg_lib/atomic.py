"""Never leave a half-written file, never write over an input: atomic writes, output checks.

:func:`atomic_path` gives every writer (``torch.save``, h5py, pandas, matplotlib) a hidden
temporary file beside the target and renames it onto the target only once it is complete
and on disk. :func:`check_output` refuses a bad output location before any long work starts.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from emseg_lib.errors import EmsegInputError, format_bytes


def _temporary_beside(target: Path) -> Path:
    """``.NAME.XXXXXXXX.tmp.SUFFIX`` in the target's folder (same file system, same suffix)."""
    return target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")


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


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def check_output(path: str | Path, *, inputs: Sequence[str | Path] = (),
                 overwrite: bool = False, expected_bytes: int | None = None) -> Path:
    """Check an output file location before any work starts; returns it as a Path.

    Args:
        path: the file to be written.
        inputs: files (or folders) the command reads; the output must be none of them, also
            not through a symbolic or hard link.
        overwrite: allow replacing an existing file (it is replaced atomically at the end).
        expected_bytes: estimated size of the output in bytes; refused if the folder's file
            system has less free space.

    Raises:
        EmsegInputError: one line naming ``path``: a folder given as output, the output is
            an input, it exists without ``overwrite``, its folder is missing or not writable,
            or there is too little free disk space.
    """
    path = Path(path)
    if path.is_dir():
        raise EmsegInputError(f"{path}: is a folder; give the output file's name")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise EmsegInputError(f"{path}: is the input {source}; writing there would "
                                  "destroy it, choose another output")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise EmsegInputError(f"{path}: already exists; choose another output or pass "
                              "--overwrite to replace it")
    folder = path.parent
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
