"""Segmentation networks: the 2D UNet and the Lee et al. 2017 3D UNet."""

from emseg_lib.models.unet2d import UNet2D
from emseg_lib.models.unet3d import LEE2017_FILTERS, UNet3D

__all__ = ["LEE2017_FILTERS", "UNet2D", "UNet3D"]
