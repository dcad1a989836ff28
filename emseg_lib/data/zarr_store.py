"""Reading ``(Z, Y, X)`` arrays from zarr stores (zarr v2 and v3, OME-Zarr images included).

A zarr input is named by a path: the store (a folder whose name ends in ``.zarr``) and, after
it, the array's key inside the store, e.g. ``volume.zarr/raw``; a key flag (``--raw-key``)
names the array instead. A path or key that leads to an OME-Zarr image (a group with
``multiscales`` metadata) means its full-resolution level, read as ``(Z, Y, X)`` whatever
the order of its axes, with its voxel size from the image's metadata (:func:`ome_layout`).
When neither names an array, the usual places are tried (:data:`DEFAULT_KEYS`: the CREMI
layout, an OME-Zarr image and its labels, the arrays ``emseg segment`` writes); a missing
array is one error line listing those present.

:func:`open_zarr` only opens (nothing is read); :class:`ZarrArray` is sliced chunk by chunk
by the CLI (:class:`~emseg_lib.data.volumes.CheckedVolume`) or read whole by :func:`read_zarr`
when it fits in memory.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Literal

import numpy as np
import zarr

from emseg_lib.data.cremi import LABELS_KEY, PROBABILITY_KEY, RAW_KEY
from emseg_lib.data.validate import (
    check_fits_in_memory,
    check_plausible_nm,
    checked_resolution,
)
from emseg_lib.errors import EmsegInputError, EmsegWarning, one_line
from emseg_lib.infra.output_checks import ZARR_METADATA
from emseg_lib.infra.temporaries import restore_interrupted_swap

ZARR_SUFFIX = ".zarr"
#: what an array holds, for the keys tried when none is named
Role = Literal["raw", "labels", "probabilities"]
#: keys tried, in order, when neither the path nor a key flag names an array ("" = the
#: store's own OME-Zarr image); labels also try the first entry of an OME-Zarr ``labels`` list
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "raw": (RAW_KEY, "raw", ""),
    "labels": (LABELS_KEY, "labels/neuron_ids", "labels"),
    "probabilities": (PROBABILITY_KEY, "probabilities"),
}
#: the axes of a volume, in the order emseg reads it
SPATIAL = ("z", "y", "x")
#: nanometres per unit of an OME-Zarr axis (units of the NGFF specification)
NM_PER_UNIT = {"nanometer": 1.0, "micrometer": 1e3, "millimeter": 1e6, "angstrom": 0.1,
               "picometer": 1e-3, "meter": 1e9}


class ZyxView:
    """A stored OME-Zarr array read as ``(Z, Y, X)``: its spatial axes in another order (x, y,
    z ...) are transposed and its channel or time axes of size 1 dropped, range by range.

    Attributes:
        stored: the zarr array as stored.
        shape: ``(Z, Y, X)``.
        dtype: the array's dtype.
    """

    def __init__(self, stored: zarr.Array, places: tuple[int, int, int]) -> None:
        self.stored = stored
        self._places = places  # the stored axes of z, y and x
        self.shape = tuple(int(stored.shape[axis]) for axis in places)
        self.dtype = np.dtype(stored.dtype)
        self.ndim = 3

    def __getitem__(self, index: slice | EllipsisType) -> np.ndarray:
        """``view[z0:z1]`` (a range of slices) or ``view[...]`` (everything)."""
        z_range = index if isinstance(index, slice) else slice(None)
        key = tuple(z_range if axis == self._places[0] else
                    slice(None) if axis in self._places else 0
                    for axis in range(self.stored.ndim))
        kept = [axis for axis in range(self.stored.ndim) if axis in self._places]
        return np.asarray(self.stored[key]).transpose([kept.index(a) for a in self._places])


@dataclass(frozen=True)
class ZarrArray:
    """An opened zarr array (nothing read yet).

    Attributes:
        array: the ``(Z, Y, X)`` array: a ``zarr.Array`` (``shape``, ``dtype`` and slicing,
            read chunk by chunk), or a :class:`ZyxView` of an OME-Zarr image stored in
            another axis order.
        path: ``STORE.zarr/KEY``, for messages.
        resolution: voxel size in nm ``(z, y, x)`` from OME-Zarr metadata or a
            ``resolution`` attribute, else None.
    """

    array: zarr.Array | ZyxView
    path: Path
    resolution: tuple[float, float, float] | None

    @property
    def stored(self) -> zarr.Array:
        """The zarr array as stored (its chunks and fill value)."""
        return self.array.stored if isinstance(self.array, ZyxView) else self.array

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return tuple(int(n) for n in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        """The array's dtype."""
        return np.dtype(self.array.dtype)


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` names a zarr store or a node in one: a part of it ends in ``.zarr``,
    or it is a folder holding zarr metadata."""
    path = Path(path)
    if any(part.lower().endswith(ZARR_SUFFIX) for part in path.parts):
        return True
    return path.is_dir() and any((path / name).is_file() for name in ZARR_METADATA)


def split_zarr_path(path: str | Path) -> tuple[Path, str]:
    """``(store, key)`` of a path such as ``volume.zarr/volumes/raw``: the store is the path
    up to its first part ending in ``.zarr`` (or the whole path), the key what follows."""
    path = Path(path)
    for i, part in enumerate(path.parts):
        if part.lower().endswith(ZARR_SUFFIX):
            return Path(*path.parts[:i + 1]), "/".join(path.parts[i + 1:])
    return path, ""


def open_store(store: Path) -> zarr.Group | zarr.Array:
    """The zarr store ``store`` opened read-only (a group, or a store that is one array);
    a missing, plain-file or unreadable store is one error line."""
    restore_interrupted_swap(store)  # an emseg output a killed --overwrite left aside
    if not store.exists():
        raise EmsegInputError(f"{store}: not found")
    if not store.is_dir():
        raise EmsegInputError(f"{store}: a zarr store is a folder; this is a file")
    try:
        return zarr.open(store, mode="r")
    except Exception as err:  # zarr raises many kinds for missing or damaged metadata
        raise EmsegInputError(f"{store}: cannot be opened as a zarr store ({one_line(err)}); "
                              "is it a zarr v2 or v3 folder?") from err


def array_names(group: zarr.Group) -> list[str]:
    """Every array's key under ``group``, sorted."""
    names: list[str] = []
    for name, node in group.members(max_depth=None):
        if isinstance(node, zarr.Array):
            names.append(name)
    return sorted(names)


def _multiscales(group: zarr.Group) -> list | None:
    attrs = group.attrs.asdict()
    return attrs.get("ome", attrs).get("multiscales")


def _axis_names(axes: list | None, ndim: int, where: Path) -> list[str]:
    """The names of an OME-Zarr image's axes; versions 0.1 and 0.2 name none (5-D t, c, z,
    y, x), and a 3-D image without names is read as z, y, x."""
    if axes:
        return [str(axis.get("name") if isinstance(axis, dict) else axis).lower()
                for axis in axes]
    if ndim not in (3, 5):
        raise EmsegInputError(f"{where}: the OME-Zarr image names no axes and is {ndim}-D; "
                              "emseg reads images with the axes z, y and x")
    return list("zyx" if ndim == 3 else "tczyx")


def ome_layout(group: zarr.Group, where: Path, shape: tuple[int, ...]
               ) -> tuple[tuple[int, int, int], tuple[float, float, float] | None]:
    """Where the OME-Zarr image at ``where`` (its full-resolution level of ``shape``) keeps
    its axes z, y and x, and its voxel size in nm ``(z, y, x)`` (None when the axes carry no
    spatial units); the spatial axes may come in any order, and channel or time axes of size 1
    are dropped.

    Raises:
        EmsegInputError: axes that are not z, y and x (besides axes of size 1), or a scale
            that is not positive numbers in units of length.
    """
    multiscale = _multiscales(group)[0]
    axes = multiscale.get("axes")
    names = _axis_names(axes, len(shape), where)
    if (len(names) != len(shape) or len(set(names)) != len(names)
            or not set(SPATIAL) <= set(names)):
        raise EmsegInputError(f"{where}: OME-Zarr axes {names} for an array of shape {shape}; "
                              "emseg reads images with the axes z, y and x (in any order)")
    extra = [(name, n) for name, n in zip(names, shape, strict=True)
             if name not in SPATIAL and n != 1]
    if extra:
        raise EmsegInputError(f"{where}: OME-Zarr axis '{extra[0][0]}' has {extra[0][1]} "
                              "entries; emseg reads one channel and one time point (axes z, y, "
                              "x): save the one to segment as an image of its own")
    places = tuple(names.index(axis) for axis in SPATIAL)
    return places, _ome_resolution(multiscale, axes, places, where)  # type: ignore[arg-type]


def _ome_resolution(multiscale: dict, axes: list | None, places: tuple[int, int, int],
                    where: Path) -> tuple[float, float, float] | None:
    """The full-resolution level's scale of the axes z, y, x in nm, None without units."""
    transforms = multiscale["datasets"][0].get("coordinateTransformations") or []
    scale = next((t.get("scale") for t in transforms if t.get("type") == "scale"), None)
    units = [axis.get("unit") if isinstance(axis, dict) else None for axis in axes or []]
    if scale is None or not units or any(units[axis] is None for axis in places):
        return None
    if len(scale) != len(units):
        raise EmsegInputError(f"{where}: OME-Zarr scale {scale} does not give one value per "
                              f"axis {[axis.get('name') for axis in axes]}")
    spatial = [(scale[axis], units[axis]) for axis in places]
    if any(unit not in NM_PER_UNIT for _, unit in spatial) or not all(
            isinstance(s, (int, float)) and s > 0 for s, _ in spatial):
        raise EmsegInputError(f"{where}: OME-Zarr scale {scale} in {units}: expected positive "
                              f"spatial scales in {', '.join(NM_PER_UNIT)}")
    resolution = tuple(float(s) * NM_PER_UNIT[unit] for s, unit in spatial)
    check_plausible_nm(resolution, f"{where}: the OME-Zarr scale of z, y, x")
    return resolution  # type: ignore[return-value]


def _attribute_resolution(array: zarr.Array, path: Path) -> tuple[float, float, float] | None:
    if "resolution" not in array.attrs:
        return None
    return checked_resolution(array.attrs["resolution"], f"{path}: 'resolution' attribute")


def _node(root: zarr.Group, key: str, store: Path | None = None
          ) -> zarr.Array | zarr.Group | None:
    """``root[key]``, None where there is nothing; metadata that cannot be read (damaged
    JSON, impossible values) is one error line naming ``store / key``."""
    if not key:
        return root
    try:
        return root[key]
    except KeyError:
        return None
    except Exception as err:  # zarr raises JSON, value and type errors for damaged metadata
        where = store / key if store is not None else key
        raise EmsegInputError(f"{where}: its zarr metadata cannot be read ({one_line(err)}); "
                              "the store may be damaged") from err


def _as_array(root: zarr.Group, store: Path, key: str) -> ZarrArray | None:
    """The array at ``key``, or the full-resolution level of an OME-Zarr image there."""
    node = _node(root, key, store)
    if isinstance(node, zarr.Array):
        path = store / key
        return ZarrArray(node, path, _attribute_resolution(node, path))
    if node is None or not _multiscales(node):
        return None
    level = _multiscales(node)[0]["datasets"][0]["path"]
    array = _node(node, level, store / key)
    if not isinstance(array, zarr.Array):
        return None
    places, resolution = ome_layout(node, store / key, tuple(int(n) for n in array.shape))
    view = array if places == (0, 1, 2) and array.ndim == 3 else ZyxView(array, places)
    return ZarrArray(view, store / key / level, resolution)


def _candidates(root: zarr.Group, key: str, role: Role) -> list[str]:
    """The usual places of a ``role`` array in the group at ``key``."""
    prefix = f"{key}/" if key else ""
    keys = [prefix + k if k else key for k in DEFAULT_KEYS[role]]
    if role == "labels":
        labels = _node(root, prefix + "labels")
        names = labels.attrs.get("labels", []) if isinstance(labels, zarr.Group) else []
        keys += [f"{prefix}labels/{name}" for name in names[:1]]
    return keys


def open_zarr(path: str | Path, key: str | None = None, *, role: Role = "raw",
              required: bool = True, flag: str | None = None) -> ZarrArray | None:
    """Open a ``(Z, Y, X)`` array of a zarr store; nothing is read.

    Args:
        path: the store, or a node in it (``volume.zarr/raw``).
        key: the array's key below ``path`` (a key flag); None: ``path`` names it, else the
            keys of :data:`DEFAULT_KEYS` for ``role`` are tried.
        required: raise when no array is found; otherwise return None.
        flag: the key flag, named in the message for a missing array (None: none).

    Raises:
        EmsegInputError: no store there, unreadable metadata, a missing array (listing the
            arrays present), or an array that is not 3-D.
    """
    store, inner = split_zarr_path(path)
    root = open_store(store)
    if isinstance(root, zarr.Array):  # a store that is one array
        if inner or key:
            raise EmsegInputError(f"{store}: is a single zarr array, it holds no "
                                  f"'{'/'.join(p for p in (inner, key or '') if p)}'")
        return _checked(ZarrArray(root, store, _attribute_resolution(root, store)))
    inner = "/".join(part for part in (inner, key or "") if part)
    node = _node(root, inner, store)
    named = bool(inner) and not (isinstance(node, zarr.Group) and not _multiscales(node))
    keys = [inner] if named else _candidates(root, inner, role)
    found = next((a for a in (_as_array(root, store, k) for k in keys) if a is not None), None)
    if found is None:
        if not required:
            return None
        wanted = " or ".join(f"'{k}'" if k else "an OME-Zarr image" for k in keys)
        named_by = f"with {flag} or as" if flag else "as"
        raise EmsegInputError(f"{store}: no {role} array {wanted}; name it {named_by} "
                              f"{store}/KEY. Arrays present: {array_names(root) or 'none'}")
    return _checked(found)


def _checked(found: ZarrArray) -> ZarrArray:
    if len(found.shape) != 3:
        raise EmsegInputError(f"{found.path}: must be 3-D (Z, Y, X), got shape {found.shape}")
    if 0 in found.shape:
        raise EmsegInputError(f"{found.path}: the array is empty, shape {found.shape}")
    warn_missing_chunks(found)
    return found


def warn_missing_chunks(found: ZarrArray) -> None:
    """Warn (:class:`~emseg_lib.errors.EmsegWarning`) when chunks of the array are not in its
    store. zarr reads them as the array's fill value, and that is the format's rule for chunks
    never written (zarr 3 skips chunks that hold only the fill value by default, as do many
    writers for empty regions), so the array is used; but a copy that stopped early or a
    deleted file looks the same, so the user is told how many.

    Raises:
        EmsegInputError: the store cannot be listed.
    """
    try:
        stored, total = int(found.stored.nchunks_initialized), int(found.stored.nchunks)
    except Exception as err:  # stores raise many kinds when they cannot be listed
        raise EmsegInputError(f"{found.path}: its chunks cannot be listed ({one_line(err)}); "
                              "the store may be damaged") from err
    if stored < total:
        warnings.warn(EmsegWarning(
            f"{found.path}: {total - stored} of its {total} chunks are not in the store and "
            f"are read as the fill value {found.stored.fill_value} (zarr's rule for chunks "
            "never written; if the store was copied, check that the copy is complete)"),
            stacklevel=2)


def read_zarr(source: ZarrArray) -> np.ndarray:
    """The whole array, if it fits in the available memory; a damaged chunk is one line."""
    check_fits_in_memory(source.path, [("zarr array", source.shape, source.dtype)])
    try:
        return np.asarray(source.array[...])
    except Exception as err:  # codecs and stores raise many kinds for damaged chunks
        raise EmsegInputError(f"{source.path}: cannot be read ({one_line(err)}); a chunk may "
                              "be truncated or corrupt") from err

