"""Where block jobs run: in this process, or on a dask.distributed cluster.

* ``inline``: one block after the other in this process (no cluster; ``emseg postprocess
  --affinities`` without ``--engine``);
* ``local``: a ``LocalCluster`` of ``jobs`` worker processes on this machine (one thread
  each; with GPUs, worker ``n`` uses GPU ``n`` modulo their number);
* ``slurm``: ``jobs`` SLURM jobs of one worker each through dask-jobqueue's ``SLURMCluster``
  (one GPU per job when ``gpus``); its queue, account and limits come from dask-jobqueue's
  configuration (``~/.config/dask/jobqueue.yaml``, section ``jobqueue.slurm``), the memory
  per job from there or 16 GB.

Why dask.distributed: a worker runs many blocks (measured here: 2 ms per task on a
``LocalCluster`` against 2.2 s per job for submitit's ``LocalExecutor``, which starts a
process per job, importing torch each time), a killed worker is restarted and its block
given to another, and dask-jobqueue reaches SLURM, PBS, SGE and LSF with the same code.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from emseg_lib.errors import EmsegInputError

#: the engines ``--engine`` offers (``inline`` is what runs without it)
ENGINES = ("local", "slurm")
#: memory of one SLURM job when dask-jobqueue's configuration sets none
SLURM_MEMORY = "16GB"


@dataclass(frozen=True)
class Cluster:
    """The engine (``"local"`` or ``"slurm"``), its number of workers, and whether each
    worker takes a GPU."""

    engine: str
    jobs: int
    gpus: bool = False

    def __post_init__(self) -> None:
        if self.engine not in (*ENGINES, "inline"):
            raise EmsegInputError(f"the engine must be one of {', '.join(ENGINES)}, got "
                                  f"{self.engine!r}")
        if self.jobs < 1:
            raise EmsegInputError(f"the number of jobs must be >= 1, got {self.jobs}")
        if self.engine == "slurm" and shutil.which("sbatch") is None:
            raise EmsegInputError("the slurm engine submits jobs with sbatch, which is not on "
                                  "this machine's PATH; run on a SLURM login node, or use the "
                                  "local engine")


@contextmanager
def open_client(cluster: Cluster) -> Iterator:
    """A ``distributed.Client`` of ``cluster``'s workers, closed (and its jobs cancelled)
    at the end of the ``with`` block; None for ``inline``."""
    from distributed import Client, LocalCluster

    if cluster.engine == "inline":
        yield None
        return
    if cluster.engine == "local":
        workers = LocalCluster(n_workers=cluster.jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    else:
        import dask
        from dask_jobqueue import SLURMCluster

        memory = dask.config.get("jobqueue.slurm.memory", None) or SLURM_MEMORY
        extra = ["--gres=gpu:1"] if cluster.gpus else []
        workers = SLURMCluster(cores=1, processes=1, memory=memory,
                               job_extra_directives=extra)
        workers.scale(jobs=cluster.jobs)
    with workers, Client(workers) as client:
        yield client
