"""Boundless generator / discriminator: sizes, gated conv formula, training behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from emseg_lib import EmsegInputError
from emseg_lib.data import split_slices, synthetic_em_volume
from emseg_lib.data.gan_datasets import GanCropDataset
from emseg_lib.models.boundless import (
    BoundlessDiscriminator,
    BoundlessGenerator,
    GatedConv2d,
    InceptionStyleExtractor,
)
from emseg_lib.train.boundless import (
    BoundlessConfig,
    discriminator_step,
    evaluate_boundless,
    generator_step,
    train_boundless,
)
from emseg_lib.train.tensorboard_log import TENSORBOARD


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_reference_parameter_counts():
    generator = BoundlessGenerator()
    assert len(generator.layers) == 16
    assert n_params(generator) == 3_454_705
    assert sum(n_params(layer) for layer in generator.layers[:8]) == 1_444_096
    assert n_params(BoundlessDiscriminator()) == 7_838_528


def test_output_shapes_at_257():
    generator, discriminator = BoundlessGenerator(width=8), BoundlessDiscriminator()
    image = torch.rand(2, 1, 257, 257) * 2 - 1
    mask = torch.zeros(2, 1, 257, 257)
    mask[..., 193:] = 1
    out = generator(image, mask)
    assert out.shape == (2, 1, 257, 257) and out.abs().max() <= 1
    assert discriminator(out, mask).shape == (2,)
    assert discriminator(out, mask, torch.randn(2, 1000)).shape == (2,)


def test_gated_conv_matches_its_formula():
    layer = GatedConv2d(1, 1, kernel_size=1)
    with torch.no_grad():
        layer.feature.weight.fill_(2.0)
        layer.feature.bias.fill_(-1.0)
        layer.gate.weight.fill_(1.0)
        layer.gate.bias.fill_(0.0)
    x = torch.tensor([[[[0.0, 1.0], [2.0, -1.0]]]])
    feature = F.elu(2 * x - 1)
    gated = feature * torch.sigmoid(x)
    expected = (gated - gated.mean()) / torch.sqrt(gated.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(layer(x), expected)


@pytest.fixture(scope="module")
def datasets():
    volume = synthetic_em_volume((16, 128, 128), seed=1)
    parts = split_slices(16).apply(volume)
    train = GanCropDataset(parts["train"].raw, 65, 256, mask_kind="center", seed=0)
    val = GanCropDataset(parts["val"].raw, 65, 16, mask_kind="center", seed=1)
    return train, val


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module):
    return [not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True)]


def test_one_step_updates_only_the_intended_network(datasets):
    torch.manual_seed(0)
    generator = BoundlessGenerator(width=4)
    discriminator = BoundlessDiscriminator(widths=(8, 8, 8))
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    batch = next(iter(torch.utils.data.DataLoader(datasets[0], batch_size=2)))
    g0, d0 = _snapshot(generator), _snapshot(discriminator)
    generator_step(generator, discriminator, opt_g, batch["image"], batch["mask"], 1e-2)
    assert any(_changed(g0, generator)) and not any(_changed(d0, discriminator))
    g1, d1 = _snapshot(generator), _snapshot(discriminator)
    discriminator_step(generator, discriminator, opt_d, batch["image"], batch["mask"])
    assert not any(_changed(g1, generator)) and any(_changed(d1, discriminator))


def grating_volume(shape: tuple[int, int, int], period_px: float, seed: int) -> np.ndarray:
    """``(Z, Y, X)`` uint8 sine gratings, one random orientation and phase per slice: the
    content of a hole is predictable from its surround, and far from the surround's mean."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[1], : shape[2]].astype(float)
    slices = []
    for _ in range(shape[0]):
        angle, phase = rng.uniform(0, 2 * np.pi, size=2)
        distance = x * np.cos(angle) + y * np.sin(angle)
        slices.append(127.5 + 127.5 * np.sin(2 * np.pi * distance / period_px + phase))
    return np.round(np.stack(slices)).astype(np.uint8)


@pytest.mark.slow
def test_trained_generator_beats_the_mean_fill(tmp_path):
    """150 steps of the real GAN loop (L1 + 0.01 hinge adversarial) at width 16, 65 px crops
    with a centre hole, on sine gratings (period 64 px).

    The untrained generator is worse than filling the hole with the mean of the visible pixels
    (0.74 against 0.61: a pure function of the seed-0 weights, no trajectory); after training
    it must be better by at least half on fixed validation crops of other gratings (averaged
    over the evaluations at steps 100 and 150). Measured on a 2-core AMD EPYC VM, one thread,
    three data and weight seeds: 0.084-0.088 against the mean fill's 0.61.

    Gratings, not the synthetic EM volume: there a hole's content is mostly unpredictable
    from its surround, and after a CPU-affordable run the generator's margin over the mean
    fill (0.258 vs 0.272) was smaller than the change from the core count alone (0.276 with
    two threads): a test on it passed or failed by the machine.
    """
    train = GanCropDataset(grating_volume((16, 128, 128), 64, seed=10), 65, 256,
                           mask_kind="center", seed=0)
    val = GanCropDataset(grating_volume((4, 128, 128), 64, seed=99), 65, 16,
                         mask_kind="center", seed=1)
    torch.manual_seed(0)
    generator = BoundlessGenerator(width=16)
    discriminator = BoundlessDiscriminator(widths=(16, 32, 32))
    config = BoundlessConfig(steps=150, batch_size=8, lr_g=1e-3, eval_every=50,
                             sample_every=150, device="cpu")
    val_batches = list(torch.utils.data.DataLoader(val, batch_size=config.batch_size))
    untrained = evaluate_boundless(generator, discriminator, val_batches, config.adv_weight,
                                  torch.device("cpu"))
    assert untrained["masked_l1"] > untrained["mean_fill_masked_l1"]
    history = train_boundless(generator, discriminator, train, val, config, tmp_path,
                              progress=False)
    late = history.tail(2)
    assert late["val_masked_l1"].mean() < 0.5 * late["val_mean_fill_masked_l1"].mean()
    assert late["val_mean_fill_masked_l1"].mean() == pytest.approx(
        untrained["mean_fill_masked_l1"])
    assert (tmp_path / "last.pt").exists()
    assert (tmp_path / "samples" / "step_000150.png").exists()
    events = EventAccumulator(str(tmp_path / TENSORBOARD))
    events.Reload()
    assert [point.step for point in events.Scalars("validation/masked_l1")] == [50, 100, 150]


def test_feature_extractor_weights_file(tmp_path):
    torch.manual_seed(0)
    stand_in = InceptionStyleExtractor(width=4).eval()
    path = tmp_path / "inception.pt"
    torch.save(stand_in.state_dict(), path)
    loaded = InceptionStyleExtractor.from_weights(path, width=4)
    x = torch.rand(2, 1, 65, 65)
    torch.testing.assert_close(loaded(x), stand_in(x))
    assert loaded(x).shape == (2, 1000)
    with pytest.raises(EmsegInputError, match="not InceptionStyleExtractor"):
        InceptionStyleExtractor.from_weights(path, width=8)
    with pytest.raises(EmsegInputError, match="weights file not found"):
        InceptionStyleExtractor.from_weights(tmp_path / "missing.pt")
