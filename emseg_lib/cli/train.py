"""``emseg train``: train a UNet on a labelled stack, then learn its post-processing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emseg_lib.cli.common import (
    add_data_arguments,
    check_workers,
    check_writable_location,
    environment_errors,
    load_volume,
    write_output,
)
from emseg_lib.data import DEFAULT_VAL_SHARE, EMVolume, SliceSplit, labelled_split
from emseg_lib.data.formats import describe
from emseg_lib.data.splits import check_split_for_model, format_slices, parse_val_slices
from emseg_lib.data.targets import TARGETS
from emseg_lib.errors import EmsegInputError, TrainingInterrupted
from emseg_lib.infra.atomic_files import atomic_write_text
from emseg_lib.infra.device import pick_device
from emseg_lib.infra.output_checks import check_not_input
from emseg_lib.infra.temporaries import remove_stale_temporaries
from emseg_lib.models import trainable_entry, trainable_kinds
from emseg_lib.profiles import PROFILES, Profile, get_profile
from emseg_lib.scoring.evaluation import PROTOCOL_DESCRIPTIONS
from emseg_lib.train import BEST, HISTORY, LAST, TrainConfig
from emseg_lib.train.loop import selection_voi
from emseg_lib.train.losses import AFFINITY_LOSSES, DEFAULT_AFFINITY_LOSS
from emseg_lib.train.recipes import (
    DEFAULT_RECIPES,
    RECIPES,
    THESIS_RECIPE,
    TrainingRecipe,
    default_recipe,
    recorded_recipe,
)
from emseg_lib.train.runs import (
    LOCK_FILE,
    RUN_FILE,
    check_recorded_model,
    check_recorded_target,
    check_run_dir,
    recorded_model_spec,
    recorded_settings,
    run_lock,
)

SUMMARY = "summary.json"


def check_run_folder(args: argparse.Namespace
                     ) -> tuple[tuple[TrainingRecipe, str], dict[str, tuple[int, str]]]:
    """Check ``--out`` before any data is read: not an input, a folder that is new, empty or
    an emseg run, writable, and not in use by another trainer; return the recipe to train
    with and why (:func:`training_recipe`) and the UNet2D's sizes and why (flag name ->
    ``(value, why)``, :func:`training_size`; none for other networks), all of which the run
    in ``--out`` may decide.

    A run folder's network must be ``--model`` and predict ``--target``; the rest of its
    identity (data, seed, profile, architecture) is checked when training starts
    (:func:`~emseg_lib.train.runs.training_run`), once the data are loaded.
    """
    out = args.out
    check_not_input(out, [p for p in (args.data, args.labels) if p is not None])
    check_run_dir(out)
    check_recorded_model(out, args.model)
    check_recorded_target(out, args.target)
    recipe = training_recipe(args)
    sizes = ({size.flag: training_size(args, size) for size in UNET2D_SIZES}
             if args.model == "unet2d" else {})
    check_writable_location(out)
    if out.is_dir() and (out / LOCK_FILE).exists():
        with run_lock(out):  # refused at once, not after loading the data, if it is held
            pass
    for name in (LAST, BEST, HISTORY, RUN_FILE, SUMMARY):
        for stale in remove_stale_temporaries(out / name):
            print(f"removed {stale}, a partial file left by an interrupted earlier run")
    return recipe, sizes


def training_recipe(args: argparse.Namespace) -> tuple[TrainingRecipe, str]:
    """The recipe this command trains with, and a few words on why: ``--recipe``; else the
    recipe of the run in ``--out`` (resumed as it was trained; runs from before ``--recipe``
    used the thesis's); else :func:`~emseg_lib.train.recipes.default_recipe` of ``--model`` for
    a boundary network, the thesis's for an affinity network (whose loss is
    ``--affinity-loss``). Cheap: reads ``run.json`` alone.

    Raises:
        EmsegInputError: ``--recipe`` names another recipe than the run in ``--out`` was
            trained with.
    """
    recorded = recorded_recipe_of(args.out) if args.target == "boundaries" else None
    if args.recipe is not None:
        if recorded not in (None, args.recipe):
            raise EmsegInputError(
                f"{args.out}: this run was trained with --recipe {recorded} "
                f"({RECIPES[recorded].summary}), not {args.recipe}; leave --recipe out or pass "
                f"--recipe {recorded} to resume it, or use another output folder (--out)")
        return RECIPES[args.recipe], "--recipe"
    if recorded is not None:
        return RECIPES[recorded], f"as the run in {args.out} was trained"
    if args.target != "boundaries":
        return RECIPES[THESIS_RECIPE], "an affinity network's"
    default = default_recipe(args.model)
    if default == THESIS_RECIPE:
        return RECIPES[default], (
            f"emseg train's default for {args.model}: the other recipes were measured for "
            f"{', '.join(DEFAULT_RECIPES)} only")
    return RECIPES[default], (
        f"emseg train's default for {args.model}, better than the thesis's per CPU-minute on "
        "three real stacks, each left out in turn (UNet2D, quick profile, about 2.5 "
        f"CPU-minutes); --recipe {THESIS_RECIPE} trains as the thesis did")


def recorded_recipe_of(run_dir: Path) -> str | None:
    """The recipe of the boundary-network run recorded in ``run_dir`` (None: no run, an
    affinity run, or settings no recipe matches)."""
    settings = recorded_settings(run_dir)
    if settings is None or settings.get("target", "boundaries") != "boundaries":
        return None
    return recorded_recipe(settings)


@dataclass(frozen=True)
class UNet2DSize:
    """A UNet2D size ``emseg train`` takes from the command line (``--width``, ``--depth``).

    Attributes:
        flag: the option's name without dashes.
        key: its name in the network's config (``run.json``'s ``model_spec``).
        field: the :class:`~emseg_lib.profiles.Profile` field that holds its default.
        limits: the values accepted, ``(lowest, highest)``.
        unit: what the value counts, for the line saying which was used.
        measured: why the profile's value is the default (``benchmarks/train_sizes.py``).
    """

    flag: str
    key: str
    field: str
    limits: tuple[int, int]
    unit: str
    measured: str


def training_size(args: argparse.Namespace, size: UNet2DSize) -> tuple[int, str]:
    """A UNet2D's ``size`` and a few words on why: its flag; else the value of the run in
    ``--out`` (resumed as it was built); else ``--profile``'s (:attr:`UNet2DSize.measured`).
    Cheap: reads ``run.json`` alone.

    Raises:
        EmsegInputError: the flag differs from the value of the run in ``--out``.
    """
    given = getattr(args, size.flag)
    recorded = recorded_size_of(args.out, size.key)
    if given is not None:
        if recorded not in (None, given):
            raise EmsegInputError(
                f"{args.out}: this run's UNet2D has --{size.flag} {recorded}, not {given}; "
                f"leave --{size.flag} out or pass --{size.flag} {recorded} to resume it, or "
                "use another output folder (--out)")
        return given, f"--{size.flag}"
    if recorded is not None:
        return recorded, f"as the run in {args.out} was built"
    profile = get_profile(args.profile)
    return getattr(profile, size.field), f"the {profile.name} profile's; {size.measured}"


def recorded_size_of(run_dir: Path, key: str) -> int | None:
    """The value of ``key`` (``base_width``, ``depth``) in the config of the UNet2D recorded in
    ``run_dir``'s ``run.json`` (None: no run)."""
    spec = recorded_model_spec(run_dir)
    config = spec.get("config") if spec is not None else None
    value = config.get(key) if isinstance(config, dict) else None
    return value if isinstance(value, int) else None


#: the most ``--epochs`` (the thesis trained 300; more is a typo that would run for ever)
MAX_EPOCHS = 100_000
#: ``--seed`` takes what every random generator it seeds accepts (NumPy, torch): 0 .. 2**32-1
MAX_SEED = 2**32 - 1
#: why ``emseg train`` keeps the profile's UNet2D width (``benchmarks/train_sizes.py``)
PROFILE_WIDTH_MEASURED = ("on the quick profile, half and twice its width learned less in the "
                          "same CPU time on three real stacks")
#: why ``emseg train`` keeps the profile's UNet2D depth for now (``benchmarks/train_sizes.py``)
PROFILE_DEPTH_MEASURED = ("the thesis's number of levels; on the quick profile 4 learned more "
                          "in the same CPU time on two of three real stacks and as much on the "
                          "third: pass --depth 4")
#: the widest ``--width`` (the thesis's UNet2D has 64; 16 times that is a typo)
MAX_WIDTH = 1024
#: the deepest ``--depth`` (the thesis's UNet2D has 5 levels; its crops cap it lower)
MAX_DEPTH = 10
#: the UNet2D sizes ``emseg train`` takes: ``--width`` and ``--depth``
UNET2D_SIZES = (
    UNet2DSize("width", "base_width", "unet2d_width", (1, MAX_WIDTH),
               "channels in the first level", PROFILE_WIDTH_MEASURED),
    UNet2DSize("depth", "depth", "unet2d_depth", (2, MAX_DEPTH), "levels",
               PROFILE_DEPTH_MEASURED),
)
#: the longest ``--minutes`` (a year; more is a typo)
MAX_MINUTES = 60 * 24 * 365


def split_labelled_slices(volume: EMVolume, source: Path, val_slices: str | None) -> SliceSplit:
    """Every labelled slice for training or validation (``--val-slices``; default the last
    20 %): :func:`~emseg_lib.data.labelled_split`, its refusals naming ``source``."""
    if not volume.labels.any():
        raise EmsegInputError(f"{source}: the labels are all 0 (unlabelled); training needs "
                              "labelled cells")
    spec = None if val_slices is None else parse_val_slices(val_slices)
    try:
        return labelled_split(volume.labels, spec)
    except EmsegInputError as err:
        raise EmsegInputError(f"{source}: {err}") from None


def _crop_misfit(kind: str, shape: tuple[int, ...], z_split: SliceSplit, profile: Profile
                 ) -> str | None:
    """Which part of ``z_split`` of a ``shape`` volume the profile's ``kind`` crops do not
    fit in (the crops :func:`~emseg_lib.experiments.supervised.make_datasets` cuts), else
    None."""
    plan = trainable_entry(kind).schedule(profile)
    for name in ("train", "val"):
        slices = getattr(z_split, name)
        depth = len(slices)
        crop = ((1, *plan.crop) if len(plan.crop) == 2 else
                (min(plan.crop[0], depth) if name == "val" else plan.crop[0], *plan.crop[1:]))
        if any(c > n for c, n in zip(crop, (depth, *shape[1:]), strict=True)):
            return (f"the {name} split (slices {format_slices(slices)}, "
                    f"{(depth, *shape[1:])}) is smaller than the {kind} crops {crop}")
    return None


def check_crops_fit(args: argparse.Namespace, shape: tuple[int, ...], z_split: SliceSplit
                    ) -> None:
    """Raise unless the ``--profile``'s crops fit in the training and validation parts of
    ``z_split`` of a ``shape`` volume, naming the data, the profile and the profiles that
    would fit."""
    check_split_for_model(trainable_entry(args.model).dims, z_split)
    misfit = _crop_misfit(args.model, shape, z_split, get_profile(args.profile))
    if misfit is None:
        return
    fitting = [name for name, profile in sorted(PROFILES.items())
               if _crop_misfit(args.model, shape, z_split, profile) is None]
    advice = (f"pass --profile {' or '.join(fitting)}, whose crops fit, or" if fitting else
              "no profile's crops fit;")
    raise EmsegInputError(f"{args.data}: {misfit} of --profile {args.profile}; {advice} use a "
                          "larger stack")


def check_depth_fits_crops(depth: int, profile: Profile) -> None:
    """Raise unless a UNet2D of ``depth`` levels takes ``profile``'s training crops: each
    side a multiple of ``2**(depth - 1)`` (it halves them ``depth - 1`` times)."""
    crop = trainable_entry("unet2d").schedule(profile).crop
    if all(side % 2 ** (depth - 1) == 0 for side in crop):
        return
    deepest = max(d for d in range(2, MAX_DEPTH + 1)
                  if all(side % 2 ** (d - 1) == 0 for side in crop))
    raise EmsegInputError(f"--depth {depth}: the {profile.name} profile's crops of "
                          f"{' x '.join(map(str, crop))} pixels are not multiples of "
                          f"2**{depth - 1} = {2 ** (depth - 1)}; pass --depth {deepest} or less")


def check_train_arguments(args: argparse.Namespace) -> None:
    """``--epochs``, ``--minutes``, ``--val-slices``, ``--seed``, ``--workers`` and
    ``--device`` (and ``--affinity-loss`` only for affinities), before any data is read."""
    if args.epochs is not None and args.epochs < 1:
        raise EmsegInputError(f"--epochs must be >= 1, got {args.epochs}")
    if args.epochs is not None and args.epochs > MAX_EPOCHS:
        raise EmsegInputError(f"--epochs must be <= {MAX_EPOCHS}, got {args.epochs}")
    if args.minutes is not None and not 0 < args.minutes <= MAX_MINUTES:
        raise EmsegInputError(f"--minutes must be > 0 and <= {MAX_MINUTES} (a year), got "
                              f"{args.minutes:g}")
    if args.val_slices is not None:
        parse_val_slices(args.val_slices)
    if not 0 <= args.seed <= MAX_SEED:
        raise EmsegInputError(f"--seed must lie in 0..{MAX_SEED}, got {args.seed}")
    if args.affinity_loss is not None and args.target != "affinities":
        raise EmsegInputError(f"--affinity-loss {args.affinity_loss}: only with --target "
                              "affinities (a boundary network's loss is its --recipe's)")
    for size in UNET2D_SIZES:
        value = getattr(args, size.flag)
        if value is not None and args.model != "unet2d":
            raise EmsegInputError(f"--{size.flag} {value}: only with --model unet2d (a "
                                  f"{args.model}'s {size.unit} are the profile's)")
        if value is not None and not size.limits[0] <= value <= size.limits[1]:
            raise EmsegInputError(f"--{size.flag} must lie in {size.limits[0]}.."
                                  f"{size.limits[1]}, got {value}")
    if args.depth is not None:
        check_depth_fits_crops(args.depth, get_profile(args.profile))
    if args.recipe is not None and args.target != "boundaries":
        raise EmsegInputError(f"--recipe {args.recipe}: only with --target boundaries (an "
                              "affinity network trains with the thesis's optimiser and "
                              "--affinity-loss)")
    check_workers(args.workers)
    pick_device(args.device)


def run(args: argparse.Namespace) -> int:
    """Train (or resume) into ``args.out``; write ``summary.json``."""
    from emseg_lib.experiments.supervised import describe_postprocess, train_unet

    check_train_arguments(args)
    (recipe, why), sizes = check_run_folder(args)
    volume = load_volume(args)
    if volume.labels is None:
        raise EmsegInputError(f"{args.data}: training needs labels; pass --labels PATH")
    z_split = split_labelled_slices(volume, args.labels or args.data, args.val_slices)
    check_crops_fit(args, volume.shape, z_split)
    print(z_split.describe())
    if args.target == "boundaries":
        print(f"recipe: {recipe.name} ({recipe.summary}; {why})")
    profile = get_profile(args.profile)
    for size in UNET2D_SIZES:
        if size.flag in sizes:
            value, size_why = sizes[size.flag]
            print(f"{size.flag}: {value} {size.unit} ({size_why})")
            profile = dataclasses.replace(profile, **{size.field: value})
    entry = trainable_entry(args.model)
    plan = entry.schedule(profile)
    # --minutes alone: no epoch limit but the budget; with --epochs, whichever comes first
    epochs = args.epochs if args.epochs is not None else (
        None if args.minutes is not None else plan.epochs)
    profile = entry.with_schedule(profile, dataclasses.replace(plan, epochs=epochs))
    started = time.perf_counter()
    with environment_errors(args.out, "training stopped (the checkpoints there hold the last "
                                      "finished epoch)"):
        trained = train_unet(args.model, volume, profile, args.out, seed=args.seed,
                             device=args.device, workers=args.workers, z_split=z_split,
                             minutes=args.minutes, tensorboard=args.tensorboard,
                             target=args.target,
                             affinity_loss=args.affinity_loss or DEFAULT_AFFINITY_LOSS,
                             recipe=recipe.name)
    history = trained.history
    stopped_by = ("time budget" if args.minutes is not None
                  and (epochs is None or len(history) < epochs) else "epochs")
    summary = {
        "model": args.model, "profile": args.profile,
        # an affinity network's loss is --affinity-loss; it has no recipe
        **({"recipe": recipe.name} if args.target == "boundaries" else
           {"recipe": None, "affinity_loss": args.affinity_loss or DEFAULT_AFFINITY_LOSS}),
        "epochs": int(len(history)),
        **{flag: value for flag, (value, _) in sizes.items()},
        "parameters": int(sum(p.numel() for p in trained.model.parameters())),
        "data": describe(volume), "seconds": round(time.perf_counter() - started, 1),
        "split": {**z_split.identity(), "unlabelled": format_slices(z_split.unlabelled),
                  "validation_rule": z_split.rule},
        "budget": {"minutes": args.minutes, "epochs": epochs, "stopped_by": stopped_by,
                   "note": "--minutes counts from the start of each run of the command: a "
                           "resumed run gets the budget afresh"},
        "final": final_scores(history.iloc[-1], args.target),
        "best": final_scores(history.loc[history.apply(selection_voi, axis=1).idxmin()],
                             args.target),
        "postprocess": trained.postprocess,
        "checkpoints": {"last": str(Path(args.out) / LAST), "best": str(Path(args.out) / BEST)},
    }
    summary_path = Path(args.out) / SUMMARY
    write_output(summary_path, lambda: atomic_write_text(summary_path,
                                                         json.dumps(summary, indent=2)))
    print(describe_final(summary["final"], "last epoch"))
    print(describe_final(summary["best"], "best.pt"))
    print(f"post-processing thresholds learned on the validation split (slices "
          f"{format_slices(z_split.val)}), stored in "
          f"{Path(args.out) / BEST}:\n{describe_postprocess(trained.postprocess)}")
    print(f"checkpoints and history in {args.out}")
    return 0


#: how the per-epoch validation scores are made (the progress bar, ``summary.json``), by target
VALIDATION = {
    "boundaries": f"{PROTOCOL_DESCRIPTIONS['cremi']}; the thesis watershed at its untuned "
                  f"{TrainConfig.sig_th:g} / {TrainConfig.edge_th:g}, boundaries flooded, on the "
                  "validation crops; the learned thresholds are scored on whole validation "
                  "slices",
    "affinities": f"{PROTOCOL_DESCRIPTIONS['cremi']}; each validation crop's affinities "
                  "agglomerated with waterz at its default threshold; the learned thresholds "
                  "are scored on the whole validation split"}


def final_scores(row: Any, target: str = "boundaries") -> dict[str, Any]:
    """An epoch's ``summary.json`` entry: its losses and its validation scores under the
    CREMI protocol, the one ``best.pt`` is chosen by (``history.csv``'s ``val_voi`` and
    ``val_arand`` are the thesis protocol's, for the thesis's figures; an affinity network
    has none)."""
    return {"epoch": int(row["epoch"]), "train_loss": float(row["train_loss"]),
            "val_loss": float(row["val_loss"]), "val_acc": float(row["val_acc"]),
            "protocol": "cremi", "protocol_definition": VALIDATION[target],
            "val_cremi_voi": float(selection_voi(row)),
            "val_cremi_voi_split": float(row["val_cremi_voi_split"]),
            "val_cremi_voi_merge": float(row["val_cremi_voi_merge"]),
            "val_cremi_arand": float(row["val_cremi_arand"]),
            "val_cremi_score": float(row["val_cremi_score"])}


def describe_final(entry: dict[str, Any], name: str) -> str:
    """One line of an epoch's scores, its validation figure named with its protocol."""
    return (f"{name}: epoch {entry['epoch']}, train loss {entry['train_loss']:.4f}, validation "
            f"loss {entry['val_loss']:.4f}, accuracy {entry['val_acc']:.3f}, VOI "
            f"{entry['val_cremi_voi']:.4f} (split {entry['val_cremi_voi_split']:.4f}, merge "
            f"{entry['val_cremi_voi_merge']:.4f}), ARAND {entry['val_cremi_arand']:.4f} "
            f"(CREMI protocol, thesis watershed at {TrainConfig.sig_th:g} / "
            f"{TrainConfig.edge_th:g} on the validation crops)")


def interrupted(args: argparse.Namespace, err: KeyboardInterrupt) -> str:
    """The Ctrl-C line of ``train``: where it stopped, and that the same command resumes."""
    epoch = re.search(r"at epoch \d+", str(err)) if isinstance(err, TrainingInterrupted) \
        else None
    return (f"emseg: interrupted{' ' + epoch.group() if epoch else ''}; {args.out} keeps "
            "every finished epoch, run the same command again to resume")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``train``."""
    train = commands.add_parser("train", help="train a UNet on a labelled stack")
    train.add_argument("--model", choices=trainable_kinds(), required=True,
                       help="the network (the trainable entries of emseg_lib.models.MODELS)")
    train.add_argument("--target", choices=TARGETS, default="boundaries",
                       help="what the network predicts: boundaries (one cell-probability "
                            "channel, the thesis's; default) or affinities (nearest-neighbour "
                            "affinities, z, y, x for unet3d, y, x for unet2d; emseg segment "
                            "agglomerates them with waterz or the mutex watershed)")
    train.add_argument("--affinity-loss", choices=AFFINITY_LOSSES, default=None,
                       help="with --target affinities: dice (default; the soft Dice loss "
                            "torch-em uses, on the edges that cross a boundary; measured "
                            "better on FIB-SEM) or balanced_bce (class-balanced cross-entropy "
                            "as Lee et al. 2017)")
    train.add_argument("--recipe", choices=RECIPES, default=None,
                       help="with --target boundaries, how the network is trained: "
                            + "; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values())
                            + ". Default: "
                            + ", ".join(f"{r} for {m}" for m, r in DEFAULT_RECIPES.items())
                            + " (better than the thesis's per CPU-minute on three real stacks, "
                            "each left out in turn: UNet2D, quick profile, about 2.5 "
                            f"CPU-minutes), {THESIS_RECIPE} for any other network (not "
                            "measured); a run in --out resumes with its own recipe. The "
                            "notebooks train as the thesis did")
    train.add_argument("--width", type=int, metavar="W",
                       help="unet2d only: channels of its first level (each level doubles "
                            f"them). Default: the profile's ({PROFILE_WIDTH_MEASURED}); a "
                            "run in --out resumes with its own width")
    train.add_argument("--depth", type=int, metavar="D",
                       help="unet2d only: its number of levels (each below the first "
                            "halves the image; the profile's crops must be multiples of "
                            f"2**(D-1)). Default: the profile's ({PROFILE_DEPTH_MEASURED}); a "
                            "run in --out resumes with its own depth")
    add_data_arguments(train)
    train.add_argument("--out", type=Path, required=True,
                       help="run folder: new, empty, or a run to resume (same network, "
                            "width, depth, target, data, seed, profile, split and recipe)")
    train.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    train.add_argument("--epochs", type=int,
                       help="override the profile's epochs (with --minutes: whichever comes "
                            "first)")
    train.add_argument("--minutes", type=float, metavar="M",
                       help="time budget: stop after the epoch during which it runs out "
                            "(never within one; checkpoints hold it). Alone, no epoch limit; "
                            "with --epochs, whichever comes first. Counts from each start: a "
                            "resumed run gets it afresh. Learning the thresholds follows")
    train.add_argument("--val-slices", metavar="SPEC",
                       help="which labelled slices validate; every other labelled slice "
                            "trains (no test split; unlabelled slices, all 0, serve neither): "
                            "a count (4: the last 4 labelled slices), a fraction (0.2 or "
                            "20%%: that share, the last ones, rounded, at least 1) or z "
                            "indices (3,7,11 or 16-19; one slice 12-12). Default: "
                            f"{DEFAULT_VAL_SHARE:g}. A 3D network needs consecutive slices "
                            "for each")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when present)")
    train.add_argument("--workers", type=int,
                       help="processes for the threshold search (default: every core)")
    train.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                       help="write no TensorBoard event files (default: OUT/tensorboard, "
                            "watch with: tensorboard --logdir OUT)")
    train.set_defaults(run=run, interrupted=interrupted)
