"""A trained segmentation network as a bioimage.io model package (``emseg export``).

The package (model description spec 0.5, a ``.zip``) runs wherever bioimage.io models run
(bioimageio.core, ilastik, deepImageJ, napari through bioimageio.core, the BioImage Model Zoo):

* weights: TorchScript (UNet2D traced, which serves any slice size that is a multiple of
  ``2**(depth - 1)``; UNet3D scripted, any size);
* input ``raw``: ``(batch, channel, [z,] y, x)`` grey values 0–255 as float32, with the voxel
  size of the data in nanometres; preprocessing ``scale_linear`` by 1/255, as ``emseg`` maps
  uint8 to [0, 1] (:func:`~emseg_lib.inference.predict_slices`);
* output ``cells``: the cell probability (``sigmoid`` of the logits), same axes and size;
* a test input (a centred crop of the data given) with ``emseg``'s own prediction as the test
  output, a cover image of both, the learned post-processing thresholds (``config.emseg``) and
  the thesis's citation.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emseg_lib.errors import EmsegInputError
from emseg_lib.inference import to_unit
from emseg_lib.models import model_entry, model_name
from emseg_lib.train.checkpoint import Checkpoint

#: side (y, x) of the test crop of a 2D network, rounded down to its size multiple
TEST_SIDE = 64
#: ``(z, y, x)`` of the test crop of a 3D network (``2n + 1`` sides align exactly)
TEST_SHAPE_3D = (5, 49, 49)
THESIS = ("Bachelor thesis \"Generative Adversarial Networks for Electron Microscopy Image "
          "Segmentation\" (CREMI data; UNet2D after Ronneberger et al. 2015, UNet3D after Lee et "
          "al. 2017); exported by emseg")
#: Lee et al. 2017, "Superhuman accuracy on the SNEMI3D connectomics challenge" (arXiv); a DOI,
#: not a URL: bioimage.io checks URLs over the network while validating, DOIs by pattern
LEE_2017 = "10.48550/arXiv.1706.00120"


def _test_crop(raw: np.ndarray, dims: int, multiple: int) -> np.ndarray:
    """A centred crop of ``raw`` ``(Z, Y, X)`` (an array, or a chunked stack read by ranges
    of slices) as the package's test input: ``(1, 1, Y, X)``
    for 2D networks (the middle slice), ``(1, 1, Z, Y, X)`` for 3D ones, grey values 0–255."""
    if dims == 2:
        side = min(TEST_SIDE, *raw.shape[1:]) // multiple * multiple
        if side == 0:
            raise EmsegInputError(f"data of shape {raw.shape} (Z, Y, X): slices smaller than "
                                  f"the network's size multiple {multiple}")
        shape = (1, side, side)
    else:
        shape = tuple(min(s, t) for s, t in zip(raw.shape, TEST_SHAPE_3D, strict=True))
    starts = [(s - c) // 2 for s, c in zip(raw.shape, shape, strict=True)]
    slab = np.asarray(raw[starts[0]:starts[0] + shape[0]])  # chunked stacks: by slices only
    crop = slab[:, starts[1]:starts[1] + shape[1], starts[2]:starts[2] + shape[2]]
    grey = to_unit(crop) * 255  # undone by the package's preprocessing, as emseg scales it
    return grey[None] if dims == 2 else grey[None, None]


def _torchscript(model: nn.Module, example: torch.Tensor, dims: int) -> torch.jit.ScriptModule:
    """UNet3D scripted (sizes follow the input); UNet2D traced (its size check is Python and
    holds for every size the package declares, so the tracer's warning about it is muted)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        _mute_jit_deprecation()
        return torch.jit.script(model) if dims == 3 else torch.jit.trace(model, example)


def _mute_jit_deprecation() -> None:
    """Inside ``warnings.catch_warnings()``: torch 2.13's notice that ``torch.jit`` is
    deprecated, which a user can do nothing about (bioimage.io packages carry TorchScript)."""
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated",
                            category=DeprecationWarning)


def _cover(test_input: np.ndarray, test_output: np.ndarray, path: Path) -> None:
    """Input and probability side by side (the middle slice), as a PNG."""
    import matplotlib.pyplot as plt

    image, prob = test_input[0, 0], test_output[0, 0]
    if image.ndim == 3:
        image, prob = image[image.shape[0] // 2], prob[prob.shape[0] // 2]
    plt.imsave(path, np.concatenate([image / 255.0, prob], axis=1), cmap="gray", vmin=0,
               vmax=1)


def export_bioimageio(checkpoint: str | Path, raw: np.ndarray,
                      resolution: tuple[float, float, float], out: str | Path) -> Path:
    """Write ``checkpoint``'s network as a bioimage.io model package to ``out`` (``.zip``).

    Args:
        checkpoint: a ``best.pt`` of ``emseg train`` or a notebook run.
        raw: ``(Z, Y, X)`` uint8 (or float in [0, 1]) data like the training data; a centred
            crop becomes the test input.
        resolution: ``(z, y, x)`` voxel size in nm, written as the axes' scale.
        out: the package file.

    Returns:
        ``out``.

    Raises:
        EmsegInputError: not a segmentation network's checkpoint; data too small.
    """
    from bioimageio.spec import save_bioimageio_package

    checkpoint, out = Path(checkpoint), Path(out)
    read = Checkpoint.read(checkpoint)
    model = read.model()
    entry = model_entry(model)
    multiple = entry.size_multiple(model)
    test_input = _test_crop(raw, entry.dims, multiple)
    example = torch.from_numpy(test_input / 255.0)
    with torch.no_grad():
        test_output = torch.sigmoid(model(example)).numpy()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        np.save(work / "test_input.npy", test_input)
        np.save(work / "test_output.npy", test_output)
        _torchscript(model, example, entry.dims).save(str(work / "weights.pt"))
        _cover(test_input, test_output, work / "cover.png")
        (work / "README.md").write_text(_readme(model_name(model), entry.dims,
                                                int(read.epoch), resolution))
        # 2D: every multiple of the network's; 3D: any size, 2n + 1 from the test crop on
        sizes = (((multiple, multiple), multiple) if entry.dims == 2
                 else (test_input.shape[2:], 2))
        try:
            description = _description(work, model_name(model), entry.dims, sizes, resolution,
                                       {"emseg": {"model": model_name(model),
                                                  "epoch": int(read.epoch),
                                                  "postprocess": read.learned or {}}})
        except ValueError as error:  # pydantic's ValidationError: bioimage.io's own rules
            reason = " ".join(str(error).split())
            raise EmsegInputError(
                f"{checkpoint}: bioimage.io refuses the package (the network's probabilities "
                f"on the test crop range {float(test_output.min()):.3g}.."
                f"{float(test_output.max()):.3g}): {reason}") from None
        out.parent.mkdir(parents=True, exist_ok=True)
        save_bioimageio_package(description, output_path=out)
    return out


def _readme(name: str, dims: int, epoch: int, resolution: tuple[float, float, float]) -> str:
    return (f"# emseg {name}\n\nCell probability of {'slices' if dims == 2 else 'volumes'} of "
            f"neuron EM data, trained with emseg (epoch {epoch}). Input: grey values 0-255; "
            f"voxel size {tuple(resolution)} nm (z, y, x). Output: probability of cell "
            "interior (1 - membrane). Segment it with `emseg postprocess`; the watershed "
            "thresholds learned on the validation split are in `config.emseg.postprocess`.\n")


def _description(work: Path, name: str, dims: int, sizes: tuple[tuple[int, ...], int],
                 resolution: tuple[float, float, float], config: dict[str, Any]) -> Any:
    """The ``ModelDescr`` of the files in ``work``; ``sizes``: the smallest input per spatial
    axis and the step between valid sizes."""
    from bioimageio.spec.model import v0_5 as bio

    names = ("y", "x") if dims == 2 else ("z", "y", "x")
    minimum, step = sizes
    scales = dict(zip(("z", "y", "x"), resolution, strict=True))
    raw_id = bio.TensorId("raw")
    inputs = bio.InputTensorDescr(
        id=raw_id,
        axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier("raw")])] + [
            bio.SpaceInputAxis(id=bio.AxisId(axis), size=bio.ParameterizedSize(
                min=smallest, step=step), scale=scales[axis],
                unit="nanometer") for axis, smallest in zip(names, minimum, strict=True)],
        data=bio.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=1 / 255,
                                                                        offset=0.0))],
        test_tensor=bio.FileDescr(source=work / "test_input.npy"))
    outputs = bio.OutputTensorDescr(
        id=bio.TensorId("cells"),
        axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier("cells")])] + [
            bio.SpaceOutputAxis(id=bio.AxisId(axis), size=bio.SizeReference(
                tensor_id=raw_id, axis_id=bio.AxisId(axis)), scale=scales[axis],
                unit="nanometer") for axis in names],
        postprocessing=[bio.SigmoidDescr()],
        test_tensor=bio.FileDescr(source=work / "test_output.npy"))
    return bio.ModelDescr(
        name=f"emseg {name} cell probability",
        description=f"{name} predicting the cell interior probability of neuron electron "
                    "microscopy, trained with emseg",
        authors=[bio.Author(name="emseg")],
        cite=[bio.CiteEntry(text=THESIS, doi=bio.Doi(LEE_2017))],
        license=bio.LicenseId("MIT"), documentation=bio.FileDescr(source=work / "README.md"),
        covers=[bio.FileDescr(source=work / "cover.png")], inputs=[inputs], outputs=[outputs],
        weights=bio.WeightsDescr(torchscript=bio.TorchscriptWeightsDescr(
            source=work / "weights.pt",
            pytorch_version=bio.Version(torch.__version__.split("+")[0]))),
        config=config)


def check_package(path: str | Path) -> str:
    """bioimageio.core's own test of a package (its prediction on the test input against
    the test output, several input sizes); returns ``"passed"`` or the failure report."""
    from bioimageio.core import test_model

    with warnings.catch_warnings():
        _mute_jit_deprecation()
        summary = test_model(Path(path))
    if summary.status == "passed":
        return "passed"
    failed = [f"{detail.name}: {detail.errors}" for detail in summary.details
              if detail.status == "failed"]
    return "\n".join(failed) or str(summary.status)
