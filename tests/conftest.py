"""Shared fixtures: small volumes written and built by the tests themselves, and one
``run_all.sh --profile smoke`` per session for the notebook and browser tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from emseg_lib.data import EMVolume, synthetic_em_volume
from emseg_lib.fetch import DATASETS


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
