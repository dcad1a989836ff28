"""Wall time of each notebook of a profile, from the profile's sizes and measured rates.

Every row is ``count x seconds per item`` of one piece of work; what a notebook does is read
from the library (the profile, the split sizes, the transfer sweep's configurations, the
post-processing grids). Not counted: kernel start-up, imports, figures and tables (seconds).
Approximations are named in each row's ``how``.
"""

from __future__ import annotations

import math
from typing import Any

from emseg_lib.data import split_slices
from emseg_lib.data.masks import MASK_KINDS
from emseg_lib.experiments.transfer_sweep import EXPERIMENTS
from emseg_lib.postprocess import METHODS
from emseg_lib.profiles import Profile
from emseg_lib.report.thesis_numbers import GRID_SIG_TH


def windows(size: int, tile: int, overlap: int) -> int:
    """Tiles along one axis, as :func:`~emseg_lib.inference.predict_tiled` places them."""
    return 1 if tile >= size else math.ceil((size - tile) / (tile - overlap)) + 1


def _training_s(fit: dict[str, float], epochs: int, samples: int) -> float:
    """One run: start-up, then per epoch training, validation and (at most) two checkpoint
    writes (``last.pt`` and, when the validation VOI improved, ``best.pt``)."""
    return fit["start_s"] + epochs * (samples / fit["samples_per_s"] + fit["val_s"]
                                      + 2 * fit["checkpoint_s"])


class Estimator:
    """Seconds of the pieces of work, from the measurements of :mod:`throughput`.

    Args:
        profile: the profile whose notebooks are estimated.
        shape: ``(Z, Y, X)`` of the profile's volume.
        m: the measurements (``models``, ``grid``, ``gans``, ``synthetic_s_per_mpx``,
            ``slab_px``, ``cores``).
        gpus: GPUs the sweep engine runs the training sweeps' jobs on at once (1 = inline).
    """

    def __init__(self, profile: Profile, shape: tuple[int, int, int], m: dict[str, Any],
                 gpus: int = 1):
        self.profile, self.shape, self.m, self.gpus = profile, shape, m, gpus
        split = split_slices(shape[0])
        self.slices = {name: part.stop - part.start for name, part in
                       (("train", split.train), ("val", split.val), ("test", split.test))}
        self.rows: list[dict[str, Any]] = []

    def add(self, notebook: str, work: str, seconds: float, how: str) -> None:
        """One row of the estimate."""
        self.rows.append({"notebook": notebook, "work": work, "seconds": seconds, "how": how})

    def sweep(self, notebook: str, work: str, job_seconds: list[float], how: str) -> None:
        """A row of independent jobs on the sweep engine: their total over the GPUs, at least
        the longest job."""
        gpus = min(self.gpus, len(job_seconds))
        self.add(notebook, work, max(sum(job_seconds) / gpus, max(job_seconds)),
                 f"{how}; {gpus} job(s) at once" if gpus > 1 else how)

    def predict_s(self, kind: str, split: str) -> float:
        """Seconds to predict a whole split with ``kind``."""
        model, (_, height, width) = self.m["models"][kind], self.shape
        if "slices_per_s" in model["inference"]:
            per_slice = height * width / self.m["slab_px"] ** 2 / model["inference"]["slices_per_s"]
            return self.slices[split] * per_slice
        tiling = self.profile.tiling_3d
        tiles = math.prod(windows(s, t, o) for s, t, o in zip(
            (self.slices[split], height, width), tiling.tile, tiling.overlap, strict=True))
        return tiles / model["inference"]["tiles_per_s"]

    def tuning_s(self, dims: int) -> float:
        """:func:`~emseg_lib.scoring.tuning.tune_all` on the validation split over every core."""
        n_val, total = self.slices["val"], 0.0
        for name, method in METHODS.items():
            outer = len(method.grid[method.outer])
            per_row = self.m["grid"][f"tune_{name}"] / outer  # one slice, one outer value
            jobs, job_s = (n_val * outer, per_row) if dims == 2 else (outer, n_val * per_row)
            total += math.ceil(jobs / self.m["cores"]) * job_s
        return total

    def supervised(self, notebook: str, kind: str) -> None:
        """Notebook 01 (once per network kind): train, tune, predict and score."""
        plan = self.profile.unet2d if kind == "unet2d" else self.profile.unet3d
        fit = self.m["models"][kind]["fit"]
        self.add(notebook, "training", _training_s(fit, plan.epochs, plan.samples_per_epoch),
                 f"start-up + {plan.epochs} epochs x ({plan.samples_per_epoch} samples / fit "
                 "rate + validation + 2 checkpoint writes)")
        self.add(notebook, "predictions", 2 * self.predict_s(kind, "val")
                 + 2 * self.predict_s(kind, "test"), "val split x2, test split x2")
        self.add(notebook, "threshold tuning", self.tuning_s(2 if kind == "unet2d" else 3),
                 "both methods' grids on the val split over every core (3D: per-slice cost)")
        self.add(notebook, "test scores", 2 * self.slices["test"] * self.m["grid"]["scores"],
                 "trained and untrained, one process")

    def stylegan(self) -> None:
        """Notebook 02: the progressive schedule."""
        plan, rates = self.profile.stylegan, self.m["gans"]["stylegan_its_per_s"]
        self.add("02_stylegan", "training",
                 sum(length / rates[resolution] for resolution, length in plan.schedule),
                 "iterations of each phase / its rate")

    def boundless(self) -> None:
        """Notebook 03: one GAN per mask kind."""
        plan, rate = self.profile.boundless, self.m["gans"]["boundless_samples_per_s"]
        steps_s = plan.steps * plan.batch_size / rate
        evaluation_s = plan.steps // plan.eval_every * plan.val_crops / rate
        self.sweep("03_boundless_masks", "training", [steps_s + evaluation_s] * len(MASK_KINDS),
                   f"{len(MASK_KINDS)} masks x {plan.steps} steps; evaluations counted as "
                   "training steps (an upper bound)")

    def transfer(self) -> None:
        """Notebook 04: the transfer sweep and the future-work comparisons."""
        plan, fit = self.profile.transfer, self.m["models"]["boundless_segmenter"]["fit"]
        specs = {spec.name: spec for table in EXPERIMENTS.values() for spec in table.values()}
        runs = []
        for spec in specs.values():
            if spec.reduced:
                samples = max(plan.batch_size, round(plan.samples_per_epoch
                                                     * plan.reduced_fraction))
                runs.append(_training_s(fit, plan.early_stop_epochs, samples))
            else:
                runs.append(_training_s(fit, round(plan.epochs * spec.epoch_scale),
                                        plan.samples_per_epoch))
        self.sweep("04_transfer_learning", "transfer sweep", runs * len(plan.seeds),
                   f"{len(specs)} configurations x {len(plan.seeds)} seeds")
        self.add("04_transfer_learning", "fair comparison",
                 sum(self.predict_s(kind, "test") for kind in ("unet2d", "unet3d"))
                 + 2 * 2 * self.slices["test"] * self.m["grid"]["scores"],
                 "both UNets on the test split; three protocols ~ 2x the scores")
        side = plan.crop // 16 * 16
        unet = self.m["models"]["unet2d"]["fit"]
        pixels = side ** 2 / math.prod(self.profile.unet2d.crop)
        scaled = {**unet, "samples_per_s": unet["samples_per_s"] / pixels,
                  "val_s": unet["val_s"] * pixels * plan.val_crops / self.profile.unet2d.val_crops}
        self.sweep("04_transfer_learning", "adversarial comparison",
                   [_training_s(scaled, plan.epochs, plan.samples_per_epoch)
                    + self.predict_s("unet2d", "val")] * (2 * len(plan.seeds)),
                   f"UNet2D on {side}^2 crops at its 160^2 rate per pixel, the discriminator "
                   "not counted")

    def thresholds(self) -> None:
        """Notebook 05: the thesis's threshold tables for both UNets."""
        rows = self.slices["val"] * len(GRID_SIG_TH)  # (slice, sig_th) jobs over the cores
        grid_s = math.ceil(rows / self.m["cores"]) * self.m["grid"]["thesis_grid"] \
            / len(GRID_SIG_TH)
        for kind in ("unet2d", "unet3d"):
            self.add("05_threshold_tables", f"{kind} grid",
                     self.predict_s(kind, "val") + self.predict_s(kind, "test") + grid_s
                     + self.slices["test"] * self.m["grid"]["scores"],
                     "val and test predictions, 6 x 6 grid on the val split over every core")

    def all(self) -> list[dict[str, Any]]:
        """Every notebook's rows, in notebook order."""
        z, y, x = self.shape
        self.add("00_data_exploration", "synthetic volume (first run only; cached after)",
                 z * y * x / 1e6 * self.m["synthetic_s_per_mpx"],
                 "per megapixel as measured at the slab size")
        self.supervised("01_unet (unet2d)", "unet2d")
        self.supervised("01_unet (unet3d)", "unet3d")
        self.stylegan()
        self.boundless()
        self.transfer()
        self.thresholds()
        return self.rows
