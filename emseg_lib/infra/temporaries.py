"""The hidden temporaries emseg writes through, named after their writer's process:
made beside a target, recognised, and cleared or put back after a writer was
killed outright."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

from emseg_lib.errors import EmsegWarning


def temporary_beside(target: Path, kind: str = "tmp") -> Path:
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
    """The hidden temporaries of ``target`` (:func:`temporary_beside`): each entry, its kind
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
        remove_path(entry)
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


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


#: digits of the largest process id (Linux's pid_max 4194304) in a temporary's name
_PID_DIGITS = 7


def longest_temporary_name(target: Path) -> str:
    """The longest name :func:`temporary_beside` can give ``target``'s hidden temporaries."""
    return f".{target.stem}.{'9' * _PID_DIGITS}-{'f' * 8}.tmp{target.suffix}"
