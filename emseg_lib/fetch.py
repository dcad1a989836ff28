"""Downloading the CREMI training volumes: resumable, with a progress bar, verified.

A download streams into ``NAME.part`` and asks the server for the missing bytes only
(``Range`` request) when a partial file is there, so an interrupted download resumes. A
finished file is checked against the server's announced size and against the CREMI layout
(:func:`~emseg_lib.data.load_cremi`), then its SHA-256 is written beside it
(``NAME.sha256``) so later runs can verify it without the network.
"""

from __future__ import annotations

import hashlib
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from emseg_lib.atomic import atomic_write_text
from emseg_lib.data.cremi import load_cremi
from emseg_lib.errors import EmsegInputError

CREMI_BASE_URL = "https://cremi.org/static/data"
CREMI_SAMPLES = ("A", "B", "C")
#: published SHA-256 of the original CREMI training files (as torch_em verifies them)
CREMI_SHA256 = {
    "A": "4c563d1b78acb2bcfb3ea958b6fe1533422f7f4a19f3e05b600bfa11430b510d",
    "B": "887e85521e00deead18c94a21ad71f278d88a5214c7edeed943130a1f4bb48b8",
    "C": "2874496f224d222ebc29d0e4753e8c458093e1d37bc53acd1b69b19ed1ae7052",
}
CHUNK = 1 << 20


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


def _open(url: str, start: int, timeout: float, insecure: bool):
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
            "may have no internet access) or download the file by hand into the destination"
        ) from err


def download(url: str, dest: str | Path, *, timeout: float = 60.0, progress: bool = True,
             insecure: bool = False) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part``; returns ``dest``.

    Raises:
        EmsegInputError: unreachable server, HTTP error, or a file shorter than announced.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    response = _open(url, start, timeout, insecure)
    if response is not None:
        with response:
            resumed = start > 0 and response.status == 206
            if not resumed:
                start = 0
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            with part.open("ab" if resumed else "wb") as out, tqdm(
                    total=total, initial=start, unit="B", unit_scale=True,
                    desc=dest.name, disable=not progress) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
        size = part.stat().st_size
        if total is not None and size != total:
            raise EmsegInputError(f"{part}: got {size} of {total} bytes; run the same command "
                                  "again to resume")
    part.replace(dest)
    return dest


def fetch_cremi(sample: str, dest_dir: str | Path, *, base_url: str = CREMI_BASE_URL,
                expected_sha256: str | None = None, insecure: bool = False,
                progress: bool = True) -> Path:
    """Download, verify and checksum one CREMI training sample into ``dest_dir``.

    The file must be a CREMI-layout HDF5 file and, from the official server (or when
    ``expected_sha256`` is given), match the published SHA-256. An existing file whose
    ``.sha256`` sidecar matches is not downloaded again.
    """
    if expected_sha256 is None and base_url == CREMI_BASE_URL:
        expected_sha256 = CREMI_SHA256.get(sample)
    dest = Path(dest_dir) / cremi_filename(sample)
    sidecar = dest.with_name(dest.name + ".sha256")
    if dest.exists() and sidecar.exists():
        if sha256_of(dest) == sidecar.read_text().split()[0]:
            return dest
        raise EmsegInputError(f"{dest}: does not match its checksum {sidecar}; delete both "
                              "files and fetch again")
    download(f"{base_url.rstrip('/')}/{dest.name}", dest, progress=progress,
             insecure=insecure)
    digest = sha256_of(dest)
    try:
        if expected_sha256 is not None and digest != expected_sha256:
            raise EmsegInputError(f"{dest}: SHA-256 {digest} differs from the published "
                                  f"{expected_sha256}")
        load_cremi(dest, require_labels=False)
    except EmsegInputError as err:
        dest.unlink()
        raise EmsegInputError(f"{err} (downloaded file removed; fetch again)") from err
    atomic_write_text(sidecar, f"{digest}  {dest.name}\n")
    return dest
