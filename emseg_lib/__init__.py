"""emseg_lib: the library behind the emseg notebooks.

Reproduces "Generative Adversarial Networks for Electron Microscopy Image Segmentation":
CREMI data loading and a synthetic EM stand-in (:mod:`emseg_lib.data`), boundary and affinity
targets (:mod:`emseg_lib.data.targets`), watershed post-processing (:mod:`emseg_lib.postprocess`),
segmentation metrics (:mod:`emseg_lib.scoring.metrics`) and label display
(:mod:`emseg_lib.report.display`).

Array conventions: volumes are ``(Z, Y, X)``, slices ``(Y, X)``, torch batches ``(N, C, H, W)``
or ``(N, C, D, H, W)``. Probability maps hold the probability of *cell interior* (1) versus
*membrane* (0), as in the thesis.
"""

from importlib.metadata import PackageNotFoundError, version

from emseg_lib.errors import EmsegInputError, TrainingInterrupted

try:
    __version__ = version("emseg")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["EmsegInputError", "TrainingInterrupted", "__version__"]
