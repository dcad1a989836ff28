"""Splits along z: the thesis's train / validation / test (4.1: slices 0-99, 100-104, 105-124)
for the notebooks, and ``emseg train``'s split of a user's labelled slices into training and
validation (``--val-slices``), both as a :class:`SliceSplit` for the supervised driver."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emseg_lib.data.cremi import EMVolume
from emseg_lib.errors import EmsegInputError

THESIS_SPLIT = (100, 5, 20)


@dataclass(frozen=True)
class ZSplit:
    """Slice ranges of the three splits along z."""

    train: slice
    val: slice
    test: slice

    def apply(self, volume: EMVolume) -> dict[str, EMVolume]:
        """``{"train": ..., "val": ..., "test": ...}`` sub-volumes (views)."""
        return {name: volume.subvolume(getattr(self, name)) for name in ("train", "val", "test")}


def split_slices(n_slices: int, proportions: tuple[int, int, int] = THESIS_SPLIT,
                 min_slices: tuple[int, int, int] = (1, 1, 1)) -> ZSplit:
    """Split ``n_slices`` consecutive slices into train / val / test.

    With 125 slices and the thesis proportions this is exactly 100 / 5 / 20; smaller stacks are
    scaled proportionally (validation and test rounded, at least ``min_slices`` each, train
    takes the rest). For 32 slices: 26 / 1 / 5.

    Raises:
        EmsegInputError: when the stack is too short to give every split its minimum.
    """
    if n_slices < sum(min_slices):
        raise EmsegInputError(
            f"a stack of {n_slices} slices cannot be split into train/val/test with at least "
            f"{min_slices} slices each"
        )
    total = sum(proportions)
    val = max(min_slices[1], round(n_slices * proportions[1] / total))
    test = max(min_slices[2], round(n_slices * proportions[2] / total))
    train = n_slices - val - test
    if train < min_slices[0]:
        raise EmsegInputError(
            f"a stack of {n_slices} slices leaves {train} training slices after {val} "
            f"validation and {test} test slices; at least {min_slices[0]} are needed"
        )
    return ZSplit(slice(0, train), slice(train, train + val), slice(train + val, n_slices))


# -- splits of a user's labelled slices (``emseg train``) --------------------------------------

#: ``emseg train``'s validation share of the labelled slices when ``--val-slices`` is not given
DEFAULT_VAL_SHARE = 0.2

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def format_slices(indices: Sequence[int]) -> str:
    """``0-15, 17, 19-20``: sorted z indices as inclusive ranges ("none" when empty)."""
    runs: list[list[int]] = []
    for z in sorted(indices):
        if runs and z == runs[-1][1] + 1:
            runs[-1][1] = z
        else:
            runs.append([z, z])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs) or "none"


def is_contiguous(indices: Sequence[int]) -> bool:
    """True when ``indices`` are consecutive slices (an empty tuple is)."""
    return not indices or list(indices) == list(range(indices[0], indices[0] + len(indices)))


@dataclass(frozen=True)
class ValSlices:
    """Which labelled slices validate (``--val-slices``), before the labels are known.

    Attributes:
        kind: ``"count"`` (the last ``value`` labelled slices), ``"fraction"`` (that share of
            the labelled slices, the last ones, rounded, at least 1) or ``"indices"`` (these
            z indices).
        value: the count, the fraction in (0, 1), or the sorted z indices.
        text: as given (for messages).
    """

    kind: str
    value: int | float | tuple[int, ...]
    text: str

    def rule(self, default: bool = False) -> str:
        """How the validation slices were chosen, for the split line."""
        if self.kind == "indices":
            return f"--val-slices {self.text}"
        what = (("the last labelled slice" if self.value == 1 else
                 f"the last {self.value} labelled slices") if self.kind == "count" else
                f"the last {100 * self.value:g} % of the labelled slices")
        return f"{what}, {'the default' if default else f'--val-slices {self.text}'}"


DEFAULT_VAL_SLICES = ValSlices("fraction", DEFAULT_VAL_SHARE, f"{DEFAULT_VAL_SHARE:g}")


def parse_val_slices(text: str) -> ValSlices:
    """Parse ``--val-slices``: a count (``4``: the last 4 labelled slices), a fraction
    (``0.2`` or ``20%``: that share of the labelled slices, the last ones) or z indices and
    inclusive ranges (``3,7,11``, ``16-19``; one slice as ``12-12``).

    Raises:
        EmsegInputError: anything else (the message says what is accepted).
    """
    spec = text.strip().replace(" ", "")
    unreadable = EmsegInputError(
        "--val-slices takes a count (4: the last 4 labelled slices), a fraction (0.2 or 20%: "
        f"that share of the labelled slices) or z indices (3,7,11 or 16-19); got {text!r}")
    if spec.endswith("%") or "." in spec:
        try:
            share = float(spec[:-1]) / 100 if spec.endswith("%") else float(spec)
        except ValueError:
            raise unreadable from None
        if not 0 < share < 1:
            raise EmsegInputError(f"--val-slices: a fraction must lie strictly between 0 and 1 "
                                  f"(0 % and 100 %), got {text!r}")
        return ValSlices("fraction", share, text)
    if spec.isdigit():
        if int(spec) < 1:
            raise EmsegInputError(f"--val-slices must name at least 1 validation slice, got "
                                  f"{text!r}")
        return ValSlices("count", int(spec), text)
    indices: set[int] = set()
    for part in spec.split(","):
        match = _RANGE.match(part)
        if match is None:
            raise unreadable
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise EmsegInputError(f"--val-slices: the range {part} runs backwards; write "
                                  f"{last}-{first}")
        indices.update(range(first, last + 1))
    return ValSlices("indices", tuple(sorted(indices)), text)


@dataclass(frozen=True)
class SliceSplit:
    """Which z slices train, validate and test; any slices, not only consecutive ones.

    The thesis's split (:func:`thesis_split`) has all three; ``emseg train``'s
    (:func:`labelled_split`) uses every labelled slice for training or validation, has no
    test slices, and names the unlabelled slices (all 0), which serve neither.

    Attributes:
        train, val, test: sorted z indices.
        unlabelled: slices left out because their labels are all 0.
        rule: how the validation slices were chosen (for :meth:`describe`).
    """

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...] = ()
    unlabelled: tuple[int, ...] = ()
    rule: str = ""

    def part(self, volume: EMVolume, name: str) -> EMVolume:
        """The slices of one part (``"train"``, ``"val"`` or ``"test"``) of ``volume``: a
        view when they are consecutive, else a copy."""
        if name not in ("train", "val", "test"):
            raise EmsegInputError(f"a split part is 'train', 'val' or 'test', got {name!r}")
        indices = getattr(self, name)
        if not indices:
            raise EmsegInputError(f"this split has no {name} slices")
        if is_contiguous(indices):
            return volume.subvolume(slice(indices[0], indices[-1] + 1))
        index = np.asarray(indices)
        labels = None if volume.labels is None else volume.labels[index]
        return dataclasses.replace(volume, raw=volume.raw[index], labels=labels)

    def apply(self, volume: EMVolume) -> dict[str, EMVolume]:
        """``{"train": ..., "val": ..., "test": ...}`` sub-volumes of the parts that have
        slices (:meth:`part`)."""
        return {name: self.part(volume, name) for name in ("train", "val", "test")
                if getattr(self, name)}

    def identity(self) -> dict[str, str]:
        """The split as JSON values for a run's identity, e.g. ``{"train": "0-15", "val":
        "16-19"}``."""
        return {name: format_slices(getattr(self, name)) for name in ("train", "val", "test")
                if getattr(self, name)}

    def describe(self) -> str:
        """One line: which slices went where, e.g. ``split: train slices 0-15 (16),
        validation 16-19 (4: ...); every labelled slice is used``."""
        parts = [f"train slices {format_slices(self.train)} ({len(self.train)})",
                 f"validation {format_slices(self.val)} ({len(self.val)}"
                 + (f": {self.rule})" if self.rule else ")")]
        if self.test:
            parts.append(f"test {format_slices(self.test)} ({len(self.test)})")
        line = "split: " + ", ".join(parts)
        if not self.test:
            line += "; every labelled slice is used"
        if len(self.unlabelled) == 1:
            line += f"; slice {self.unlabelled[0]} is unlabelled (all 0) and serves neither"
        elif self.unlabelled:
            line += (f"; slices {format_slices(self.unlabelled)} ({len(self.unlabelled)}) are "
                     "unlabelled (all 0) and serve neither")
        if len(self.val) == 1 and not self.test:
            line += ("; one validation slice: best.pt and the learned thresholds rest on it "
                     "alone (label more slices, or choose with --val-slices)")
        return line


def thesis_split(n_slices: int) -> SliceSplit:
    """The thesis's train / validation / test split (:func:`split_slices`) as a
    :class:`SliceSplit`: what the notebooks use."""
    split = split_slices(n_slices)
    return SliceSplit(*(tuple(range(n_slices)[getattr(split, name)])
                        for name in ("train", "val", "test")),
                      rule="the thesis's proportions 100 / 5 / 20")


def labelled_slices(labels: np.ndarray) -> tuple[int, ...]:
    """The z indices of the slices of ``labels`` ``(Z, Y, X)`` with any non-zero label."""
    return tuple(int(z) for z in np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1)))


def labelled_split(labels: np.ndarray, val_slices: ValSlices | None = None) -> SliceSplit:
    """Every labelled slice of ``labels`` ``(Z, Y, X)`` for training or validation.

    Validation takes the slices ``val_slices`` names (default :data:`DEFAULT_VAL_SLICES`:
    the last 20 % of the labelled slices, at least 1); training takes every other labelled
    slice; slices whose labels are all 0 serve neither. There is no test split.

    Raises:
        EmsegInputError: fewer than 2 labelled slices; a count or share that leaves no
            training slice; z indices outside the stack, unlabelled, or covering every
            labelled slice.
    """
    spec = val_slices or DEFAULT_VAL_SLICES
    labelled = labelled_slices(labels)
    n = len(labelled)
    unlabelled = tuple(sorted(set(range(len(labels))) - set(labelled)))
    if n < 2:
        where = f" (slice {labelled[0]})" if labelled else ""
        raise EmsegInputError(f"{n} labelled slice{where} of {len(labels)}; training needs at "
                              "least 2 labelled slices (one to train on, one to validate)")
    if spec.kind == "indices":
        val = tuple(spec.value)  # type: ignore[arg-type]
        outside = [z for z in val if z >= len(labels)]
        if outside:
            raise EmsegInputError(f"--val-slices {spec.text}: slice {outside[0]} is outside the "
                                  f"stack (slices 0-{len(labels) - 1})")
        empty = [z for z in val if z not in set(labelled)]
        if empty:
            raise EmsegInputError(f"--val-slices {spec.text}: slice{'s' * (len(empty) > 1)} "
                                  f"{format_slices(empty)} {'are' if len(empty) > 1 else 'is'} "
                                  "unlabelled (all 0); validation needs labelled slices")
        rule = spec.rule()
    else:
        if spec.kind == "count":
            count = int(spec.value)  # type: ignore[arg-type]
        else:
            count = max(1, math.floor(n * float(spec.value) + 0.5))  # type: ignore[arg-type]
        val = labelled[n - count:] if count < n else labelled
        rule = spec.rule(default=val_slices is None)
        if spec.kind == "fraction" and n * float(spec.value) < 0.5:  # type: ignore[arg-type]
            rule += f"; {100 * float(spec.value):g} % of {n} is under 1, so 1"
    train = tuple(z for z in labelled if z not in set(val))
    if not train:
        raise EmsegInputError(f"--val-slices {spec.text} would validate on all {n} labelled "
                              "slices; leave at least 1 for training")
    return SliceSplit(train, val, (), unlabelled, rule)


def check_split_for_model(dims: int, z_split: SliceSplit) -> None:
    """Raise unless a network of ``dims`` dimensions can train on ``z_split``: a 3D network's
    training and validation slices must each be consecutive (its crops span z).

    Raises:
        EmsegInputError: naming the non-consecutive slices and how to choose others.
    """
    if dims != 3:
        return
    for name, label in (("train", "training"), ("val", "validation")):
        indices = getattr(z_split, name)
        if not is_contiguous(indices):
            raise EmsegInputError(
                f"a 3D network needs its {label} slices consecutive (its crops span z), "
                f"got slices {format_slices(indices)}; choose validation slices at one end "
                "of the labelled block (--val-slices as a count, a fraction or one range)")
