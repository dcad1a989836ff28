"""Atomic writes and output checks: nothing half-written, no input overwritten."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emseg_lib import EmsegInputError
from emseg_lib.infra.atomic_files import GuardedFile, atomic_hdf5, atomic_path, atomic_write_text
from emseg_lib.infra.output_checks import check_output

REPO = Path(__file__).resolve().parents[1]


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_temporary_is_hidden_beside_the_target_with_its_suffix(tmp_path):
    target = tmp_path / "seg.scores.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".seg.scores.")
        assert tmp.suffix == ".json" and not tmp.exists() and not target.exists()
        tmp.write_text("new")
        assert not target.exists()  # nothing at the target until the block is done
    assert target.read_text() == "new"
    assert _entries(tmp_path) == ["seg.scores.json"]


@pytest.mark.parametrize("error", [RuntimeError("writer failed"), KeyboardInterrupt()])
def test_failed_write_leaves_the_target_and_no_temporary(tmp_path, error):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(type(error)):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise error
    assert target.read_text() == "old"
    assert _entries(tmp_path) == ["table.csv"]


def test_replacing_keeps_permissions_and_writes_through_links(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert real.stat().st_mode & 0o777 == 0o640


def test_a_writer_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x.bin"):
            pass
    assert _entries(tmp_path) == []


KILLED_WRITER = """
import sys, time
from emseg_lib.infra.atomic_files import atomic_path
with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as out:
    block = b"\\xab" * (1 << 20)
    for i in range(100_000):
        out.write(block)
        out.flush()
        if i == 2:
            print("writing", flush=True)
        time.sleep(0.001)
"""


def test_sigkill_mid_write_leaves_the_previous_target_byte_identical(tmp_path):
    target = tmp_path / "volume.h5"
    previous = os.urandom(1 << 16)
    target.write_bytes(previous)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)],
                              stdout=subprocess.PIPE, env=env)
    try:
        assert writer.stdout.readline().strip() == b"writing"
        hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".volume.")]
        assert len(hidden) == 1 and hidden[0].stat().st_size >= 3 << 20  # mid-write
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    assert target.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["volume.h5"]


def test_check_output_accepts_a_new_file(tmp_path):
    assert check_output(tmp_path / "seg.h5", inputs=[tmp_path / "raw.tif"],
                        expected_bytes=1024) == tmp_path / "seg.h5"


def test_check_output_refuses_an_input(tmp_path):
    raw = tmp_path / "raw.tif"
    raw.write_bytes(b"data")
    with pytest.raises(EmsegInputError, match=r"raw\.tif: is the input .*raw\.tif; writing "
                                              r"there would destroy it"):
        check_output(tmp_path / "sub" / ".." / "raw.tif", inputs=[raw], overwrite=True)
    (tmp_path / "soft.tif").symlink_to(raw)
    os.link(raw, tmp_path / "hard.tif")
    for alias in ("soft.tif", "hard.tif"):
        with pytest.raises(EmsegInputError, match=f"{alias}: is the input"):
            check_output(tmp_path / alias, inputs=[raw], overwrite=True)


def test_check_output_refuses_existing_folder_and_missing_places(tmp_path):
    (tmp_path / "old.h5").write_bytes(b"results")
    with pytest.raises(EmsegInputError, match=r"old\.h5: already exists; .* --overwrite"):
        check_output(tmp_path / "old.h5")
    assert check_output(tmp_path / "old.h5", overwrite=True)
    with pytest.raises(EmsegInputError, match="is a folder; give the output file's name"):
        check_output(tmp_path, overwrite=True)
    with pytest.raises(EmsegInputError, match=r"folder .*missing does not exist"):
        check_output(tmp_path / "missing" / "seg.h5")


def test_check_output_refuses_a_read_only_folder_and_a_full_disk(tmp_path, monkeypatch):
    with pytest.raises(EmsegInputError, match=r"seg\.h5: the output needs about 1024\.0 TiB "
                                              r"but only .* is free"):
        check_output(tmp_path / "seg.h5", expected_bytes=1 << 50)
    # a read-only folder, as a non-root user sees it (root may write anywhere)
    monkeypatch.setattr("emseg_lib.infra.output_checks.os.access", lambda path, mode: False)
    with pytest.raises(EmsegInputError, match=r"seg\.h5: folder .* is not writable"):
        check_output(tmp_path / "seg.h5")


def test_ctrl_c_inside_an_hdf5_call_waits_until_hdf5_is_done(tmp_path, monkeypatch):
    """A Ctrl-C that lands in a Python file method HDF5 is calling, before GuardedFile can
    catch it, is held until the HDF5 call ends: a clean KeyboardInterrupt, the previous file
    kept and no temporary left (it broke HDF5, which then could not close the file)."""
    target = tmp_path / "seg.h5"
    target.write_bytes(b"previous")
    original = GuardedFile.seek
    sent = []

    def seek_hit_by_ctrl_c(self, *args):
        if not sent:
            sent.append(None)
            signal.raise_signal(signal.SIGINT)
        return original(self, *args)

    # Ctrl-C as in a terminal, also when the tests run as a background job (SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), atomic_hdf5(target) as out:
            out.file.create_dataset("labels", data=np.arange(1 << 16))
            monkeypatch.setattr(GuardedFile, "seek", seek_hit_by_ctrl_c)
            out.flush()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.h5"]


def test_a_failing_swap_puts_the_previous_folder_back(tmp_path, monkeypatch):
    from emseg_lib.infra import atomic_files as atomic

    target = tmp_path / "seg.zarr"
    target.mkdir()
    (target / "zarr.json").write_text("previous")
    rename = os.rename

    def failing_for_the_new_folder(source, destination):
        if ".tmp." in Path(source).name:
            raise OSError(5, "Input/output error")
        rename(source, destination)

    monkeypatch.setattr(atomic.os, "rename", failing_for_the_new_folder)
    with pytest.raises(OSError), atomic.atomic_directory(target) as folder:
        (folder / "zarr.json").write_text("new")
    assert (target / "zarr.json").read_text() == "previous"
    assert _entries(tmp_path) == ["seg.zarr"]
