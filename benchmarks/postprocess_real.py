"""Post-processing on a real network's probabilities: speed and equality with the reference.

Usage::

    emseg train --model unet2d --data data/vnc_sstem_stack1_cremi.h5 --out runs/vnc --epochs 30
    emseg segment --checkpoint runs/vnc/best.pt --data data/vnc_sstem_stack1_cremi.h5 \\
        --out runs/vnc/seg.h5 --method thesis
    python benchmarks/postprocess_real.py --prob runs/vnc/seg.h5 --thesis 0.8 0.9 \\
        --seeded 0.85 1 --out benchmarks/results/real_data/postprocess_vnc

Segments every ``(Y, X)`` slice of the probability map (``volumes/predictions/
cell_probability`` of an ``emseg segment`` HDF5 output) with both methods, at the given
(learned) thresholds and at the defaults: with :func:`~emseg_lib.postprocess.segment_volume`
on 1 process and on every core, and with the SciPy / scikit-image code it equals
(:mod:`emseg_lib.postprocess.reference`, one process). Prints and writes (``--out`` .md and
.json) slices per second, the one-process speed-up and whether every slice's labels equal the
reference's. A measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import measure
import numpy as np

from emseg_lib.infra.atomic_files import atomic_write_text
from emseg_lib.infra.parallel import available_cores
from emseg_lib.postprocess import METHODS, segment_volume

PROB_KEY = "volumes/predictions/cell_probability"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prob", type=Path, required=True, help="emseg segment HDF5 output")
    parser.add_argument("--prob-key", default=PROB_KEY)
    parser.add_argument("--thesis", type=float, nargs=2, metavar=("SIG_TH", "EDGE_TH"),
                        help="learned thesis thresholds (the defaults are measured too)")
    parser.add_argument("--seeded", type=float, nargs=2, metavar=("SEED_TH", "SMOOTH_PX"),
                        help="learned seeded thresholds (the defaults are measured too)")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    return parser.parse_args(argv)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure_config(prob: np.ndarray, method: str, thresholds: dict[str, float]) -> dict[str, Any]:
    """Slices/s on 1 process and every core, the reference's, and slice-wise equality."""
    segment_volume(prob[:1], method, thresholds, workers=1)  # compiled code loaded
    fast, one = timed(lambda: segment_volume(prob, method, thresholds, workers=1))
    parallel, every = timed(lambda: segment_volume(prob, method, thresholds, workers=None))
    reference = measure.reference_segmenter(method, thresholds)
    slow, ref = timed(lambda: [reference(p) for p in prob])
    # segment_volume numbers ids across slices; a slice equals the reference up to an offset
    equal = all(np.array_equal(f - f.min(), r - r.min()) for f, r in zip(fast, slow,
                                                                          strict=True))
    return {"method": method, "thresholds": thresholds, "slices_per_s_1": len(prob) / one,
            "slices_per_s_all": len(prob) / every, "reference_slices_per_s": len(prob) / ref,
            "speedup_1": ref / one, "equal_to_reference": equal,
            "workers_agree": bool(np.array_equal(fast, parallel))}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Post-processing on `{result['prob']}`", "",
             f"{result['date']} · {result['cpu']} ({result['cores']} cores) · "
             f"{result['shape'][0]} slices of {result['shape'][1]} x {result['shape'][2]}", "",
             f"| method | thresholds | 1 process | {result['cores']} processes | SciPy / "
             "scikit-image code | speed-up (1 process) | equal to the reference |",
             "|---|---|---|---|---|---|---|"]
    for name, row in result["rows"].items():
        values = ", ".join(f"{k} {v:g}" for k, v in row["thresholds"].items())
        lines.append(f"| {row['method']} | {values} ({name}) | {row['slices_per_s_1']:.2f} | "
                     f"{row['slices_per_s_all']:.2f} | {row['reference_slices_per_s']:.2f} | "
                     f"{row['speedup_1']:.2f} x | "
                     f"{'every slice' if row['equal_to_reference'] else 'NO'} |")
    return "\n".join(lines) + "\n\nSlices per second.\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with h5py.File(args.prob, "r") as file:
        prob = np.asarray(file[args.prob_key][...], dtype=np.float32)
    configs = {f"{name} defaults": (name, dict(method.defaults))
               for name, method in METHODS.items()}
    if args.thesis:
        configs["thesis learned"] = ("thesis", dict(zip(("sig_th", "edge_th"), args.thesis,
                                                        strict=True)))
    if args.seeded:
        configs["seeded learned"] = ("seeded", dict(zip(("seed_th", "smooth_px"), args.seeded,
                                                        strict=True)))
    result = {"prob": str(args.prob), "shape": list(prob.shape), "cores": available_cores(),
              "cpu": measure.cpu_name(),
              "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "rows": {name: measure_config(prob, method, thresholds)
                       for name, (method, thresholds) in configs.items()}}
    report = markdown(result)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".md"), report)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
