"""Throughput of training, inference and post-processing, and the wall time of a profile.

Usage::

    python benchmarks/throughput.py --profile full --device cuda
    python benchmarks/throughput.py --profile quick --device cpu --fit-samples 16 --steps 2

Per model (UNet2D, UNet3D, Boundless segmenter), at the profile's sizes: what one training
sample costs to make (crop, augmentation, target; one process), the bare training step
(fp32, and bf16 + channels_last on CUDA), ``fit()`` for a few epochs with the profile's
DataLoader settings, and inference (whole ``--slab-px``² slices for 2D networks, the
profile's tiles for 3D). Then post-processing of ``--slab-px``² slices with both methods on 1
process and on every core, and with the SciPy / scikit-image code they equal (one process, the
same slices: the speed-up), the thesis tables' 36-pair threshold grid per ``--slab-px``² slice
(1 process and every core), the tuning grids, the GANs' training steps, and the estimated wall
time of every notebook and of the whole profile, with the training sweeps (Boundless masks,
transfer runs, adversarial seeds) spread over ``--engine-gpus`` GPUs by the sweep engine
(:mod:`emseg_lib.infra.engine`). Targets are printed beside the numbers, not asserted. The table
goes to stdout and, as Markdown and JSON, to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import measure
import numpy as np
import torch
from estimate import Estimator, windows

from emseg_lib.data import (
    AugmentConfig,
    EMCropDataset,
    EMVolume,
    cached_synthetic_volume,
    split_slices,
    synthetic_em_volume,
)
from emseg_lib.experiments.supervised import make_datasets, make_model
from emseg_lib.infra.atomic_files import atomic_write_text
from emseg_lib.infra.device import pick_device, seed_everything
from emseg_lib.infra.parallel import available_cores
from emseg_lib.models import BoundlessSegmenter, model_entry
from emseg_lib.profiles import PROFILES, Profile, get_profile
from emseg_lib.train import TrainConfig
from emseg_lib.train.feed import Placement, resolve_loader_workers

ROOT = Path(__file__).resolve().parent.parent
#: where the synthetic volume the rates are measured on is cached (the notebooks' data/)
CACHE_DIR = ROOT / "data"
STARTED = time.perf_counter()
KINDS = ("unet2d", "unet3d", "boundless_segmenter")
TARGET_FIT_SHARE = 0.8
TARGET_POSTPROCESS = 8.0  # slices/s of 1250^2 on 16 cores
TARGET_POSTPROCESS_GAIN = 3.0  # thesis method, one process, over the SciPy / scikit-image code
TARGET_FULL_HOURS = 6.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if present)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output path without suffix (default: benchmarks/results/"
                             "<date>_<machine>)")
    parser.add_argument("--models", default=",".join(KINDS), help="comma-separated subset")
    parser.add_argument("--epochs", type=int, default=2, help="fit() epochs per model")
    parser.add_argument("--fit-samples", type=int, default=None,
                        help="training samples per fit() epoch (default: the profile's)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of fit() (default: the profile's)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--slab-px", type=int, default=1250,
                        help="side of the slices for inference and post-processing")
    parser.add_argument("--infer-slices", type=int, default=4)
    parser.add_argument("--pp-slices", type=int, default=8)
    parser.add_argument("--grid-slices", type=int, default=2,
                        help="slab slices for the 36-pair thesis grid")
    parser.add_argument("--engine-gpus", type=int, default=4,
                        help="GPUs the sweep engine spreads the training sweeps over in the "
                             "estimate (1 = inline)")
    parser.add_argument("--skip-gans", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; 1 helps on a loaded CPU)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR,
                        help="synthetic-volume cache (default: data/)")
    return parser.parse_args(argv)


def environment(device: torch.device) -> dict[str, Any]:
    """Date, machine and versions."""
    now = datetime.datetime.now(datetime.UTC)
    return {"date": now.isoformat(timespec="seconds"), "cpu": measure.cpu_name(),
            "cores": available_cores(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "device": str(device), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "numpy": np.__version__, "python": platform.python_version()}


def with_samples(profile: Profile, samples: int | None) -> Profile:
    """``profile`` with ``samples`` training samples per epoch in every supervised plan."""
    if samples is None:
        return profile
    return dataclasses.replace(profile, **{
        name: dataclasses.replace(getattr(profile, name), samples_per_epoch=samples)
        for name in ("unet2d", "unet3d", "transfer")})


def _datasets(kind: str, volume: EMVolume, profile: Profile
              ) -> tuple[EMCropDataset, EMCropDataset, int]:
    """Training and validation crops of ``kind``, as its experiment makes them, and the
    batch size."""
    if kind != "boundless_segmenter":
        train, val = make_datasets(kind, volume, profile)
        return train, val, (profile.unet2d if kind == "unet2d" else profile.unet3d).batch_size
    plan = profile.transfer
    parts = split_slices(volume.shape[0]).apply(volume)
    crop = (plan.crop, plan.crop)
    return (EMCropDataset(parts["train"], crop, plan.samples_per_epoch, augment=AugmentConfig()),
            EMCropDataset(parts["val"], crop, plan.val_crops, seed=profile.validation_seed),
            plan.batch_size)


def _model(kind: str, profile: Profile) -> torch.nn.Module:
    if kind == "boundless_segmenter":
        seed_everything(0)
        return BoundlessSegmenter(width=profile.boundless.width)
    return make_model(kind, profile)


def _tile_volume(volume: EMVolume, profile: Profile) -> tuple[np.ndarray, int]:
    """The volume's corner holding 2 tiles per axis (where it is large enough), and the
    number of tiles in it."""
    tiling = profile.tiling_3d
    shape = [min(s, 2 * t - o) for s, t, o in zip(volume.shape, tiling.tile, tiling.overlap,
                                                  strict=True)]
    tiles = math.prod(windows(s, t, o) for s, t, o in zip(shape, tiling.tile, tiling.overlap,
                                                          strict=True))
    return volume.raw[:shape[0], :shape[1], :shape[2]], tiles


def log(message: str) -> None:
    """Progress on stderr, with the seconds since the start."""
    print(f"[{time.perf_counter() - STARTED:6.0f} s] {message}", file=sys.stderr, flush=True)


def measure_model(kind: str, volume: EMVolume, slab: EMVolume, profile: Profile,
                  device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """Sample cost, bare steps, fit() and inference of one model."""
    log(kind)
    model = _model(kind, profile)
    train, val, batch_size = _datasets(kind, volume, with_samples(profile, args.fit_samples))
    batch = torch.utils.data.default_collate([train[i] for i in range(batch_size)])
    dims = model_entry(model).dims
    steps = {"fp32": measure.bare_step_rate(model, batch, Placement(device),
                                            warmup=args.warmup, repeats=args.steps)}
    if device.type == "cuda":
        fast = Placement.choose(device, amp=True, dims=dims)
        label = "bf16+channels_last" if fast.channels_last else "bf16"
        steps[label] = measure.bare_step_rate(model, batch, fast, warmup=args.warmup,
                                              repeats=args.steps)
    workers = resolve_loader_workers(profile.num_workers if args.workers is None
                                     else args.workers, device)
    config = TrainConfig(epochs=args.epochs, batch_size=batch_size, device=str(device),
                         num_workers=workers)
    fit = measure.fit_rates(model, train, val, config)
    if dims == 2:
        inference = {"slices_per_s": measure.inference_rate(
            model, slab.raw[:args.infer_slices], profile.tiling_3d, device)}
    else:
        corner, tiles = _tile_volume(volume, profile)
        inference = {"tiles_per_s": tiles * measure.inference_rate(model, corner,
                                                                   profile.tiling_3d, device),
                     "tiles": tiles, "tiled_volume": list(corner.shape)}
    return {"crop": list(train.crop_shape), "batch_size": batch_size,
            "sample_ms": 1000 / measure.sample_rate(train, max(16, 2 * batch_size)),
            "bare_step_samples_per_s": steps, "fit": fit, "fit_workers": workers,
            "fit_samples_per_epoch": len(train), "inference": inference}


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    profile = get_profile(args.profile)
    device = pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"environment": environment(device), "profile": profile.name,
                              "args": {k: str(v) for k, v in vars(args).items()}}
    log(f"volume {profile.synthetic_shape}")
    volume, volume_s = measure.volume_seconds(lambda: cached_synthetic_volume(
        profile.synthetic_shape, 0, cache_dir=args.cache_dir))
    slab_shape = (max(args.infer_slices, args.pp_slices), args.slab_px, args.slab_px)
    log(f"slab {slab_shape}")
    slab, slab_s = measure.volume_seconds(lambda: synthetic_em_volume(slab_shape, seed=1))
    result.update(volume_shape=list(volume.shape), volume_s=volume_s,
                  slab_shape=list(slab_shape),
                  synthetic_s_per_mpx=slab_s / (np.prod(slab_shape) / 1e6),
                  slab_px=args.slab_px, cores=available_cores())
    result["models"] = {kind: measure_model(kind, volume, slab, profile, device, args)
                        for kind in args.models.split(",")}
    log("post-processing")
    prob = measure.probability_map(slab.labels[:args.pp_slices])
    result["postprocess_slices_per_s"] = measure.postprocess_rates(
        prob, sorted({1, available_cores()}))
    log("post-processing, SciPy / scikit-image code")
    result["postprocess_reference_slices_per_s"] = measure.reference_rates(prob)
    log("thesis grid")
    result["thesis_grid_s_per_slice"] = measure.thesis_grid_rates(
        prob[:args.grid_slices], slab.labels[:args.grid_slices], slab.resolution[1],
        sorted({1, available_cores()}))
    z = split_slices(volume.shape[0]).val.start
    profile_prob = measure.probability_map(volume.labels[z:z + 1])[0]
    result["grid"] = measure.grid_seconds(profile_prob, volume.labels[z], volume.resolution[1])
    if not args.skip_gans:
        log("GANs")
        train_raw = split_slices(volume.shape[0]).apply(volume)["train"].raw
        result["gans"] = {
            "boundless_samples_per_s": measure.boundless_gan_rate(
                train_raw, profile.boundless, device, warmup=args.warmup, repeats=args.steps),
            "stylegan_its_per_s": measure.stylegan_rates(
                train_raw, profile.stylegan, device, warmup=args.warmup, repeats=args.steps)}
    if set(args.models.split(",")) == set(KINDS) and not args.skip_gans:
        result["engine_gpus"] = args.engine_gpus
        result["estimate"] = Estimator(profile, volume.shape, result, args.engine_gpus).all()
        result["estimate_inline_s"] = sum(
            row["seconds"] for row in Estimator(profile, volume.shape, result, 1).all())
    return result


def _targets(result: dict[str, Any]) -> list[str]:
    """The targets, each with the measured value beside it."""
    lines, gpu = [], result["environment"]["gpu"] is not None
    for kind in ("unet2d", "unet3d"):
        if kind not in result["models"]:
            continue
        model = result["models"][kind]
        name, bare = next(reversed(model["bare_step_samples_per_s"].items()))
        share = model["fit"]["samples_per_s"] / bare
        lines.append(f"{kind}: fit() {model['fit']['samples_per_s']:.1f} samples/s = "
                     f"{100 * share:.0f} % of the bare {name} step (target >= "
                     f"{100 * TARGET_FIT_SHARE:.0f} % on GPU{'' if gpu else '; this is a CPU'})")
    reference = result.get("postprocess_reference_slices_per_s", {})
    for method, rates in result["postprocess_slices_per_s"].items():
        cores, best = max(rates.items())
        if method in reference:
            target = (f" (target >= {TARGET_POSTPROCESS_GAIN:g} x)" if method == "thesis"
                      else "")
            lines.append(f"post-processing {method}, one process: {rates[1]:.2f} slices/s of "
                         f"{result['slab_px']}^2 = {rates[1] / reference[method]:.2f} x the "
                         f"SciPy / scikit-image code{target}")
        lines.append(f"post-processing {method}: {best:.2f} slices/s of {result['slab_px']}^2 "
                     f"on {cores} cores, {best / rates[1] / cores:.0%} of linear scaling "
                     f"(target >= {TARGET_POSTPROCESS:g} on 16 cores)")
    if "estimate" in result:
        hours = sum(row["seconds"] for row in result["estimate"]) / 3600
        lines.append(f"{result['profile']} profile estimate: {hours:.2f} h with the sweeps on "
                     f"{result['engine_gpus']} GPUs, {result['estimate_inline_s'] / 3600:.2f} h "
                     f"inline (target for full on one H100: <= {TARGET_FULL_HOURS:g} h)")
    return lines


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def markdown(result: dict[str, Any]) -> str:
    """The report as Markdown."""
    env = result["environment"]
    lines = [f"# Throughput, profile `{result['profile']}`", "",
             f"{env['date']} · CPU {env['cpu']} ({env['cores']} cores) · GPU {env['gpu'] or '—'}"
             f" · device {env['device']} ({env['torch_threads']} torch threads) · torch "
             f"{env['torch']} · CUDA {env['cuda'] or '—'}",
             "", f"Options: `{' '.join(sys.argv[1:])}`", "",
             f"Volume {tuple(result['volume_shape'])}: {result['volume_s']:.1f} s (cached or "
             f"made); synthetic generation {result['synthetic_s_per_mpx']:.2f} s per megapixel.",
             "", "## Models (samples/s unless noted)", "",
             "| model | crop | batch | sample ms (1 process) | bare fp32 | bare bf16(+cl) | "
             "fit() last epoch | fit / bare | val s/epoch | checkpoint s | start s | "
             "fit workers | inference |", "|" + "---|" * 13]
    for kind, model in result["models"].items():
        steps = model["bare_step_samples_per_s"]
        fast = next((v for k, v in steps.items() if k != "fp32"), None)
        fit, infer = model["fit"], model["inference"]
        share = fit["samples_per_s"] / (fast or steps["fp32"])
        inference = (f"{infer['slices_per_s']:.3g} slices/s ({result['slab_px']}²)"
                     if "slices_per_s" in infer else f"{infer['tiles_per_s']:.3g} tiles/s")
        lines.append(
            f"| {kind} | {'x'.join(map(str, model['crop']))} | {model['batch_size']} | "
            f"{model['sample_ms']:.2f} | {_rate(steps['fp32'])} | {_rate(fast)} | "
            f"{_rate(fit['samples_per_s'])} | {100 * share:.0f} % | {fit['val_s']:.2f} | "
            f"{fit['checkpoint_s']:.2f} | {fit['start_s']:.2f} | {model['fit_workers']} | "
            f"{inference} |")
    processes = list(next(iter(result["postprocess_slices_per_s"].values())))
    lines += ["", f"## Post-processing ({result['slab_px']}² slices/s)", "",
              "| method | " + " | ".join(f"{n} process(es)" for n in processes) + " |",
              "|---" * (1 + len(processes)) + "|"]
    for method, rates in result["postprocess_slices_per_s"].items():
        lines.append(f"| {method} | " + " | ".join(f"{r:.2f}" for r in rates.values()) + " |")
    lines += [f"| {method}, SciPy / scikit-image code | {rate:.2f} |"
              + " — |" * (len(processes) - 1)
              for method, rate in result.get("postprocess_reference_slices_per_s", {}).items()]
    lines += ["", f"Thesis tables' 6 x 6 threshold grid, seconds per {result['slab_px']}² slice: "
              + ", ".join(f"{s:.2f} on {n} process(es)"
                          for n, s in result["thesis_grid_s_per_slice"].items()),
              "", "Seconds per slice of the profile's volume, one process: " + ", ".join(
                  f"{k} {v:.2f}" for k, v in result["grid"].items()), ""]
    if "gans" in result:
        gans = result["gans"]
        lines += [f"GANs: Boundless {gans['boundless_samples_per_s']:.3g} samples/s; StyleGAN "
                  + ", ".join(f"{r} px {v:.3g} it/s"
                              for r, v in gans["stylegan_its_per_s"].items()), ""]
    if "estimate" in result:
        lines += [f"## Estimated wall time, profile `{result['profile']}`", "",
                  f"Training sweeps on {result['engine_gpus']} GPU(s) (`--engine local --jobs "
                  f"{result['engine_gpus']}`); inline, one after the other: "
                  f"{result['estimate_inline_s'] / 3600:.2f} h in all.", "",
                  "| notebook | work | hours | how |", "|---|---|---|---|"]
        totals: dict[str, float] = {}
        for row in result["estimate"]:
            totals[row["notebook"]] = totals.get(row["notebook"], 0.0) + row["seconds"]
            lines.append(f"| {row['notebook']} | {row['work']} | {row['seconds'] / 3600:.3f} |"
                         f" {row['how']} |")
        lines += ["", "| notebook | hours |", "|---|---|"]
        lines += [f"| {name} | {s / 3600:.3f} |" for name, s in totals.items()]
        lines.append(f"| **total** | **{sum(totals.values()) / 3600:.2f}** |")
    lines += ["", "## Targets (not asserted)", ""] + [f"* {t}" for t in _targets(result)]
    return "\n".join(lines) + "\n"


def default_out(result: dict[str, Any]) -> Path:
    env = result["environment"]
    machine = re.sub(r"[^a-z0-9]+", "-", (env["gpu"] or env["cpu"]).lower()).strip("-")
    return ROOT / "benchmarks" / "results" / f"{env['date'][:10]}_{machine}"


def write_results(out: Path, report: str, result: dict[str, Any]) -> None:
    """Print the Markdown ``report`` and write it and ``result`` (JSON) beside each other at
    ``out`` (a path without suffix)."""
    print(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".md"), report)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=1, default=str) + "\n")
    print(f"written: {out.with_suffix('.md')}, {out.with_suffix('.json')}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = measure_all(args)
    write_results(args.out or default_out(result), markdown(result), result)


if __name__ == "__main__":
    main()
