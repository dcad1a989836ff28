"""Blockwise segmentation of volumes larger than one machine: blocks with halos on a dask
cluster (:mod:`~emseg_lib.blockwise.cluster`), stitched across block faces
(:mod:`~emseg_lib.output.stitching`), resumable (:mod:`~emseg_lib.blockwise.work_folder`)."""

from emseg_lib.blockwise.block_job import BlockJob
from emseg_lib.blockwise.cluster import ENGINES, Cluster
from emseg_lib.blockwise.grid import BlockGrid
from emseg_lib.blockwise.run import BlockFailed, segment_blockwise

__all__ = ["ENGINES", "BlockFailed", "BlockGrid", "BlockJob", "Cluster", "segment_blockwise"]
