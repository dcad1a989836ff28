"""TensorBoard event files of a training run: every epoch's history and prediction images,
read back with TensorBoard's own event reader; a resumed run continues without duplicates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from emseg_lib.data import EMCropDataset, split_slices
from emseg_lib.models import UNet2D, UNet3D
from emseg_lib.train import TrainConfig, fit
from emseg_lib.train.tensorboard_log import TENSORBOARD, scalar_tag

CONFIG = TrainConfig(epochs=2, batch_size=2, lr=0.005, device="cpu")


def _events(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / TENSORBOARD), size_guidance={"images": 0})
    events.Reload()
    return events


@pytest.mark.parametrize("dims", [2, 3])
def test_every_epoch_is_logged_with_its_history_and_predictions(tmp_path, small_volume, dims):
    parts = split_slices(small_volume.shape[0]).apply(small_volume)
    crop = (32, 32) if dims == 2 else (3, 32, 32)
    train = EMCropDataset(parts["train"], crop, 4, seed=0)
    val = EMCropDataset(parts["val" if dims == 2 else "train"], crop, 2, seed=1)
    torch.manual_seed(0)
    model = UNet2D(base_width=4, depth=3) if dims == 2 else UNet3D(filters=(4, 6, 8))
    history = fit(model, train, val, CONFIG, tmp_path, progress=False)
    events = _events(tmp_path)
    for column in ("train_loss", "val_loss", "val_cremi_voi_split", "val_arand", "lr",
                   "samples_per_s"):
        logged = events.Scalars(scalar_tag(column))
        assert [point.step for point in logged] == [0, 1], column
        assert [point.value for point in logged] == pytest.approx(
            history[column].tolist(), rel=1e-6), column
    images = [tag for tag in events.Tags()["images"] if tag.startswith("prediction/")]
    assert len(images) == 2
    for tag in images:
        shown = events.Images(tag)
        assert [image.step for image in shown] == [0, 1]
        assert (shown[0].height, shown[0].width) == (32, 3 * 32)  # crop | target | prob


def test_a_resumed_run_continues_its_curves_without_duplicates(tmp_path, datasets_2d):
    fit(UNet2D(base_width=4, depth=3), *datasets_2d, dataclasses.replace(CONFIG, epochs=1),
        tmp_path, progress=False)
    history = fit(UNet2D(base_width=4, depth=3), *datasets_2d,
                  dataclasses.replace(CONFIG, epochs=3), tmp_path, progress=False)
    logged = _events(tmp_path).Scalars("train/loss")
    assert [point.step for point in logged] == [0, 1, 2]
    assert np.allclose([point.value for point in logged], history["train_loss"], rtol=1e-6)


def test_switched_off_there_are_no_event_files(tmp_path, datasets_2d):
    fit(UNet2D(base_width=4, depth=3), *datasets_2d,
        dataclasses.replace(CONFIG, epochs=1, tensorboard=False), tmp_path, progress=False)
    assert not (tmp_path / TENSORBOARD).exists()


def test_history_columns_get_grouped_tags():
    assert scalar_tag("train_loss") == "train/loss"
    assert scalar_tag("val_cremi_voi_merge") == "validation/cremi_voi_merge"
    assert scalar_tag("epoch_s") == "speed/epoch_s" and scalar_tag("lr") == "lr"


@pytest.fixture(scope="module")
def datasets_2d(small_volume):
    parts = split_slices(small_volume.shape[0]).apply(small_volume)
    return (EMCropDataset(parts["train"], (32, 32), 4, seed=0),
            EMCropDataset(parts["val"], (32, 32), 2, seed=1))
