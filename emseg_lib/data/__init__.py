"""Data: CREMI HDF5 files, the synthetic EM volume, splits, augmentation and datasets."""

from emseg_lib.data.augment import NO_AUGMENTATION, AugmentConfig, augment_crop
from emseg_lib.data.cremi import (
    CREMI_RESOLUTION_NM,
    LABELS_KEY,
    RAW_KEY,
    EMVolume,
    load_cremi,
    save_cremi,
)
from emseg_lib.data.datasets import EMCropDataset
from emseg_lib.data.fingerprint import array_sha256, volume_fingerprint
from emseg_lib.data.source import DEFAULT_CREMI_FILE, SyntheticDataWarning, open_volume
from emseg_lib.data.splits import (
    DEFAULT_VAL_SHARE,
    THESIS_SPLIT,
    SliceSplit,
    ValSlices,
    ZSplit,
    labelled_split,
    parse_val_slices,
    split_slices,
    thesis_split,
)
from emseg_lib.data.synthetic import DEFAULT_SHAPE, SyntheticEMConfig, synthetic_em_volume
from emseg_lib.data.synthetic_cache import cached_synthetic_volume

__all__ = [
    "CREMI_RESOLUTION_NM",
    "DEFAULT_CREMI_FILE",
    "DEFAULT_SHAPE",
    "DEFAULT_VAL_SHARE",
    "LABELS_KEY",
    "NO_AUGMENTATION",
    "RAW_KEY",
    "THESIS_SPLIT",
    "AugmentConfig",
    "EMCropDataset",
    "EMVolume",
    "SliceSplit",
    "SyntheticDataWarning",
    "SyntheticEMConfig",
    "ValSlices",
    "ZSplit",
    "array_sha256",
    "augment_crop",
    "cached_synthetic_volume",
    "labelled_split",
    "load_cremi",
    "open_volume",
    "parse_val_slices",
    "save_cremi",
    "split_slices",
    "synthetic_em_volume",
    "thesis_split",
    "volume_fingerprint",
]
