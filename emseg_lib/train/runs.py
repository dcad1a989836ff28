"""Run folders: one trainer at a time, one identity per folder, history written safely.

A run folder belongs to one run: ``run.json`` records its *identity* (data fingerprint,
seed, profile, architecture, training settings) and every checkpoint carries the same
identity. A trainer that would resume a folder with another identity is refused, as is a
folder that already holds other files. ``train.lock`` holds the PID of the trainer using
the folder (an exclusive ``flock``, released by the operating system even when the process
is killed, so a lock left by a dead process is simply taken over).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd

from emseg_lib import __version__
from emseg_lib.errors import EmsegInputError, one_line
from emseg_lib.infra.atomic_files import atomic_path, atomic_write_text
from emseg_lib.infra.locks import held_lock
from emseg_lib.train.checkpoint import HISTORY, LAST, load_checkpoint

RUN_FILE = "run.json"
LOCK_FILE = "train.lock"
#: identity entries recorded by later versions: a run folder written before them resumes
RECORDED_LATER = frozenset({"data.resolution"})
#: what a difference in each top-level identity entry means, for messages
_MEANING = {"model_spec.name": "another model kind", "data": "different data",
            "seed": "a different seed",
            "profile": "a different profile", "plan": "a different profile",
            "model_spec": "a different architecture", "modules": "a different architecture",
            "config": "different training settings",
            "split": "another split of the labelled slices"}


def normalise_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """``identity`` as it reads back from JSON (tuples become lists), so it compares equal."""
    try:
        return json.loads(json.dumps(identity))
    except (TypeError, ValueError) as err:
        raise EmsegInputError(f"run_identity must hold JSON values only: {err}") from err


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 20 else text[:13] + "..."


def check_identity(run_dir: Path, source: str, stored: Any, identity: dict[str, Any]) -> None:
    """Raise unless the identity ``stored`` in ``source`` (a file of ``run_dir``) is ``identity``.

    The message says what differs (e.g. ``seed was 0, now 1``) and what to do.
    """
    if stored == identity:
        return
    old = dict(_flatten(stored if isinstance(stored, dict) else {}))
    new = dict(_flatten(identity))
    keys = [key for key in dict.fromkeys([*old, *new]) if old.get(key) != new.get(key)
            and not (key in RECORDED_LATER and key not in old)]
    if not keys:
        return
    keys.sort(key=lambda key: key != "model_spec.name")  # another network explains the rest
    top = keys[0].split(".")[0]
    meaning = _MEANING.get(keys[0], _MEANING.get(top, f"a different {top}"))
    details = "; ".join(f"{key} was {_short(old.get(key))}, now {_short(new.get(key))}"
                        for key in keys[:3])
    more = f"; {len(keys) - 3} more" if len(keys) > 3 else ""
    raise EmsegInputError(
        f"{run_dir}: this run folder ({source}) was trained with {meaning} ({details}{more}); "
        f"use another output folder (--out) or delete {run_dir} to start over"
    )


def recorded_identity(run_dir: str | Path) -> Any:
    """The identity recorded in ``run_dir``'s ``run.json``, None when there is none.

    Raises:
        EmsegInputError: the record cannot be read.
    """
    run_dir = Path(run_dir)
    record = run_dir / RUN_FILE
    return _recorded_identity(record, run_dir) if record.is_file() else None


def recorded_model_spec(run_dir: str | Path) -> dict[str, Any] | None:
    """The network recorded in ``run_dir``'s ``run.json`` (its identity's ``model_spec``:
    ``name`` and constructor ``config``), None when there is none."""
    stored = recorded_identity(run_dir)
    spec = stored.get("model_spec") if isinstance(stored, dict) else None
    return spec if isinstance(spec, dict) else None


def check_recorded_model(run_dir: str | Path, name: str) -> None:
    """Raise when the ``run.json`` of ``run_dir`` records a network other than ``name`` (a
    :data:`~emseg_lib.models.MODELS` name), as :func:`check_identity` would once training
    starts; cheap, so that callers can check before any data is read."""
    spec = recorded_model_spec(run_dir)
    recorded = spec.get("name") if spec is not None else None
    if recorded is not None:
        check_identity(run_dir, RUN_FILE, {"model_spec": {"name": recorded}},
                       {"model_spec": {"name": name}})


def recorded_settings(run_dir: str | Path) -> dict[str, Any] | None:
    """The training settings recorded in ``run_dir``'s ``run.json`` (its identity's
    ``config``), None when there are none."""
    stored = recorded_identity(run_dir)
    settings = stored.get("config") if isinstance(stored, dict) else None
    return settings if isinstance(settings, dict) else None


def check_recorded_target(run_dir: str | Path, target: str) -> None:
    """Raise when the ``run.json`` of ``run_dir`` records a network that predicts another
    ``target`` (``"boundaries"`` or ``"affinities"``; runs from before targets predict
    boundaries and record none); cheap, so that callers can check before any data is read."""
    settings = recorded_settings(run_dir)
    if settings is None:
        return
    recorded = settings.get("target", "boundaries")
    if recorded != target:
        raise EmsegInputError(f"{run_dir}: this run trained a network predicting {recorded} "
                              f"(--target {recorded}), not {target}; pass --target {recorded} "
                              "to resume it, or use another output folder (--out)")


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir/train.lock`` for the ``with`` block
    (:func:`~emseg_lib.infra.locks.held_lock`); yields the lock file's path.

    Raises:
        EmsegInputError: another live process holds the lock (the message names the folder
            and its PID). A lock file left by a dead process is taken over.
    """
    run_dir = Path(run_dir)
    lock = run_dir / LOCK_FILE

    def refusal(pid: str, host: str) -> str:
        holder = f"PID {pid or 'unknown'}" + (f" on {host}" if host else "")
        return (f"{run_dir}: another trainer is using this run folder ({holder}, lock file "
                f"{lock}); wait for it to finish or stop it")

    with held_lock(lock, refusal):
        yield lock


def check_run_dir(run_dir: str | Path) -> None:
    """Raise unless ``run_dir`` can hold a run: new, empty, or already a run folder.

    Cheap (no lock, no identity): callers can check ``--out`` before loading any data.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise EmsegInputError(f"{run_dir}: is a file; the run directory must be a folder")
    if not run_dir.is_dir() or (run_dir / RUN_FILE).exists() or (run_dir / LAST).exists():
        return
    if any(entry.name != LOCK_FILE for entry in run_dir.iterdir()):
        raise EmsegInputError(f"{run_dir}: folder holds other files and no emseg run "
                              f"({RUN_FILE}); choose a new or empty folder for the run")


@contextmanager
def training_run(run_dir: str | Path, identity: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Open ``run_dir`` for training: checked, locked, its identity recorded in ``run.json``.

    Yields the normalised identity (JSON types) to store in every checkpoint.

    Raises:
        EmsegInputError: ``run_dir`` is a file, holds files of something else, is locked by
            another trainer, or its ``run.json`` records another identity.
    """
    run_dir = Path(run_dir)
    identity = normalise_identity(identity)
    check_run_dir(run_dir)
    new_folder = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(run_dir):
            record = run_dir / RUN_FILE
            new_record = not record.exists()
            if not new_record:
                check_identity(run_dir, RUN_FILE, _recorded_identity(record, run_dir), identity)
            else:
                if (run_dir / LAST).exists():  # run.json lost: the checkpoint says whose run
                    check_identity(run_dir, LAST,
                                   load_checkpoint(run_dir / LAST).get("identity"), identity)
                created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                atomic_write_text(record, json.dumps(
                    {"identity": identity, "emseg_version": __version__, "created": created},
                    indent=2) + "\n")
            try:
                yield identity
            except EmsegInputError:
                if new_record and not (run_dir / LAST).exists():
                    record.unlink(missing_ok=True)  # refused before any epoch: leave no run
                raise
    except EmsegInputError:
        if new_folder:  # made by this call: removed again if the refusal left it empty
            with suppress(OSError):
                run_dir.rmdir()
        raise


def _recorded_identity(record: Path, run_dir: Path) -> Any:
    try:
        return json.loads(record.read_text())["identity"]
    except (ValueError, KeyError, TypeError) as err:
        raise EmsegInputError(f"{record}: unreadable run record ({one_line(err)}); delete "
                              f"{run_dir} to start over") from err


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Write ``run_dir/history.csv`` (one row per record) atomically."""
    with atomic_path(run_dir / HISTORY) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
