"""What every notebook sets up first: its paths, profile, data and caption."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emseg_lib.data import EMVolume, open_volume
from emseg_lib.infra.device import pick_device
from emseg_lib.infra.paths import ProjectPaths, project_paths
from emseg_lib.profiles import Profile, get_profile


@dataclass(frozen=True)
class NotebookContext:
    """A notebook's resolved settings.

    Attributes:
        paths: data, figures, runs (:func:`~emseg_lib.infra.paths.project_paths`).
        config: the profile's sizes.
        volume: the CREMI file, or the synthetic volume when it is absent.
        caption: provenance for titles and captions (says SYNTHETIC when it is).
    """

    paths: ProjectPaths
    config: Profile
    volume: EMVolume
    caption: str

    @property
    def figures(self) -> Path:
        """Where figures and tables go."""
        return self.paths.figures

    def run_dir(self, name: str) -> Path:
        """The run folder of one experiment, ``runs/<profile>/<name>``."""
        return self.paths.runs / name


def notebook_context(profile: str | None, data_path: str | None, figures_dir: str | None,
                     runs_dir: str | None, seed: int, device: str | None = None
                     ) -> NotebookContext:
    """Resolve a notebook's parameters (None = the project's default) and load its data;
    prints one line saying what was chosen."""
    paths = project_paths(profile, data=data_path, figures=figures_dir, runs=runs_dir)
    config = get_profile(paths.profile)
    volume = open_volume(paths.data, synthetic_shape=config.synthetic_shape, seed=seed)
    caption = f"{volume.caption} · profile {paths.profile}"
    print(f"{caption} | device: {pick_device(device)} | runs: {paths.runs} | figures: "
          f"{paths.figures}")
    return NotebookContext(paths, config, volume, caption)
