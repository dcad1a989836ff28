"""Where a project's data, figures, runs and executed notebooks live: one rule for
``run_all.sh`` and the notebooks.

Under the project root (the folder holding ``notebooks/``; ``EMSEG_ROOT`` overrides it):

* ``data/sample_A_20160501.hdf`` — the CREMI file (absent: the synthetic volume, cached in
  ``data/``);
* ``figures/`` — every figure and table;
* ``runs/<profile>/`` — checkpoints, one folder per experiment;
* ``outputs/<profile>/`` — the notebooks as ``run_all.sh`` executed them;
* the real EM stacks (``emseg fetch``) — the folder given, else the one ``run_all.sh`` used
  last (recorded in ``runs/LAST_REAL_DATA``), else ``data/``.

The profile is the one asked for, else ``EMSEG_PROFILE``, else the one ``run_all.sh`` ran
last (recorded in ``runs/LAST_PROFILE``), else ``quick``: a notebook opened after
``./run_all.sh --profile smoke --real-data DIR`` finds that run's checkpoints and real stacks
and resumes instead of training.

``python -m emseg_lib.infra.paths --root ROOT [--profile P] [--real-data DIR] [--record]`` prints
the paths as shell assignments for ``run_all.sh`` (``--record`` also records the profile and
the real-data folder as the last ones run).
"""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from emseg_lib.infra.atomic_files import atomic_write_text
from emseg_lib.profiles import PROFILES, get_profile, profile_names

DEFAULT_PROFILE = "quick"
CREMI_FILE = "sample_A_20160501.hdf"
LAST_PROFILE = "LAST_PROFILE"
LAST_REAL_DATA = "LAST_REAL_DATA"


@dataclass(frozen=True)
class ProjectPaths:
    """The resolved locations of one profile's work (see the module docstring)."""

    root: Path
    profile: str
    data: Path
    figures: Path
    runs: Path
    outputs: Path
    real_data: Path


def default_root() -> Path:
    """``EMSEG_ROOT``, else the project folder: the parent of the working directory when
    that is ``notebooks/`` (where Jupyter and papermill run the notebooks), else the working
    directory."""
    if os.environ.get("EMSEG_ROOT"):
        return Path(os.environ["EMSEG_ROOT"]).resolve()
    cwd = Path.cwd()
    return cwd.parent if cwd.name == "notebooks" else cwd


def default_profile(root: Path) -> str:
    """``EMSEG_PROFILE``, else the profile ``run_all.sh`` ran last under ``root``, else
    ``quick``."""
    if os.environ.get("EMSEG_PROFILE"):
        return get_profile(os.environ["EMSEG_PROFILE"]).name
    recorded = root / "runs" / LAST_PROFILE
    if recorded.is_file() and recorded.read_text().strip() in PROFILES:
        return recorded.read_text().strip()
    return DEFAULT_PROFILE


def default_real_data(root: Path) -> Path:
    """The real-data folder ``run_all.sh`` used last under ``root``, else ``root/data``."""
    recorded = root / "runs" / LAST_REAL_DATA
    if recorded.is_file() and recorded.read_text().strip():
        return Path(recorded.read_text().strip())
    return root / "data"


def project_paths(profile: str | None = None, *, root: str | Path | None = None,
                  data: str | Path | None = None, figures: str | Path | None = None,
                  runs: str | Path | None = None, outputs: str | Path | None = None,
                  real_data: str | Path | None = None) -> ProjectPaths:
    """The paths of ``profile`` under ``root``; any path given explicitly wins."""
    base = Path(root).resolve() if root is not None else default_root()
    name = get_profile(profile).name if profile is not None else default_profile(base)
    return ProjectPaths(
        root=base, profile=name,
        data=Path(data) if data is not None else base / "data" / CREMI_FILE,
        figures=Path(figures) if figures is not None else base / "figures",
        runs=Path(runs) if runs is not None else base / "runs" / name,
        outputs=Path(outputs) if outputs is not None else base / "outputs" / name,
        real_data=Path(real_data).resolve() if real_data is not None
        else default_real_data(base))


def record_last_run(paths: ProjectPaths) -> None:
    """Remember ``paths.profile`` and ``paths.real_data`` as the ones run last under
    ``paths.root`` (what notebooks opened afterwards use by default)."""
    folder = paths.root / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / LAST_PROFILE, f"{paths.profile}\n")
    atomic_write_text(folder / LAST_REAL_DATA, f"{paths.real_data}\n")


def main(argv: list[str] | None = None) -> int:
    """Print the paths as shell assignments (``root=... profile=... data=...``)."""
    parser = argparse.ArgumentParser(prog="python -m emseg_lib.infra.paths")
    parser.add_argument("--root", type=Path)
    parser.add_argument("--profile", choices=profile_names())
    parser.add_argument("--real-data", type=Path)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    paths = project_paths(args.profile, root=args.root, real_data=args.real_data)
    if args.record:
        record_last_run(paths)
    for name in ("root", "profile", "data", "figures", "runs", "outputs", "real_data"):
        print(f"{name}={shlex.quote(str(getattr(paths, name)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
