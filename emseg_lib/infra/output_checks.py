"""Never write over an input: an output location checked before any long work starts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from emseg_lib.errors import EmsegInputError, format_bytes
from emseg_lib.infra.temporaries import longest_temporary_name


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


#: the longest file name in bytes, where the file system does not say
NAME_MAX = 255


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
                  for name in (path.name, longest_temporary_name(path)))
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
