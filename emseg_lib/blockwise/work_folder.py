"""The work folder of one blockwise segmentation, beside its output ``NAME``:
``.NAME.blockwise/``. It makes a run resumable and keeps the output out of sight until every
block is done.

* ``job.json``, ``lock``: what decides the result, and the run writing the folder
  (as :mod:`~emseg_lib.output.partial_results`: a second run is refused while one lives);
* ``output.zarr``: the OME-Zarr output being built, chunked by block; it takes the output's
  place only when every block is relabelled;
* ``local.zarr``: each block's segment ids before they are made unique across the volume;
* ``blocks/bNNNNNNN.json``: a finished block (its largest id, segment count, seconds),
  written atomically *after* its chunks and its face slabs (``bNNNNNNN.npz``): a worker
  killed mid-block leaves no record, and the block is computed again;
* ``final/bNNNNNNN``: a block whose final ids are written into ``output.zarr``.

A run with the same job takes every finished block from there; a run with another job
starts afresh. Unlike a single-process run's partial results, the folder is kept when a run
fails (a block's failure does not spoil the others): the same command resumes.
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from emseg_lib.infra.atomic_files import atomic_path, atomic_write_text
from emseg_lib.output.partial_results import (
    LOCK_FILE,
    canonical_job,
    hold_folder,
    same_job,
    write_job,
)

OUTPUT, LOCAL = "output.zarr", "local.zarr"


def work_folder(out: str | Path) -> Path:
    """``.NAME.blockwise`` beside the output ``NAME``."""
    out = Path(out)
    return out.with_name(f".{out.name}.blockwise")


def block_name(index: int) -> str:
    """The record name of block ``index``."""
    return f"b{index:07d}"


class BlockRecords:
    """The finished blocks of a folder (read and written by block jobs on any machine)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def done(self, index: int) -> dict[str, Any] | None:
        """Block ``index``'s record, None when it is not finished."""
        try:
            return json.loads((self.folder / "blocks" / f"{block_name(index)}.json").read_text(
                encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def faces(self, index: int) -> dict[str, np.ndarray]:
        """The face slabs block ``index`` saved: its ids on its halo past each face
        (``"above0"`` ... the upper faces by axis, ``"below0"`` ... the lower ones)."""
        with np.load(self.folder / "blocks" / f"{block_name(index)}.npz",
                     allow_pickle=False) as saved:
            return {name: saved[name] for name in saved.files}

    def finish(self, index: int, record: dict[str, Any], faces: dict[str, np.ndarray]) -> None:
        """Record block ``index`` as finished: its face slabs, then its record (atomically,
        so a killed job leaves no record)."""
        blocks = self.folder / "blocks"
        blocks.mkdir(exist_ok=True)
        with atomic_path(blocks / f"{block_name(index)}.npz") as tmp:
            np.savez_compressed(tmp, **faces)
        atomic_write_text(blocks / f"{block_name(index)}.json", json.dumps(record))

    def relabelled(self, index: int) -> bool:
        """Whether block ``index``'s final ids are written."""
        return (self.folder / "final" / block_name(index)).is_file()

    def mark_relabelled(self, index: int) -> None:
        """Record that block ``index``'s final ids are written."""
        final = self.folder / "final"
        final.mkdir(exist_ok=True)
        atomic_write_text(final / block_name(index), "")

    def count(self) -> int:
        """Finished blocks in the folder."""
        return len(list((self.folder / "blocks").glob("b*.json")))


class WorkFolder:
    """The work folder of a run writing ``out``, for the ``with`` block: claimed (refused
    while another live run holds it), kept from an earlier run of the same ``job``, emptied
    for another job; removed by :meth:`remove` once the output is in place."""

    def __init__(self, out: str | Path, job: dict[str, Any]) -> None:
        self.out = Path(out)
        self.folder = work_folder(out)
        self.job = canonical_job(job)
        self.kept = 0
        self._lock = ExitStack()

    def __enter__(self) -> WorkFolder:
        hold_folder(self.out, self.folder, "the blockwise work folder", self._refusal,
                    self._lock)
        if same_job(self.folder, self.job):
            self.kept = BlockRecords(self.folder).count()
        else:
            for entry in self.folder.iterdir():
                if entry.name != LOCK_FILE:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            write_job(self.folder, self.job)
        return self

    def _refusal(self, pid: str, host: str) -> str:
        return (f"{self.out}: another emseg run (process {pid or 'unknown'} on "
                f"{host or 'an unknown host'}) is writing it; wait for it to finish or stop it")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._lock.close()

    @property
    def records(self) -> BlockRecords:
        """The finished blocks."""
        return BlockRecords(self.folder)

    def remove(self) -> None:
        """Remove the folder (its output has been moved into place)."""
        shutil.rmtree(self.folder, ignore_errors=True)
