"""``emseg train``: train a UNet on a labelled stack, then learn its post-processing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from emseg_lib.cli.common import add_data_arguments, load_volume
from emseg_lib.data.formats import describe
from emseg_lib.errors import EmsegInputError
from emseg_lib.profiles import PROFILES, get_profile
from emseg_lib.train import BEST, LAST

SUMMARY = "summary.json"


def run(args: argparse.Namespace) -> int:
    """Train (or resume) into ``args.out``; write ``summary.json``."""
    from emseg_lib.experiments.supervised import describe_postprocess, train_unet

    volume = load_volume(args)
    if volume.labels is None:
        raise EmsegInputError(f"{args.data}: training needs labels; pass --labels PATH")
    profile = get_profile(args.profile)
    if args.epochs is not None:
        plan = getattr(profile, args.model)
        profile = dataclasses.replace(profile, **{args.model: dataclasses.replace(
            plan, epochs=args.epochs)})
    started = time.perf_counter()
    trained = train_unet(args.model, volume, profile, args.out, seed=args.seed,
                         device=args.device, workers=args.workers)
    last = trained.history.iloc[-1]
    summary = {
        "model": args.model, "profile": args.profile, "epochs": int(len(trained.history)),
        "parameters": int(sum(p.numel() for p in trained.model.parameters())),
        "data": describe(volume), "seconds": round(time.perf_counter() - started, 1),
        "final": {k: float(last[k]) for k in ("train_loss", "val_loss", "val_acc", "val_voi",
                                              "val_arand", "val_cremi_score")},
        "postprocess": trained.postprocess,
        "checkpoints": {"last": str(Path(args.out) / LAST), "best": str(Path(args.out) / BEST)},
    }
    (Path(args.out) / SUMMARY).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["final"], indent=2))
    print(f"post-processing thresholds learned on the validation split, stored in "
          f"{Path(args.out) / BEST}:\n{describe_postprocess(trained.postprocess)}")
    print(f"checkpoints and history in {args.out}")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``train``."""
    train = commands.add_parser("train", help="train a UNet on a labelled stack")
    train.add_argument("--model", choices=["unet2d", "unet3d"], required=True)
    add_data_arguments(train)
    train.add_argument("--out", type=Path, required=True, help="run directory")
    train.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    train.add_argument("--epochs", type=int, help="override the profile's epochs")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when present)")
    train.add_argument("--workers", type=int,
                       help="processes for the threshold search (default: every core)")
    train.set_defaults(run=run)
