"""Training recipes of boundary networks: the losses, the thesis's recipe kept exact for the
notebooks, ``emseg train --recipe`` and runs trained with another recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from emseg_lib.cli import main
from emseg_lib.data import synthetic_em_volume
from emseg_lib.models import build_model
from emseg_lib.profiles import get_profile
from emseg_lib.train import BEST, TrainConfig
from emseg_lib.train.checkpoint import Checkpoint
from emseg_lib.train.loop import _identity
from emseg_lib.train.losses import BOUNDARY_LOSSES, THESIS_BOUNDARY_LOSS, bce_dice_loss, bce_loss
from emseg_lib.train.recipes import (
    DEFAULT_RECIPE,
    RECIPES,
    THESIS_RECIPE,
    default_recipe,
    get_recipe,
    recorded_recipe,
)


def _cells_and_membranes() -> torch.Tensor:
    """A ``(1, 1, 16, 16)`` cell map (1 = cell interior) with a membrane cross."""
    target = torch.ones(1, 1, 16, 16)
    target[..., 7:9, :] = 0.0
    target[..., :, 7:9] = 0.0
    return target


def test_the_dice_term_weighs_a_missed_membrane_as_much_as_the_cells():
    target = _cells_and_membranes()
    right = torch.where(target > 0, 20.0, -20.0)
    assert bce_dice_loss(right, target) < 1e-6
    no_membrane = torch.full_like(target, 20.0)  # "cell" everywhere: every membrane missed
    # the cross-entropy of the membrane pixels (23 %) wrong, plus the whole Dice term
    assert bce_dice_loss(no_membrane, target) == pytest.approx(
        float(bce_loss(no_membrane, target)) + 1.0, abs=1e-4)


@pytest.mark.parametrize("loss", sorted(BOUNDARY_LOSSES))
def test_every_boundary_loss_takes_3d_batches_and_batches_without_membrane(loss):
    """``(N, 1, Z, Y, X)`` logits give one finite number and finite gradients, also when the
    batch holds no membrane at all (the Dice term is then 1, with no gradient)."""
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 3, 8, 8, requires_grad=True)
    for target in (torch.randint(0, 2, (2, 1, 3, 8, 8)).float(), torch.ones(2, 1, 3, 8, 8)):
        value = BOUNDARY_LOSSES[loss](logits, target)
        value.backward()
        assert value.ndim == 0 and torch.isfinite(value)
        assert torch.isfinite(logits.grad).all()
        logits.grad = None
    logits, all_cells = logits.detach(), torch.ones(2, 1, 3, 8, 8)
    assert float(bce_dice_loss(logits, all_cells)) == pytest.approx(
        float(bce_loss(logits, all_cells)) + 1.0, abs=1e-5)


def test_the_thesis_recipe_is_the_training_loops_default():
    """The notebooks train with :class:`TrainConfig`'s defaults: they are the thesis's."""
    thesis = get_recipe(THESIS_RECIPE)
    config = TrainConfig()
    assert (config.lr, config.eps, config.boundary_loss) == (thesis.lr, thesis.eps,
                                                             THESIS_BOUNDARY_LOSS)
    assert thesis.boundary_loss == THESIS_BOUNDARY_LOSS
    assert DEFAULT_RECIPE in RECIPES and DEFAULT_RECIPE != THESIS_RECIPE
    # only the UNet2D's recipe was measured; the UNet3D trains as the thesis did
    assert (default_recipe("unet2d"), default_recipe("unet3d")) == (DEFAULT_RECIPE,
                                                                     THESIS_RECIPE)
    model = build_model({"name": "unet2d", "config": {}})
    for recipe in RECIPES.values():
        assert recipe.boundary_loss in BOUNDARY_LOSSES
        # what the training loop records in run.json, read back
        identity = _identity(model, TrainConfig(**recipe.config_fields()), None, None)
        settings = json.loads(json.dumps(identity))["config"]
        assert recorded_recipe(settings) == recipe.name
    assert recorded_recipe({"lr": 0.5, "eps": 0.01}) is None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe_stack")
    volume = synthetic_em_volume((6, 96, 96), seed=3)
    tifffile.imwrite(root / "raw.tif", volume.raw, photometric="minisblack")
    tifffile.imwrite(root / "labels.tif", volume.labels.astype(np.uint32),
                     photometric="minisblack")
    return root


def _train(stack, out, capsys, *extra):
    code = main([str(a) for a in ["train", "--model", "unet2d", "--data", stack / "raw.tif",
                                  "--labels", stack / "labels.tif", "--out", out, "--profile",
                                  "smoke", "--epochs", "1", "--device", "cpu", "--workers", "1",
                                  "--no-tensorboard", *extra]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _identity_config(run) -> dict:
    return json.loads((run / "run.json").read_text())["identity"]["config"]


def test_emseg_train_uses_its_recipe_and_refuses_another_for_a_run(tmp_path, stack, capsys,
                                                                    monkeypatch):
    recipe = RECIPES[DEFAULT_RECIPE]
    calls = []

    def spy(logits, target):
        calls.append(tuple(logits.shape))
        return loss(logits, target)

    loss = BOUNDARY_LOSSES[recipe.boundary_loss]
    monkeypatch.setitem(BOUNDARY_LOSSES, recipe.boundary_loss, spy)
    run = tmp_path / "run"
    code, out, err = _train(stack, run, capsys)
    assert code == 0, err
    assert calls, f"the training loop never called the {recipe.name} recipe's loss"
    assert f"recipe: {recipe.name} ({recipe.summary}; emseg train's default" in out
    assert json.loads((run / "summary.json").read_text())["recipe"] == recipe.name
    settings = _identity_config(run)
    assert (settings["lr"], settings["eps"], settings["boundary_loss"]) == (
        recipe.lr, recipe.eps, recipe.boundary_loss)

    code, out, err = _train(stack, run, capsys, "--recipe", THESIS_RECIPE)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (f"was trained with --recipe {recipe.name}" in err
            and f"pass --recipe {recipe.name} to resume it" in err)
    assert "shape (6, 96, 96)" not in out  # refused before the data was read

    code, out, err = _train(stack, run, capsys, "--target", "affinities")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "predicting boundaries" in err and "pass --target boundaries to resume it" in err
    assert "shape (6, 96, 96)" not in out


def test_a_run_resumes_with_its_own_recipe(tmp_path, stack, capsys):
    """A thesis-recipe run records no ``boundary_loss`` (as every run before recipes), and the
    same command without ``--recipe`` resumes it as it was trained, and says so."""
    run = tmp_path / "run"
    code, out, err = _train(stack, run, capsys, "--recipe", THESIS_RECIPE)
    assert code == 0, err
    assert f"recipe: {THESIS_RECIPE} (" in out and "; --recipe)" in out
    assert "boundary_loss" not in _identity_config(run)
    code, out, err = _train(stack, run, capsys, "--epochs", "2")
    assert code == 0, err
    assert f"recipe: {THESIS_RECIPE} (" in out and f"as the run in {run} was trained" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["recipe"] == THESIS_RECIPE and summary["epochs"] == 2


def test_a_recipe_for_an_affinity_network_is_one_line(tmp_path, capsys):
    assert main(["train", "--model", "unet2d", "--target", "affinities", "--recipe",
                 DEFAULT_RECIPE, "--data", str(tmp_path / "none.h5"), "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--recipe {DEFAULT_RECIPE}: only with --target" in err
    assert not (tmp_path / "run").exists()


def _recorded_width(run) -> int:
    return json.loads((run / "run.json").read_text())["identity"]["model_spec"]["config"][
        "base_width"]


def test_emseg_train_builds_the_width_asked_for_and_resumes_with_it(tmp_path, stack, capsys):
    """``--width`` sets the UNet2D's first level (recorded in the run and its checkpoint);
    the same command without it resumes at that width, and another width is refused in one
    line before the data is read."""
    run = tmp_path / "run"
    profile_width = get_profile("smoke").unet2d_width
    code, out, err = _train(stack, run, capsys)
    assert code == 0, err
    assert f"width: {profile_width} channels in the first level (the smoke profile's;" in out
    assert _recorded_width(tmp_path / "run") == profile_width
    run = tmp_path / "wide"
    code, out, err = _train(stack, run, capsys, "--width", profile_width + 2)
    assert code == 0, err
    assert f"width: {profile_width + 2} channels in the first level (--width)" in out
    assert _recorded_width(run) == profile_width + 2
    assert Checkpoint.read(run / BEST).model().config["base_width"] == profile_width + 2
    assert json.loads((run / "summary.json").read_text())["width"] == profile_width + 2

    code, out, err = _train(stack, run, capsys, "--epochs", "2")
    assert code == 0, err
    assert f"(as the run in {run} was built)" in out
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2

    code, out, err = _train(stack, run, capsys, "--width", profile_width)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (f"UNet2D has --width {profile_width + 2}, not {profile_width}" in err
            and f"pass --width {profile_width + 2} to resume it" in err)
    assert "shape (6, 96, 96)" not in out  # refused before the data was read


def test_emseg_train_builds_the_depth_asked_for_and_resumes_with_it(tmp_path, stack, capsys):
    """``--depth`` sets the UNet2D's number of levels, recorded like ``--width``; a run
    resumes with its own depth and another is refused in one line."""
    run = tmp_path / "shallow"
    code, out, err = _train(stack, run, capsys, "--depth", 3)
    assert code == 0, err
    assert "depth: 3 levels (--depth)" in out
    config = json.loads((run / "run.json").read_text())["identity"]["model_spec"]["config"]
    assert config["depth"] == 3 and len(Checkpoint.read(run / BEST).model().down) == 3
    assert json.loads((run / "summary.json").read_text())["depth"] == 3
    code, out, err = _train(stack, run, capsys, "--epochs", "2")
    assert code == 0, err
    assert f"depth: 3 levels (as the run in {run} was built)" in out
    code, out, err = _train(stack, run, capsys, "--depth", 4)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "UNet2D has --depth 3, not 4" in err and "pass --depth 3 to resume it" in err


@pytest.mark.parametrize(("extra", "expected"), [
    (["--model", "unet3d", "--width", "8"], "--width 8: only with --model unet2d"),
    (["--model", "unet2d", "--width", "0"], "--width must lie in 1..1024, got 0"),
    (["--model", "unet3d", "--depth", "4"], "--depth 4: only with --model unet2d"),
    (["--model", "unet2d", "--depth", "1"], "--depth must lie in 2..10, got 1"),
    (["--model", "unet2d", "--depth", "8", "--profile", "smoke"],
     "--depth 8: the smoke profile's crops of 64 x 64 pixels are not multiples of 2**7 = 128; "
     "pass --depth 7 or less"),
])
def test_a_bad_width_or_depth_is_one_line(tmp_path, capsys, extra, expected):
    assert main(["train", *extra, "--data", str(tmp_path / "none.h5"), "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "run").exists()
