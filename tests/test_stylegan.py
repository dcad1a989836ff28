"""StyleGAN: shapes, parameter count, progressive schedule, one-network updates, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from emseg_lib import EmsegInputError
from emseg_lib.data import synthetic_em_volume
from emseg_lib.data.gan_datasets import GanCropDataset
from emseg_lib.models.stylegan import StyleDiscriminator, StyleGenerator
from emseg_lib.train.stylegan import (
    StyleGANConfig,
    discriminator_step,
    generator_step,
    phase_at,
    train_stylegan,
)
from emseg_lib.train.tensorboard_log import TENSORBOARD

SMALL = (16, 16, 8, 8)  # 4 .. 32 px


def test_reference_size_at_128():
    generator = StyleGenerator()
    count = sum(p.numel() for p in generator.parameters())
    assert abs(count - 25.8e6) / 25.8e6 < 0.01
    assert len([m for m in generator.mapping if isinstance(m, torch.nn.LeakyReLU)]) == 8


@pytest.mark.parametrize("step", range(4))
def test_shapes_at_every_resolution(step):
    generator, discriminator = StyleGenerator(SMALL, style_dim=32), StyleDiscriminator(SMALL)
    images = generator(torch.randn(3, 32), step, alpha=0.5)
    assert images.shape == (3, 1, 4 * 2**step, 4 * 2**step)
    assert discriminator(images, step, alpha=0.5).shape == (3,)


def test_step_out_of_range():
    with pytest.raises(EmsegInputError, match=r"step must lie in \[0, 3\]"):
        StyleGenerator(SMALL, style_dim=32)(torch.randn(1, 32), 4)


def test_alpha_zero_is_the_upsampled_previous_resolution():
    torch.manual_seed(0)
    generator = StyleGenerator(SMALL, style_dim=32).eval()
    z = torch.randn(2, 32)
    torch.manual_seed(1)
    faded = generator(z, 2, alpha=0.0)
    assert torch.allclose(faded[..., ::2, ::2], faded[..., 1::2, 1::2])  # nearest upsampling


def test_schedule_phases_and_fade_in():
    schedule = ((8, 100), (16, 200))
    assert phase_at(schedule, 0) == (1, 1.0)
    assert phase_at(schedule, 100) == (2, 0.0)
    assert phase_at(schedule, 150) == (2, 0.5)
    assert phase_at(schedule, 299) == (2, 1.0)
    with pytest.raises(EmsegInputError, match="past the schedule"):
        phase_at(schedule, 300)


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_one_step_updates_only_the_intended_network():
    torch.manual_seed(0)
    generator, discriminator = StyleGenerator(SMALL, style_dim=32), StyleDiscriminator(SMALL)
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.0, 0.99))
    real = torch.rand(4, 1, 16, 16) * 2 - 1
    g0, d0 = _snapshot(generator), _snapshot(discriminator)
    discriminator_step(generator, discriminator, opt_d, real, 2, 1.0, r1_gamma=10.0)
    assert _changed(d0, discriminator) and not _changed(g0, generator)
    g1, d1 = _snapshot(generator), _snapshot(discriminator)
    generator_step(generator, discriminator, opt_g, 4, 2, 1.0)
    assert _changed(g1, generator) and not _changed(d1, discriminator)


def test_training_writes_history_samples_and_resumes(tmp_path):
    volume = synthetic_em_volume((4, 64, 64), seed=2)
    dataset = GanCropDataset(volume.raw, 32, 16, seed=0)
    config = StyleGANConfig(schedule=((8, 4), (16, 4)), batch_size=4, sample_every=4,
                            device="cpu")
    torch.manual_seed(0)
    ema, history = train_stylegan(StyleGenerator(SMALL, style_dim=32), StyleDiscriminator(SMALL),
                                  dataset, config, tmp_path, progress=False)
    assert list(history["resolution"]) == [8] * 4 + [16] * 4
    assert history[["d_loss", "g_loss", "r1"]].notna().all().all()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "iter_000004.png", "iter_000008.png"]
    longer = StyleGANConfig(**{**config.__dict__, "schedule": ((8, 4), (16, 6))})
    _, resumed = train_stylegan(StyleGenerator(SMALL, style_dim=32), StyleDiscriminator(SMALL),
                                dataset, longer, tmp_path, progress=False)
    assert len(resumed) == 10 and resumed["iteration"].iloc[-1] == 9
    events = EventAccumulator(str(tmp_path / TENSORBOARD))
    events.Reload()
    logged = events.Scalars("d_loss")  # every iteration once, the resumed ones too
    assert [point.step for point in logged] == list(range(10))
    assert np.allclose([point.value for point in logged], resumed["d_loss"], rtol=1e-6)
    assert ema(torch.randn(2, 32), 2).shape == (2, 1, 16, 16)
