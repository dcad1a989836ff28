"""Finished chunks of a whole-volume run, kept beside its output so that a run stopped by
Ctrl-C or killed resumes where it stopped (``emseg segment`` and ``emseg postprocess``).

They live in a hidden folder beside the output ``NAME``, ``.NAME.partial/``:

* ``job.json``: everything that decides the result (the inputs' identities, the settings);
* ``lock``: held by the run writing the folder (:func:`~emseg_lib.infra.locks.held_lock`: a second
  run is refused while it lives; a killed run's lock is taken over);
* ``z000016.npz``: one file per finished chunk, named by its first slice, written atomically
  (a chunk file is complete or absent): the chunk's segment ids before they are made unique
  across the volume, its cell probability and, where it differs, the image it came from.

A run with the same job takes the finished chunks from there and computes only the rest (a
damaged chunk file, never unpickled, is computed again with a warning); a run with another
job discards them. The folder is removed once the output is complete, and
when the run fails (the same error would stop the next run again); Ctrl-C and a kill leave it
for the next run.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from emseg_lib.errors import EmsegInputError, EmsegWarning, one_line
from emseg_lib.infra.atomic_files import atomic_path, atomic_write_text
from emseg_lib.infra.locks import held_lock

JOB_FILE, LOCK_FILE = "job.json", "lock"


def partial_folder(out: str | Path) -> Path:
    """``.NAME.partial`` beside the output ``NAME``."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def file_identity(path: str | Path) -> dict[str, Any]:
    """What tells one version of an input from another without reading it: its resolved
    path, size in bytes and last modification (ns); for a folder (a zarr store) the totals
    over the files in it."""
    path = Path(path).resolve()
    if not path.is_dir():
        stat = path.stat()
        return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    size, latest, files = 0, path.stat().st_mtime_ns, 0
    for parent, _, names in os.walk(path):
        for name in names:
            stat = (Path(parent) / name).stat()
            size, latest, files = size + stat.st_size, max(latest, stat.st_mtime_ns), files + 1
    return {"path": str(path), "bytes": size, "mtime_ns": latest, "files": files}


def hold_folder(out: Path, folder: Path, what: str, refusal: Callable[[str, str], str],
                stack: ExitStack) -> None:
    """Create ``folder`` (``what`` kept beside the output ``out``) and hold its lock file
    (:func:`~emseg_lib.infra.locks.held_lock`, refused by ``refusal``) until ``stack``
    closes.

    Raises:
        EmsegInputError: a file or link is in the folder's way, or another live run holds it.
    """
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise EmsegInputError(f"{out}: {folder} is in the way of {what}; remove it")
    folder.mkdir(exist_ok=True)
    stack.enter_context(held_lock(folder / LOCK_FILE, refusal))


def canonical_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """``job`` as it reads back from its JSON file (tuples as lists, paths as text)."""
    return json.loads(json.dumps(job, sort_keys=True, default=str))


def same_job(folder: Path, job: Mapping[str, Any]) -> bool:
    """Whether ``folder``'s job file holds ``job`` (a :func:`canonical_job`); False when it
    is missing or unreadable."""
    try:
        return json.loads((folder / JOB_FILE).read_text(encoding="utf-8")) == job
    except (OSError, ValueError):
        return False


def write_job(folder: Path, job: Mapping[str, Any]) -> None:
    """``folder``'s job file, written atomically."""
    atomic_write_text(folder / JOB_FILE, json.dumps(job, indent=1, sort_keys=True))


def chunk_name(z0: int) -> str:
    """The file of the chunk starting at slice ``z0``."""
    return f"z{z0:06d}.npz"


def finished_chunks(out: str | Path) -> int:
    """How many finished chunks of an interrupted run are kept for ``out``."""
    folder = partial_folder(out)
    return len(list(folder.glob("z*.npz"))) if folder.is_dir() else 0


class PartialResults:
    """The finished chunks of one run writing ``out``; a context manager.

    Entering claims the folder (refused while another live process holds it), keeps the
    chunks of an earlier run with the same ``job`` (:attr:`kept`) and discards those of
    another job (:attr:`discarded`). Leaving removes the folder, except on Ctrl-C
    (``KeyboardInterrupt``) with finished chunks, which keeps it for the next run.

    Args:
        out: the output the chunks are for.
        job: JSON-serialisable description of everything that decides the result.
    """

    def __init__(self, out: str | Path, job: Mapping[str, Any]) -> None:
        self.out = Path(out)
        self.folder = partial_folder(out)
        self.job = canonical_job(job)
        self.kept = 0
        self.discarded = 0
        self._lock = ExitStack()

    def __enter__(self) -> PartialResults:
        hold_folder(self.out, self.folder, "the partial results", self._refusal, self._lock)
        try:
            self._take_or_discard()
        except BaseException:
            self._lock.close()
            raise
        return self

    def _refusal(self, pid: str, host: str) -> str:
        return (f"{self.out}: another emseg run (process {pid or 'unknown'}) is writing it; "
                "wait for it to finish or stop it")

    def _take_or_discard(self) -> None:
        """Keep the chunks of an earlier run of this job, discard those of another."""
        chunks = sorted(self.folder.glob("z*.npz"))
        if same_job(self.folder, self.job):
            self.kept = len(chunks)
        else:
            for chunk in chunks:
                chunk.unlink()
            self.discarded = len(chunks)
            write_job(self.folder, self.job)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._lock.close()
        interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)
        if not (interrupted and any(self.folder.glob("z*.npz"))):
            shutil.rmtree(self.folder, ignore_errors=True)

    def has(self, z0: int) -> bool:
        """Whether the chunk starting at ``z0`` is finished."""
        return (self.folder / chunk_name(z0)).is_file()

    def load(self, z0: int, shape: tuple[int, ...]) -> dict[str, np.ndarray] | None:
        """The arrays :meth:`save` stored for the chunk starting at ``z0``, each of ``shape``;
        None, with one :class:`~emseg_lib.errors.EmsegWarning`, when the file is damaged
        (truncated, not arrays, object arrays: never unpickled) or holds other arrays, and
        the chunk is to be computed again."""
        path = self.folder / chunk_name(z0)
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
        except (OSError, ValueError, EOFError, KeyError, AttributeError,
                zipfile.BadZipFile) as err:  # AttributeError: a bare .npy, not an archive
            problem: str | None = one_line(err)
        else:
            problem = _odd_chunk(arrays, shape)
        if problem is None:
            return arrays
        warnings.warn(EmsegWarning(f"{path}: a chunk kept by an interrupted run cannot be used "
                                   f"({problem}); it is computed again"), stacklevel=2)
        return None

    def save(self, z0: int, **arrays: np.ndarray) -> None:
        """Store the finished chunk starting at ``z0`` (complete, or not at all)."""
        with atomic_path(self.folder / chunk_name(z0)) as tmp:
            np.savez(tmp, **arrays)


#: the arrays a kept chunk may hold besides labels and probabilities: the image, and a 3D
#: chunk's ids on its halo slices below and above it (any depth)
HALO_VIEWS = ("below", "above")


def _odd_chunk(arrays: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> str | None:
    """What is wrong with a kept chunk's arrays, None when they are what :meth:`save` stores
    for a chunk of ``shape``: integer labels, float probabilities, maybe an image, and in 3D
    integer ids on its halo slices (:data:`HALO_VIEWS`, ``(h, Y, X)``)."""
    if not {"labels", "prob"} <= set(arrays) or not set(arrays) <= {"labels", "prob", "image",
                                                                   *HALO_VIEWS}:
        return f"it holds {sorted(arrays)}, not labels and probabilities"
    odd = {name: array.shape for name, array in arrays.items()
           if (array.shape[1:] != shape[1:] if name in HALO_VIEWS else array.shape != shape)}
    if odd:
        return f"arrays of shape {odd}, expected {shape}"
    if (any(arrays[name].dtype.kind not in "iu" for name in ("labels", *HALO_VIEWS)
            if name in arrays) or arrays["prob"].dtype.kind != "f"):
        return f"labels {arrays['labels'].dtype} and probabilities {arrays['prob'].dtype}"
    return None


def partial_bytes_bound(shape: tuple[int, int, int], image: bool) -> int:
    """Upper bound in bytes of the partial results of a volume of ``shape`` (Z, Y, X): uint64
    ids and float32 probabilities, and uint8 raw slices when ``image``."""
    per_voxel = np.dtype(np.uint64).itemsize + np.dtype(np.float32).itemsize + int(image)
    return int(np.prod(shape, dtype=np.int64)) * per_voxel
