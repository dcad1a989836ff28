"""``emseg train``: train a UNet on a labelled stack, then learn its post-processing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from pathlib import Path

from emseg_lib.atomic import atomic_write_text, check_not_input, remove_stale_temporaries
from emseg_lib.cli.common import (
    add_data_arguments,
    check_workers,
    check_writable_location,
    environment_errors,
    load_volume,
    write_output,
)
from emseg_lib.data import EMVolume, split_slices
from emseg_lib.data.formats import describe
from emseg_lib.device import pick_device
from emseg_lib.errors import EmsegInputError, TrainingInterrupted
from emseg_lib.profiles import PROFILES, Profile, get_profile
from emseg_lib.train import BEST, HISTORY, LAST
from emseg_lib.train.runs import (
    LOCK_FILE,
    RUN_FILE,
    check_recorded_model,
    check_run_dir,
    run_lock,
)

SUMMARY = "summary.json"


def check_run_folder(args: argparse.Namespace) -> None:
    """Check ``--out`` before any data is read: not an input, a folder that is new, empty or
    an emseg run, writable, and not in use by another trainer.

    A run folder's network must be ``--model``; the rest of its identity (data, seed,
    profile, architecture) is checked when training starts
    (:func:`~emseg_lib.train.runs.training_run`), once the data are loaded.
    """
    out = args.out
    check_not_input(out, [p for p in (args.data, args.labels) if p is not None])
    check_run_dir(out)
    check_recorded_model(out, args.model)
    check_writable_location(out)
    if out.is_dir() and (out / LOCK_FILE).exists():
        with run_lock(out):  # refused at once, not after loading the data, if it is held
            pass
    for name in (LAST, BEST, HISTORY, RUN_FILE, SUMMARY):
        for stale in remove_stale_temporaries(out / name):
            print(f"removed {stale}, a partial file left by an interrupted earlier run")


#: the most ``--epochs`` (the thesis trained 300; more is a typo that would run for ever)
MAX_EPOCHS = 100_000
#: ``--seed`` takes what every random generator it seeds accepts (NumPy, torch): 0 .. 2**32-1
MAX_SEED = 2**32 - 1


def check_labelled_splits(volume: EMVolume, source: Path) -> None:
    """Raise unless the labels hold cells in the training and the validation split (the
    validation scores and the learned thresholds need labelled slices)."""
    if not volume.labels.any():
        raise EmsegInputError(f"{source}: the labels are all 0 (unlabelled); training needs "
                              "labelled cells")
    split = split_slices(volume.shape[0])
    for name in ("train", "val"):
        part = getattr(split, name)
        if not volume.labels[part].any():
            raise EmsegInputError(
                f"{source}: the {name} split (slices {part.start}..{part.stop - 1} of "
                f"{volume.shape[0]}) is all 0 (unlabelled); label cells in every split")


def _crop_misfit(kind: str, shape: tuple[int, ...], profile: Profile) -> str | None:
    """Which split of a ``shape`` volume the profile's ``kind`` crops do not fit in (the
    crops :func:`~emseg_lib.experiments.supervised.make_datasets` cuts), else None."""
    plan = getattr(profile, kind)
    split = split_slices(shape[0])
    for name in ("train", "val"):
        part = getattr(split, name)
        depth = part.stop - part.start
        crop = ((1, *plan.crop) if len(plan.crop) == 2 else
                (min(plan.crop[0], depth) if name == "val" else plan.crop[0], *plan.crop[1:]))
        if any(c > n for c, n in zip(crop, (depth, *shape[1:]), strict=True)):
            return (f"the {name} split (slices {part.start}..{part.stop - 1}, "
                    f"{(depth, *shape[1:])}) is smaller than the {kind} crops {crop}")
    return None


def check_crops_fit(args: argparse.Namespace, shape: tuple[int, ...]) -> None:
    """Raise unless the ``--profile``'s crops fit in the training and validation splits of a
    ``shape`` volume, naming the data, the profile and the profiles that would fit."""
    misfit = _crop_misfit(args.model, shape, get_profile(args.profile))
    if misfit is None:
        return
    fitting = [name for name, profile in sorted(PROFILES.items())
               if _crop_misfit(args.model, shape, profile) is None]
    advice = (f"pass --profile {' or '.join(fitting)}, whose crops fit, or" if fitting else
              "no profile's crops fit;")
    raise EmsegInputError(f"{args.data}: {misfit} of --profile {args.profile}; {advice} use a "
                          "larger stack")


def check_train_arguments(args: argparse.Namespace) -> None:
    """``--epochs``, ``--seed``, ``--workers`` and ``--device``, before any data is read."""
    if args.epochs is not None and args.epochs < 1:
        raise EmsegInputError(f"--epochs must be >= 1, got {args.epochs}")
    if args.epochs is not None and args.epochs > MAX_EPOCHS:
        raise EmsegInputError(f"--epochs must be <= {MAX_EPOCHS}, got {args.epochs}")
    if not 0 <= args.seed <= MAX_SEED:
        raise EmsegInputError(f"--seed must lie in 0..{MAX_SEED}, got {args.seed}")
    check_workers(args.workers)
    pick_device(args.device)


def run(args: argparse.Namespace) -> int:
    """Train (or resume) into ``args.out``; write ``summary.json``."""
    from emseg_lib.experiments.supervised import describe_postprocess, train_unet

    check_train_arguments(args)
    check_run_folder(args)
    volume = load_volume(args)
    if volume.labels is None:
        raise EmsegInputError(f"{args.data}: training needs labels; pass --labels PATH")
    check_labelled_splits(volume, args.labels or args.data)
    check_crops_fit(args, volume.shape)
    profile = get_profile(args.profile)
    if args.epochs is not None:
        plan = getattr(profile, args.model)
        profile = dataclasses.replace(profile, **{args.model: dataclasses.replace(
            plan, epochs=args.epochs)})
    started = time.perf_counter()
    with environment_errors(args.out, "training stopped (the checkpoints there hold the last "
                                      "finished epoch)"):
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
    summary_path = Path(args.out) / SUMMARY
    write_output(summary_path, lambda: atomic_write_text(summary_path,
                                                         json.dumps(summary, indent=2)))
    print(json.dumps(summary["final"], indent=2))
    print(f"post-processing thresholds learned on the validation split, stored in "
          f"{Path(args.out) / BEST}:\n{describe_postprocess(trained.postprocess)}")
    print(f"checkpoints and history in {args.out}")
    return 0


def interrupted(args: argparse.Namespace, err: KeyboardInterrupt) -> str:
    """The Ctrl-C line of ``train``: where it stopped, and that the same command resumes."""
    epoch = re.search(r"at epoch \d+", str(err)) if isinstance(err, TrainingInterrupted) \
        else None
    return (f"emseg: interrupted{' ' + epoch.group() if epoch else ''}; {args.out} keeps "
            "every finished epoch, run the same command again to resume")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``train``."""
    train = commands.add_parser("train", help="train a UNet on a labelled stack")
    train.add_argument("--model", choices=["unet2d", "unet3d"], required=True)
    add_data_arguments(train)
    train.add_argument("--out", type=Path, required=True,
                       help="run folder: new, empty, or a run to resume (same data, seed and "
                            "profile)")
    train.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    train.add_argument("--epochs", type=int, help="override the profile's epochs")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when present)")
    train.add_argument("--workers", type=int,
                       help="processes for the threshold search (default: every core)")
    train.set_defaults(run=run, interrupted=interrupted)
