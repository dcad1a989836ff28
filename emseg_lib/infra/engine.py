"""Independent jobs (training runs) run here, on this machine's GPUs in parallel, or on SLURM.

The sweeps (transfer-learning configurations x seeds, adversarial-segmentation seeds, the
Boundless masks) are lists of independent jobs. :func:`run_jobs` runs them on an
:class:`Engine`:

* ``inline`` — one after the other in this process (the default; what the notebooks always
  did);
* ``local`` — through submitit's ``LocalExecutor``, ``jobs`` at a time, each in its own
  process with one GPU of its own (``CUDA_VISIBLE_DEVICES``; none on a CPU-only machine);
* ``slurm`` — through submitit's ``SlurmExecutor``, one GPU per job, at most ``jobs`` running
  at once (``partition`` and ``time_min`` as given).

Every job trains in its own run folder and resumes from it, so the results do not depend on
the engine, and running a sweep again collects the jobs that finished. A job's volume goes to
the job as a :class:`VolumeFile` (arrays saved once, memory-mapped by the job) rather than
being pickled with every job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import submitit
import torch

from emseg_lib.data import EMVolume
from emseg_lib.errors import EmsegInputError

R = TypeVar("R")
KINDS = ("inline", "local", "slurm")
#: a sweep's submitit folder (submissions, logs, shared volume) inside its runs folder
ENGINE_FOLDER = "engine"


@dataclass(frozen=True)
class Engine:
    """Where a sweep's jobs run.

    Attributes:
        kind: ``"inline"``, ``"local"`` or ``"slurm"``.
        jobs: jobs running at once (= GPUs in use; 1 for ``inline``).
        partition: SLURM partition (``slurm`` only; default: the cluster's).
        time_min: time limit of one job in minutes (``local`` and ``slurm``).
    """

    kind: str = "inline"
    jobs: int = 1
    partition: str | None = None
    time_min: int = 24 * 60

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EmsegInputError(f"engine must be one of {', '.join(KINDS)}, got "
                                  f"{self.kind!r}")
        if self.jobs < 1 or (self.kind == "inline" and self.jobs != 1):
            raise EmsegInputError(f"engine jobs must be >= 1 (1 for inline), got {self.jobs}")

    @classmethod
    def parse(cls, spec: str | Engine | None) -> Engine:
        """An engine from ``"inline"``, ``"local:N"`` or ``"slurm:N[:partition]"`` (N jobs at
        once, default 1); None is ``inline``."""
        if isinstance(spec, Engine):
            return spec
        if spec is None:
            return cls()
        kind, *rest = str(spec).split(":")
        try:
            jobs = int(rest[0]) if rest and rest[0] else 1
        except ValueError as error:
            raise EmsegInputError(f"engine {spec!r}: jobs must be a number") from error
        return cls(kind, jobs, rest[1] if len(rest) > 1 and rest[1] else None)

    @property
    def inline(self) -> bool:
        """True when jobs run in this process."""
        return self.kind == "inline"


@dataclass(frozen=True)
class VolumeFile:
    """An :class:`EMVolume` saved as ``.npy`` files, for jobs to memory-map."""

    raw: Path
    labels: Path | None
    resolution: tuple[float, float, float]
    source: str
    synthetic: bool
    label_kind: str

    @classmethod
    def save(cls, volume: EMVolume, folder: str | Path) -> VolumeFile:
        """Write ``volume``'s arrays into ``folder`` once (named by their content)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for array in (volume.raw, volume.labels):
            if array is None:
                paths.append(None)
                continue
            digest = hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()[:16]
            path = folder / f"volume_{digest}.npy"
            if not path.exists():
                temporary = path.with_suffix(".tmp.npy")
                np.save(temporary, array)
                temporary.replace(path)
            paths.append(path)
        return cls(paths[0], paths[1], tuple(volume.resolution), volume.source,
                   volume.synthetic, volume.label_kind)

    def load(self) -> EMVolume:
        """The volume, its arrays memory-mapped read-only."""
        labels = None if self.labels is None else np.load(self.labels, mmap_mode="r")
        return EMVolume(np.load(self.raw, mmap_mode="r"), labels, self.resolution, self.source,
                        self.synthetic, self.label_kind)


def job_volume(volume: EMVolume | VolumeFile) -> EMVolume:
    """The volume a job works on (loaded when it came as a :class:`VolumeFile`)."""
    return volume.load() if isinstance(volume, VolumeFile) else volume


def for_jobs(volume: EMVolume, engine: Engine, folder: str | Path) -> EMVolume | VolumeFile:
    """``volume`` itself for inline jobs, else a :class:`VolumeFile` in ``folder``."""
    return volume if engine.inline else VolumeFile.save(volume, folder)


def run_jobs(engine: Engine, fn: Callable[..., R], calls: Sequence[tuple[Any, ...]],
             folder: str | Path) -> list[R]:
    """``[fn(*call) for call in calls]`` on ``engine``, results in the order of ``calls``.

    Args:
        engine: where the jobs run.
        fn: a picklable function (each job runs it in a fresh process unless inline).
        calls: positional arguments of every job.
        folder: submitit's folder (submissions, logs: ``<job id>_log.out``/``.err``).

    Raises:
        submitit's ``FailedJobError`` with the job's traceback when a job fails.
    """
    if engine.inline:
        return [fn(*call) for call in calls]
    if engine.kind == "slurm":
        executor = submitit.SlurmExecutor(folder=folder)
        options = {"partition": engine.partition} if engine.partition else {}
        executor.update_parameters(gpus_per_node=1, time=engine.time_min,
                                   array_parallelism=engine.jobs, **options)
        jobs = executor.map_array(fn, *zip(*calls, strict=True)) if calls else []
        return [job.result() for job in jobs]
    executor = submitit.LocalExecutor(folder=folder)
    gpus = 1 if torch.cuda.is_available() else 0
    results: list[R] = []
    for first in range(0, len(calls), engine.jobs):  # a wave of `jobs` jobs, one GPU each
        wave = []
        for slot, call in enumerate(calls[first:first + engine.jobs]):
            executor.update_parameters(timeout_min=engine.time_min, gpus_per_node=gpus,
                                       visible_gpus=(slot,) if gpus else ())
            wave.append(executor.submit(fn, *call))
        results += [job.result() for job in wave]
    return results
