"""What makes an experiment's run folder *that* run: data, seed, profile (see
:mod:`emseg_lib.train.runs`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from emseg_lib.data import EMVolume, volume_fingerprint
from emseg_lib.profiles import Profile


def experiment_identity(volume: EMVolume, profile: Profile, seed: int, plan: Any = None,
                        resumable: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """``run_identity`` for the training loops.

    Args:
        volume: the data; its :func:`~emseg_lib.data.volume_fingerprint` and voxel size (nm;
            the CREMI protocol's boundary band during validation depends on it) are recorded.
        profile: its name is recorded.
        seed: the experiment's seed.
        plan: the profile's plan for this experiment (a dataclass), recorded without the
            ``resumable`` fields (e.g. ``epochs``, which a resumed run may raise).
        extra: further JSON values, e.g. ``mask_kind="right"``.
    """
    data = {**volume_fingerprint(volume),
            "resolution": [float(size) for size in volume.resolution]}
    identity: dict[str, Any] = {"data": data, "seed": seed, "profile": profile.name, **extra}
    if plan is not None:
        identity["plan"] = {key: value for key, value in dataclasses.asdict(plan).items()
                            if key not in resumable}
    return identity
