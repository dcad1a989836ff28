"""Downloading EM training data: resumable, with a progress bar, always verified.

Two kinds of data:

* the CREMI training samples (:func:`fetch_cremi`), downloaded as they are;
* the public real EM stacks of :data:`DATASETS` (:func:`fetch_dataset`): upstream files from a
  public GitHub repository at a pinned commit, converted to the CREMI layout
  (:mod:`emseg_lib.data.upstream`). Their files' SHA-256 are pinned in
  ``emseg_lib/resources/*.sha256`` (``sha256sum`` format, paths in the repository).

Every file goes through :func:`fetch_file`: it streams into ``NAME.part``, asking the server
for the missing bytes only (``Range`` request) when a partial file is there, so an interrupted
download resumes; the completed ``NAME.part`` is checked against its pinned SHA-256 whatever
the URL, removed when it differs, and renamed to ``NAME`` only when it matches. A finished
output gets its SHA-256 written beside it (``NAME.sha256``); an existing output that matches
is kept, and one that does not is replaced only by a new verified one.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm.auto import tqdm

from emseg_lib.data.cremi import load_cremi
from emseg_lib.data.upstream import (
    FIBSEM_RESOLUTION_NM,
    SNEMI_RESOLUTION_NM,
    VNC_RESOLUTION_NM,
    convert_fibsem,
    convert_snemi,
    convert_vnc,
    write_cremi_arrays,
)
from emseg_lib.errors import EmsegInputError
from emseg_lib.infra.atomic_files import atomic_write_text

CREMI_BASE_URL = "https://cremi.org/static/data"
CREMI_SAMPLES = ("A", "B", "C")
#: published SHA-256 of the original CREMI training files (as torch_em verifies them)
CREMI_SHA256 = {
    "A": "4c563d1b78acb2bcfb3ea958b6fe1533422f7f4a19f3e05b600bfa11430b510d",
    "B": "887e85521e00deead18c94a21ad71f278d88a5214c7edeed943130a1f4bb48b8",
    "C": "2874496f224d222ebc29d0e4753e8c458093e1d37bc53acd1b69b19ed1ae7052",
}
CHUNK = 1 << 20


@dataclass(frozen=True)
class Dataset:
    """A public EM stack: upstream files at a pinned commit and their conversion.

    Attributes:
        name: the name on the command line (``emseg fetch NAME``).
        filename: the CREMI-layout output file written into the destination folder.
        repo: the GitHub repository ``owner/name``.
        commit: the full 40-hex commit the files are taken from.
        files: ``{path in the repository: SHA-256}`` of every upstream file needed.
        convert: ``{path: local file} -> {CREMI dataset key: (Z, Y, X) array}``.
        resolution: voxel size in nm ``(z, y, x)``.
        citation: the licence and the work to cite, printed on every fetch.
    """

    name: str
    filename: str
    repo: str
    commit: str
    files: Mapping[str, str]
    convert: Callable[[Mapping[str, Path]], dict[str, np.ndarray]]
    resolution: tuple[float, float, float]
    citation: str

    @property
    def base_url(self) -> str:
        """Where the upstream files are served at the pinned commit."""
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}"


def _manifest(name: str) -> dict[str, str]:
    """``{path: sha256}`` from a ``sha256sum``-format file in ``emseg_lib/resources``."""
    text = (files("emseg_lib") / "resources" / name).read_text()
    return {path: digest for digest, path in (line.split() for line in text.splitlines())}


DATASETS: dict[str, Dataset] = {
    "vnc": Dataset(
        "vnc", "vnc_sstem_stack1_cremi.h5", "unidesigner/groundtruth-drosophila-vnc",
        "4a5f051466d24d8dc1e855ab55658bb1b1dcd6bf", _manifest("vnc_sstem_stack1.sha256"),
        convert_vnc, VNC_RESOLUTION_NM,
        "Licence: CC BY-NC-SA 3.0 (non-commercial research use). Cite: Gerhard, Funke, Martel, "
        "Cardona, Fetter (2013), 'Segmented anisotropic ssTEM dataset of neural tissue', "
        "figshare, doi:10.6084/m9.figshare.856713"),
    "fibsem": Dataset(
        "fibsem", "medulla_fibsem_250_cremi.h5", "janelia-flyem/neuroproof_examples",
        "ce839e17deaf4c01153827c6d028dfecfbb4b958", _manifest("medulla_fibsem_250.sha256"),
        convert_fibsem, FIBSEM_RESOLUTION_NM,
        "Licence: Creative Commons Attribution (derivative works allowed), per LICENSE.txt of "
        "github.com/janelia-flyem/neuroproof_examples. Credit: FlyEM, HHMI Janelia Research "
        "Campus, neuroproof_examples training_sample2 (Drosophila medulla, FIB-SEM), converted "
        "to the CREMI layout"),
    "snemi": Dataset(
        "snemi", "snemi3d_ac4_cremi.h5", "HoraceKem/Manual-Tracing",
        "4862efdbd22caed5deea0802eba56e43fe9b4946", _manifest("snemi3d_ac4.sha256"),
        convert_snemi, SNEMI_RESOLUTION_NM,
        "Licence: none stated by the data's authors; public research data (the SNEMI3D "
        "challenge's training volume): use it for research and cite it. Copy from "
        "github.com/HoraceKem/Manual-Tracing (MIT-licensed repository). Cite: Kasthuri et al. "
        "(2015), 'Saturated reconstruction of a volume of neocortex', Cell 162(3):648-661, "
        "doi:10.1016/j.cell.2015.06.054 (Lichtman lab; labels by D. R. Berger), and the SNEMI3D "
        "challenge (ISBI 2013)"),
}


def cremi_filename(sample: str) -> str:
    """``sample_A_20160501.hdf`` etc."""
    if sample not in CREMI_SAMPLES:
        raise EmsegInputError(f"--sample must be one of {', '.join(CREMI_SAMPLES)}, got "
                              f"{sample!r}")
    return f"sample_{sample}_20160501.hdf"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int, timeout: float, insecure: bool, dest: Path):
    headers = {"Range": f"bytes={start}-"} if start else {}
    context = None
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout, context=context)
    except urllib.error.HTTPError as err:
        if err.code == 416:  # nothing left to send: the partial file is complete
            return None
        raise EmsegInputError(f"{url}: server answered HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise EmsegInputError(
                f"{url}: the server's TLS certificate cannot be verified ({reason.verify_message});"
                " pass --insecure to download anyway (the file is still checked against its "
                "published SHA-256)"
            ) from err
        raise EmsegInputError(
            f"{url}: cannot be reached ({reason}); check the network connection (this machine "
            f"may have no internet access) or save the file by hand as {dest} (it is checked "
            "against its pinned SHA-256)"
        ) from err


def _append(out: BinaryIO, block: bytes, part: Path) -> None:
    """Write ``block`` to the end of ``part``, open unbuffered as ``out``; a full disk (or
    another failure of the disk, not of the connection) is one line naming the folder."""
    view = memoryview(block)
    try:
        while view:
            view = view[out.write(view):]
    except OSError as err:
        kept = f"{part.stat().st_size if part.exists() else 0} bytes kept in {part}"
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            message = (f"{part.parent}: the disk is full ({kept}); free some space and run "
                       "the same command again to resume")
        else:
            message = (f"{part}: cannot be written ({err.strerror or err}; {kept}); run the "
                       "same command again to resume")
        raise EmsegInputError(message) from err


def download(url: str, part: str | Path, *, timeout: float = 60.0, progress: bool = True,
             insecure: bool = False) -> Path:
    """Download ``url`` into ``part``, resuming a partial ``part``; returns ``part``.

    Nothing is verified here: :func:`fetch_file` checks the SHA-256 of the result.

    Raises:
        EmsegInputError: unreachable server, HTTP error, a file shorter than announced, or a
            full disk (naming the folder).
    """
    part = Path(part)
    name = part.name.removesuffix(".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    response = _open(url, start, timeout, insecure, part.with_name(name))
    if response is None:
        return part
    with response:
        resumed = start > 0 and response.status == 206
        if not resumed:
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with part.open("ab" if resumed else "wb", buffering=0) as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True,
                desc=name, disable=not progress) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    _append(out, block, part)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as err:
                failure = f"connection lost ({err.__class__.__name__})"
            else:
                failure = None
    size = part.stat().st_size
    if failure is not None or (total is not None and size != total):
        raise EmsegInputError(f"{url}: {failure or 'download stopped'} after {size} of "
                              f"{total or '?'} bytes, kept in {part}; run the same command "
                              "again to resume")
    return part


def fetch_file(url: str, dest: str | Path, sha256: str, *, insecure: bool = False,
               progress: bool = True) -> bool:
    """Make ``dest`` a copy of ``url`` whose SHA-256 is ``sha256``.

    An existing ``dest`` with that SHA-256 is kept. Otherwise the file is downloaded into
    ``dest.part`` (resuming a partial one), checked, and renamed to ``dest`` only when it
    matches; a mismatching ``dest.part`` is removed.

    Returns:
        True when downloaded, False when ``dest`` was already there and verified.

    Raises:
        EmsegInputError: download failure, or a SHA-256 mismatch (``dest`` left as it was).
    """
    dest = Path(dest)
    if dest.is_file() and sha256_of(dest) == sha256:
        return False
    part = download(url, dest.with_name(dest.name + ".part"), progress=progress,
                    insecure=insecure)
    digest = sha256_of(part)
    if digest != sha256:
        part.unlink()
        raise EmsegInputError(
            f"{url}: downloaded file has SHA-256 {digest}, expected the pinned {sha256}; "
            f"{part} removed, run the same command again (if this repeats, the file on the "
            "server is not the pinned one)"
        )
    part.replace(dest)
    return True


@contextmanager
def _no_empty_folders_left(folder: Path) -> Iterator[None]:
    """When the block fails, remove the folders it created, ``folder`` (with what is below
    it) and those above it that did not exist, if they hold no file: a fetch that got
    nothing leaves nothing; partial downloads stay for the next run to resume."""
    new = []
    while not folder.exists() and folder != folder.parent:
        new.append(folder)
        folder = folder.parent
    try:
        yield
    except BaseException:
        if new:
            for parent, _, _ in os.walk(new[0], topdown=False):
                with suppress(OSError):  # a folder holding a file stays
                    os.rmdir(parent)
            for above in new[1:]:
                with suppress(OSError):
                    above.rmdir()
        raise


def _verified_output(path: Path) -> bool:
    """True when ``path`` and its ``NAME.sha256`` sidecar exist and agree."""
    sidecar = path.with_name(path.name + ".sha256")
    if not (path.is_file() and sidecar.is_file()):
        return False
    recorded = sidecar.read_text().split()
    return bool(recorded) and sha256_of(path) == recorded[0]


def _write_sidecar(path: Path) -> None:
    atomic_write_text(path.with_name(path.name + ".sha256"), f"{sha256_of(path)}  {path.name}\n")


def fetch_cremi(sample: str, dest_dir: str | Path, *, base_url: str = CREMI_BASE_URL,
                expected_sha256: str | None = None, insecure: bool = False,
                progress: bool = True) -> Path:
    """Download and verify one CREMI training sample into ``dest_dir``; returns its path.

    The file must match ``expected_sha256``, by default the published SHA-256, whatever
    ``base_url``, and be a CREMI-layout HDF5 file. An existing verified file is kept.
    """
    dest = Path(dest_dir) / cremi_filename(sample)
    expected = expected_sha256 or CREMI_SHA256[sample]
    with _no_empty_folders_left(dest.parent):
        downloaded = fetch_file(f"{base_url.rstrip('/')}/{dest.name}", dest, expected,
                                insecure=insecure, progress=progress)
    if downloaded:
        try:
            load_cremi(dest, require_labels=False)
        except EmsegInputError as err:
            dest.unlink()
            raise EmsegInputError(f"{err} (downloaded file removed; fetch again)") from err
    _write_sidecar(dest)
    return dest


def fetch_dataset(name: str, dest_dir: str | Path, *, base_url: str | None = None,
                  insecure: bool = False, progress: bool = True) -> Path:
    """Download, verify and convert the public EM stack ``name`` (a key of :data:`DATASETS`).

    The upstream files go to ``DEST/FILENAME.download/`` (kept while incomplete, so a second
    run resumes; removed after success), each checked against its pinned SHA-256 whatever
    ``base_url`` (default: GitHub at the pinned commit). The CREMI-layout output is written
    atomically with its ``FILENAME.sha256``; an existing output matching it is kept.

    Returns:
        The path of the CREMI-layout HDF5 file.
    """
    if name not in DATASETS:
        raise EmsegInputError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    dest_dir = Path(dest_dir)
    out = dest_dir / dataset.filename
    if _verified_output(out):
        return out
    work = dest_dir / f"{dataset.filename}.download"
    base = (base_url or dataset.base_url).rstrip("/")
    local: dict[str, Path] = {}
    with _no_empty_folders_left(work):
        for path, sha256 in tqdm(dataset.files.items(), desc=dataset.filename, unit="file",
                                 disable=not progress):
            local[path] = work / path
            fetch_file(f"{base}/{path}", local[path], sha256, insecure=insecure,
                       progress=False)
    write_cremi_arrays(dataset.convert(local), dataset.resolution, out)
    _write_sidecar(out)
    shutil.rmtree(work)
    return out
