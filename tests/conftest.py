"""Shared fixtures: small volumes written and built by the tests themselves, and one
``run_all.sh --profile smoke`` per session for the notebook and browser tests.

The suite runs on two pytest-xdist workers (``pyproject.toml``). The tests of the group
:data:`RUN_ALL_GROUP` run on one worker, one after another: every test that uses the smoke
run (so it is made once), the test that adds a notebook to ``notebooks/`` for a while (the
smoke run executes every ``notebooks/NN_*.ipynb`` it finds) and every other test that starts
a notebook kernel (jupyter_client picks a kernel's ports by binding and closing them, so two
kernels started at once can be handed the same port).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from emseg_lib.data import EMVolume, synthetic_em_volume
from emseg_lib.fetch import DATASETS

#: the pytest-xdist group of the tests that must not run beside one another (see above)
RUN_ALL_GROUP = "run_all"


def pytest_configure(config: pytest.Config) -> None:
    """On an xdist worker, the machine's cores shared out: each of the ``N`` workers (and every
    process it starts: kernels, the ``emseg`` command) computes on cores / ``N`` threads.
    Two workers each running torch on every core would wait on each other's threads (torch's
    OpenMP threads spin at each barrier), which made one test 12 times slower here."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")  # not macOS
                 else os.cpu_count() or 1)
        threads = max(1, cores // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses :func:`smoke_run` joins :data:`RUN_ALL_GROUP`."""
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(RUN_ALL_GROUP))


@pytest.fixture(scope="session")
def small_volume() -> EMVolume:
    """A (12, 96, 96) synthetic volume, cheap enough for every test."""
    return synthetic_em_volume((12, 96, 96), seed=3)


@pytest.fixture(scope="session")
def default_volume() -> EMVolume:
    """The default-size synthetic volume (32, 256, 256), seed 0."""
    return synthetic_em_volume(seed=0)


@pytest.fixture
def two_cells() -> np.ndarray:
    """(40, 60) labels: cell 1 on the left (x < 30), cell 2 on the right."""
    labels = np.ones((40, 60), dtype=np.int64)
    labels[:, 30:] = 2
    return labels


ROOT = Path(__file__).resolve().parents[1]
#: where the public real stacks are looked for, in order: ``$EMSEG_REAL_DATA`` (e.g. the folder
#: ``emseg fetch vnc --dest DIR`` wrote), ``../shared/data`` beside the checkout (CI), ``data/``
REAL_DATA_PLACES = tuple(Path(place).resolve() for place in (
    os.environ.get("EMSEG_REAL_DATA"), ROOT.parent / "shared" / "data", ROOT / "data") if place)
#: the first of :data:`REAL_DATA_PLACES` holding a public real stack, else None
REAL_DATA = next((place for place in REAL_DATA_PLACES
                  if any((place / d.filename).is_file() for d in DATASETS.values())), None)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """``./run_all.sh --profile smoke`` with every path at its default under a fresh project
    root (``EMSEG_ROOT``), with the real stacks when this machine has them; made once per
    session (tests/test_notebooks.py and tests/test_browser.py share it)."""
    out = tmp_path_factory.mktemp("smoke")
    real = ["--real-data", str(REAL_DATA)] if REAL_DATA is not None else []
    # a last guard only: run_all.sh's watchdog fails a hung notebook (900 s) with its stacks
    result = subprocess.run([str(ROOT / "run_all.sh"), "--profile", "smoke", *real],
                            capture_output=True, text=True, timeout=7200,
                            env={**os.environ, "EMSEG_ROOT": str(out)})
    return out, result
