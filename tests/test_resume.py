"""Resuming whole-volume runs: ``emseg segment`` / ``postprocess`` stopped by Ctrl-C (or
killed) keep their finished chunks beside the output (:mod:`emseg_lib.output.partial_results`); the
same command computes only the rest and writes what an uninterrupted run writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from emseg_lib.cli import main
from emseg_lib.data.cremi import LABELS_KEY, PROBABILITY_KEY
from emseg_lib.models import UNet2D
from emseg_lib.output import pipeline
from emseg_lib.output.partial_results import PartialResults, partial_folder
from emseg_lib.profiles import get_profile


def _probabilities(path, shape=(6, 48, 48), seed=0):
    """A smooth random cell-probability volume in the CREMI layout at ``path``."""
    from scipy import ndimage as ndi

    noise = np.random.default_rng(seed).random(shape).astype(np.float32)
    prob = ndi.gaussian_filter(noise, (0, 3, 3))
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    with h5py.File(path, "w") as handle:
        handle.create_dataset(PROBABILITY_KEY, data=prob).attrs["resolution"] = [40.0, 4.0, 4.0]
    return path


def _labels(path):
    with h5py.File(path) as handle:
        return handle[LABELS_KEY][:]


def _run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _counting(monkeypatch, stop_at: int | None = None) -> list:
    """Count the chunks post-processed; raise Ctrl-C at call ``stop_at``."""
    calls = []
    original = pipeline.segment_volume

    def counted(*args, **kwargs):
        calls.append(None)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "segment_volume", counted)
    return calls


def _postprocess(prob, out, *extra):
    return ["postprocess", "--prob", prob, "--out", out, "--chunk-slices", "2", "--workers",
            "1", "--smooth-px", "1", "--seed-th", "0.6", *extra]


@pytest.mark.parametrize("dims", ["2", "3"])
def test_an_interrupted_postprocess_resumes_with_the_same_result(tmp_path, capsys,
                                                                 monkeypatch, dims):
    """In 3D too: the kept chunks hold their ids on the halo slices, so the chunk after them
    is stitched to them as in an uninterrupted run."""
    prob = _probabilities(tmp_path / "prob.h5")
    assert _run(capsys, *_postprocess(prob, tmp_path / "whole.h5", "--dims", dims))[0] == 0
    _counting(monkeypatch, stop_at=3)
    code, _, err = _run(capsys, *_postprocess(prob, tmp_path / "seg.h5", "--dims", dims))
    kept = partial_folder(tmp_path / "seg.h5")
    assert code == 130
    assert err.strip().splitlines()[-1].endswith(
        f"2 finished chunk(s) are kept in {kept}: run the same command again to resume")
    assert not (tmp_path / "seg.h5").exists()

    calls = _counting(monkeypatch)
    code, out, err = _run(capsys, *_postprocess(prob, tmp_path / "seg.h5", "--dims", dims))
    assert code == 0, err
    assert f"resuming: 2 chunk(s) finished by an interrupted earlier run are taken from {kept}" \
        in out
    assert len(calls) == 1  # only the third chunk was computed
    np.testing.assert_array_equal(_labels(tmp_path / "seg.h5"), _labels(tmp_path / "whole.h5"))
    if dims == "3":  # stitched: some segment crosses each of the two chunk faces
        seg = _labels(tmp_path / "seg.h5")
        assert all(np.intersect1d(seg[z - 1], seg[z]).size for z in (2, 4))
    assert (tmp_path / "seg.preview.png").is_file()
    assert not kept.exists()


@pytest.mark.parametrize("change", ["settings", "input"])
def test_kept_chunks_of_other_settings_or_inputs_are_discarded(tmp_path, capsys, monkeypatch,
                                                               change):
    prob = _probabilities(tmp_path / "prob.h5")
    _counting(monkeypatch, stop_at=3)
    assert _run(capsys, *_postprocess(prob, tmp_path / "seg.h5"))[0] == 130
    extra = ["--seed-th", "0.7"] if change == "settings" else []
    if change == "input":
        _probabilities(prob, seed=1)  # the same file name, other data
    assert _run(capsys, *_postprocess(prob, tmp_path / "fresh.h5", *extra))[0] == 0

    calls = _counting(monkeypatch)
    code, out, err = _run(capsys, *_postprocess(prob, tmp_path / "seg.h5", *extra))
    assert code == 0, err
    assert "discarded 2 finished chunk(s) of an interrupted run with other inputs or " \
           "settings" in out
    assert len(calls) == 3
    np.testing.assert_array_equal(_labels(tmp_path / "seg.h5"), _labels(tmp_path / "fresh.h5"))


def test_a_run_that_fails_keeps_no_partial_results(tmp_path, capsys, monkeypatch):
    prob = _probabilities(tmp_path / "prob.h5")
    original = pipeline.segment_volume
    calls = []

    def full_disk_at_the_second_chunk(*args, **kwargs):
        calls.append(None)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "segment_volume", full_disk_at_the_second_chunk)
    code, _, err = _run(capsys, *_postprocess(prob, tmp_path / "seg.h5"))
    assert code == 2
    assert err.strip().splitlines()[-1] == \
        f"emseg: error: {tmp_path / 'seg.h5'}: not written: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prob.h5"]


def test_a_second_run_writing_the_same_output_is_refused_before_any_work(tmp_path, capsys,
                                                                         monkeypatch):
    prob = _probabilities(tmp_path / "prob.h5")
    folder = partial_folder(tmp_path / "seg.h5")
    folder.mkdir()
    holding = ("import sys; from emseg_lib.infra.locks import held_lock\n"
               "with held_lock(sys.argv[1], str):\n    print('held', flush=True); sys.stdin.read()")
    other = subprocess.Popen([sys.executable, "-c", holding, str(folder / "lock")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "held\n"
        calls = _counting(monkeypatch)
        code, _, err = _run(capsys, *_postprocess(prob, tmp_path / "seg.h5"))
        held = (folder / "lock").read_text()
    finally:
        other.kill()
        other.wait()
    assert code == 2 and not calls
    assert err.strip().splitlines()[-1] == (
        f"emseg: error: {tmp_path / 'seg.h5'}: another emseg run (process {other.pid}) is "
        "writing it; wait for it to finish or stop it")
    assert held == f"{other.pid} {socket.gethostname()}\n"


def test_a_killed_runs_lock_is_taken_over(tmp_path, capsys):
    prob = _probabilities(tmp_path / "prob.h5")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = partial_folder(tmp_path / "seg.h5")
    folder.mkdir()
    (folder / "lock").write_text(str(gone.pid))
    code, _, err = _run(capsys, *_postprocess(prob, tmp_path / "seg.h5"))
    assert code == 0, err
    assert not folder.exists()


def test_segment_to_file_skips_the_chunks_kept_and_writes_the_same_volume(tmp_path,
                                                                          monkeypatch):
    """The library path of ``emseg segment``: the network runs only on the chunks not kept."""
    torch.manual_seed(0)
    model = UNet2D(base_width=2, depth=2).eval()
    raw = np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    post = pipeline.Postprocessing("seeded", {"seed_th": 0.5, "smooth_px": 1.0}, workers=1)
    options = dict(tiling=get_profile("smoke").tiling_3d, resolution=(40, 4, 4),
                   chunk_slices=1, device="cpu", progress=False)
    pipeline.segment_to_file(model, raw, tmp_path / "whole.h5", post, **options)

    job = {"test": "segment"}
    _counting(monkeypatch, stop_at=3)
    with pytest.raises(KeyboardInterrupt), PartialResults(tmp_path / "seg.h5", job) as partial:
        pipeline.segment_to_file(model, raw, tmp_path / "seg.h5", post, partial=partial,
                                 **options)
    predicted = []
    original = pipeline.predict_volume
    monkeypatch.setattr(pipeline, "predict_volume",
                        lambda *a, **k: predicted.append(None) or original(*a, **k))
    _counting(monkeypatch)
    with PartialResults(tmp_path / "seg.h5", job) as partial:
        run = pipeline.segment_to_file(model, raw, tmp_path / "seg.h5", post, partial=partial,
                                       **options)
    assert partial.kept == 2 and run.resumed_chunks == 2 and len(predicted) == 2
    np.testing.assert_array_equal(_labels(tmp_path / "seg.h5"), _labels(tmp_path / "whole.h5"))
    with h5py.File(tmp_path / "seg.h5") as a, h5py.File(tmp_path / "whole.h5") as b:
        np.testing.assert_array_equal(a[PROBABILITY_KEY][:], b[PROBABILITY_KEY][:])
    assert sorted(os.listdir(tmp_path)) == ["seg.h5", "whole.h5"]


class _RunsCodeOnLoad:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_damaged_kept_chunks_are_computed_again_with_a_warning(tmp_path, capsys, monkeypatch):
    prob = _probabilities(tmp_path / "prob.h5", shape=(8, 48, 48))
    assert _run(capsys, *_postprocess(prob, tmp_path / "whole.h5"))[0] == 0
    _counting(monkeypatch, stop_at=4)
    assert _run(capsys, *_postprocess(prob, tmp_path / "seg.h5"))[0] == 130
    kept = partial_folder(tmp_path / "seg.h5")
    truncated, pickled, misshapen = (kept / f"z{z:06d}.npz" for z in (0, 2, 4))
    truncated.write_bytes(truncated.read_bytes()[:300])
    marker = tmp_path / "code_ran"
    np.savez(pickled, labels=np.array([_RunsCodeOnLoad(marker)], dtype=object),
             prob=np.zeros((2, 48, 48), np.float32))
    np.savez(misshapen, labels=np.ones((2, 48, 40), np.uint8),
             prob=np.zeros((2, 48, 40), np.float32))

    calls = _counting(monkeypatch)
    code, out, err = _run(capsys, *_postprocess(prob, tmp_path / "seg.h5"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("emseg: warning:")]
    assert [line.split(": a chunk kept")[0] for line in warnings] == [
        f"emseg: warning: {path}" for path in (truncated, pickled, misshapen)]
    assert "Object arrays cannot be loaded" in warnings[1]
    assert "expected (2, 48, 48)" in warnings[2]
    assert len(calls) == 4 and not marker.exists()
    np.testing.assert_array_equal(_labels(tmp_path / "seg.h5"), _labels(tmp_path / "whole.h5"))
