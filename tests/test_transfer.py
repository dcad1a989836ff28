"""Transfer learning: freezing, loading pretrained layers, mismatched weights."""

from __future__ import annotations

import pytest
import torch

from emseg_lib import EmsegInputError
from emseg_lib.models import UNet2D, model_spec
from emseg_lib.models.boundless import BoundlessGenerator
from emseg_lib.models.pretrained import BoundlessSegmenter, freeze_first, load_pretrained
from emseg_lib.train.checkpoint import load_checkpoint, save_checkpoint


def _save_model(model, path, **extra):
    save_checkpoint(path, {"model": model.state_dict(), "model_spec": model_spec(model),
                           **extra})
    return path


def _generator_file(tmp_path, width=4, seed=1):
    torch.manual_seed(seed)
    generator = BoundlessGenerator(width=width)
    path = _save_model(generator, tmp_path / f"generator_w{width}.pt", mask_kind="right")
    return generator, path


def test_segmenter_shapes_and_no_clamp():
    torch.manual_seed(0)
    model = BoundlessSegmenter(width=4)
    with torch.no_grad():
        model.head.bias.fill_(5.0)
    logits = model(torch.rand(2, 1, 33, 33))
    assert logits.shape == (2, 1, 33, 33)
    assert logits.max() > 1.0  # the generator's clamp to [-1, 1] is gone
    assert len(model.segmentation_layers()) == 17


@pytest.mark.parametrize("n_frozen", [0, 4, 8, 16])
def test_freezing_n_layers_leaves_exactly_those_unchanged(n_frozen):
    torch.manual_seed(0)
    model = BoundlessSegmenter(width=4)
    frozen = set(freeze_first(model, n_frozen))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(torch.rand(2, 1, 33, 33)), torch.randint(0, 2, (2, 1, 33, 33)).float())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    layers = model.segmentation_layers()
    expected = {f"{prefix}{name}" for i, layer in enumerate(layers[:n_frozen])
                for prefix in [f"layers.{i}." if i < 16 else "head."]
                for name, _ in layer.named_parameters()}
    assert frozen == expected
    for name, parameter in model.named_parameters():
        unchanged = torch.equal(before[name], parameter)
        assert unchanged == (name in frozen), name


def test_freezing_all_17_layers():
    model = BoundlessSegmenter(width=4)
    assert len(freeze_first(model, 17)) == sum(1 for _ in model.parameters())
    assert not any(p.requires_grad for p in model.parameters())
    freeze_first(model, 0)
    assert all(p.requires_grad for p in model.parameters())


def test_loading_copies_exactly_the_named_layers(tmp_path):
    generator, path = _generator_file(tmp_path)
    torch.manual_seed(99)
    model = BoundlessSegmenter(width=4)
    random_init = {name: p.detach().clone() for name, p in model.named_parameters()}
    copied = set(load_pretrained(model, path, n_layers=8))
    assert copied == {n for n, _ in generator.named_parameters()
                      if n.startswith(tuple(f"layers.{i}." for i in range(8)))}
    source = dict(generator.named_parameters())
    for name, parameter in model.named_parameters():
        if name in copied:
            assert torch.equal(parameter, source[name]), name
        else:
            assert torch.equal(parameter, random_init[name]), name


def test_loading_all_17_layers_reproduces_the_generator(tmp_path):
    generator, path = _generator_file(tmp_path)
    model = BoundlessSegmenter(width=4)
    load_pretrained(model, path, n_layers=17)
    image = torch.rand(1, 1, 33, 33)
    with torch.no_grad():
        expected = generator.head(generator.features(image * 2 - 1, torch.zeros_like(image)))
        torch.testing.assert_close(model(image), expected)


def test_mismatched_weights_raise_a_clear_error(tmp_path):
    _, path = _generator_file(tmp_path, width=8)
    with pytest.raises(EmsegInputError, match=r"generator_w8\.pt: weights are from "
                                              r"BoundlessGenerator.*'width': 8.*'width': 4"):
        load_pretrained(BoundlessSegmenter(width=4), path, n_layers=8)
    not_weights = tmp_path / "history.pt"
    torch.save({"something": 1}, not_weights)
    with pytest.raises(EmsegInputError, match=r"history\.pt: not an emseg checkpoint"):
        load_pretrained(BoundlessSegmenter(width=4), not_weights, 8)
    unet = _save_model(UNet2D(base_width=2, depth=2), tmp_path / "best.pt")
    with pytest.raises(EmsegInputError, match=r"best\.pt: not Boundless generator weights "
                                              r"\(it holds a 'unet2d'\)"):
        load_pretrained(BoundlessSegmenter(width=4), unet, 8)
    with pytest.raises(EmsegInputError, match="generator weights not found"):
        load_pretrained(BoundlessSegmenter(width=4), tmp_path / "nope.pt", 8)
    with pytest.raises(EmsegInputError, match=r"n_layers must lie in \[0, 17\]"):
        freeze_first(BoundlessSegmenter(width=4), 18)


def test_tampered_shapes_are_named(tmp_path):
    _, path = _generator_file(tmp_path)
    saved = load_checkpoint(path)
    saved["model"]["layers.2.feature.weight"] = torch.zeros(1, 1, 3, 3)
    save_checkpoint(path, saved)  # a consistent checksum: the shape check must catch it
    with pytest.raises(EmsegInputError, match=r"parameter 'layers.2.feature.weight' does not "
                                              r"match the architecture"):
        load_pretrained(BoundlessSegmenter(width=4), path, 8)


def test_modified_weights_fail_their_checksum(tmp_path):
    _, path = _generator_file(tmp_path)
    saved = load_checkpoint(path)
    saved["model"]["layers.2.feature.weight"].add_(1e-3)
    torch.save(saved, path)  # the stored SHA-256 is now stale
    with pytest.raises(EmsegInputError, match=r"generator_w4\.pt: the weights do not match "
                                              r"their SHA-256"):
        load_pretrained(BoundlessSegmenter(width=4), path, 8)


def test_summary_table_reports_spread_thesis_and_significance():
    import pandas as pd

    from emseg_lib.experiments.transfer_sweep import EXPERIMENTS, summary_table

    rows = []
    for i, label in enumerate(EXPERIMENTS["initialisation"]):
        for seed, noise in enumerate([-0.01, 0.0, 0.01]):
            rows.append({"experiment": "initialisation", "label": label, "seed": seed,
                         "val_acc_pct": 95 + noise, "voi_before": 0.3 + i * 0.2 + noise,
                         "voi": 0.2 + noise})
    table = summary_table(pd.DataFrame(rows), "initialisation")
    assert list(table.index) == list(EXPERIMENTS["initialisation"])
    assert table.loc["all random", "voi_before thesis"] == pytest.approx(0.248)
    assert table.loc["all pretrained", "voi_before std"] == pytest.approx(0.01)
    assert pd.isna(table.loc["all random", "voi_before p vs first"])
    assert table.loc["8 random frozen", "voi_before p vs first"] < 0.01  # 0.4 apart
    assert table.loc["8 random frozen", "voi p vs first"] > 0.5  # identical
    with pytest.raises(EmsegInputError, match="experiment must be one of"):
        summary_table(pd.DataFrame(rows), "nope")
