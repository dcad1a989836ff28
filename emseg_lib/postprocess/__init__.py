"""Post-processing: cell-probability maps to segmentations.

* :mod:`.thesis` — the thesis's watershed (``sig_th``, ``edge_th``; 0 on boundaries);
* :mod:`.seeded` — seeded watershed on the smoothed probability (dense);
* :mod:`.dense` — boundary pixels assigned to segments by flooding the probability;
* :mod:`.methods` — both by name, with defaults and tuning grids;
* :mod:`.derive` — the seeded method's seed threshold derived from the map;
* :mod:`.anisotropy` — 3D or per-slice post-processing of a 3D network, from the voxel size;
* :mod:`.volume` — whole volumes, per slice in parallel processes or in 3D;
* :mod:`.morphology`, :mod:`.flooding` — their building blocks (distance map, h-maxima,
  connected components, watersheds), compiled and equal to SciPy's and scikit-image's;
  :mod:`.reference` — the SciPy / scikit-image code they equal (tests' oracle, benchmark's
  baseline).
"""

from emseg_lib.postprocess.anisotropy import postprocess_dims
from emseg_lib.postprocess.dense import flood_boundaries
from emseg_lib.postprocess.methods import DEFAULT_METHOD, METHODS, PostprocessMethod, get_method
from emseg_lib.postprocess.seeded import seeded_watershed
from emseg_lib.postprocess.thesis import (
    THESIS_EDGE_TH,
    THESIS_SIG_TH,
    UNTUNED_EDGE_TH,
    UNTUNED_SIG_TH,
    candidate_segments,
    close_boundaries,
    label_cells,
    watershed_postprocess,
    watershed_segments,
)
from emseg_lib.postprocess.volume import segment_slice, segment_volume

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "THESIS_EDGE_TH",
    "THESIS_SIG_TH",
    "UNTUNED_EDGE_TH",
    "UNTUNED_SIG_TH",
    "PostprocessMethod",
    "candidate_segments",
    "close_boundaries",
    "flood_boundaries",
    "get_method",
    "label_cells",
    "postprocess_dims",
    "seeded_watershed",
    "segment_slice",
    "segment_volume",
    "watershed_postprocess",
    "watershed_segments",
]
