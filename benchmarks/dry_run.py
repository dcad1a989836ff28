"""The report of ``./run_all.sh --profile P --dry-run``: what every notebook cost at the
profile's sizes, and the estimated wall time of the real run.

Usage (``run_all.sh --dry-run`` calls it at the end)::

    python benchmarks/dry_run.py --profile full --records outputs/full-dry/records
    python benchmarks/dry_run.py --profile full --records DIR --rates RESULTS.json

Per notebook, from the records the dry run left (:mod:`emseg_lib.infra.work_record`): exit code,
wall time, peak host memory (its largest process), peak GPU memory, and the measured rate of
each stage (every progress bar: training epochs of a few steps, prediction slices or tiles,
GAN iterations, transfer runs). The estimate of the real run comes from the per-step rates of
:mod:`throughput` at the profile's sizes on the same machine (measured here, trimmed to a few
steps, unless ``--rates`` gives a ``throughput.py`` result of this profile) through
:class:`estimate.Estimator`, inline and with the training sweeps on ``--gpus`` GPUs. Markdown
and JSON go to ``--results`` (default ``benchmarks/results/``) as
``<date>_<machine>_<profile>_dry_run``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import throughput
from estimate import Estimator

from emseg_lib.infra.work_record import read_records
from emseg_lib.profiles import PROFILES, get_profile

NOTEBOOKS = "notebooks.jsonl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), required=True,
                        help="the profile the dry run stood for")
    parser.add_argument("--records", type=Path, required=True,
                        help="the dry run's records folder (outputs/<profile>-dry/records)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="the dry run's runs folder: its checkpoint sizes are reported")
    parser.add_argument("--rates", type=Path, default=None,
                        help="a throughput.py JSON result of this profile (default: measure)")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if present)")
    parser.add_argument("--gpus", type=int, default=4,
                        help="GPUs the training sweeps are spread over in the second estimate")
    parser.add_argument("--results", type=Path, default=throughput.ROOT / "benchmarks" / "results",
                        help="folder of the results file")
    parser.add_argument("--cache-dir", type=Path, default=throughput.CACHE_DIR,
                        help="folder of the cached synthetic volume the rates are measured on "
                             "(run_all.sh: its data folder)")
    args = parser.parse_args(argv)
    if not (args.records / NOTEBOOKS).is_file():
        parser.error(f"--records {args.records}: no {NOTEBOOKS} there (run ./run_all.sh "
                     "--dry-run first)")
    if args.gpus < 1:
        parser.error(f"--gpus must be at least 1, got {args.gpus}")
    return args


def notebook_rows(records: Path) -> list[dict[str, Any]]:
    """One row per executed notebook: exit code, wall time, peak host and GPU memory (MiB),
    and its stages ``{desc: {"items", "seconds", "s_per_item"}}``."""
    rows = []
    for run in read_records(records / NOTEBOOKS):
        stages = read_records(records / f"{run['notebook']}.jsonl")
        gpu = [stage["peak_gpu_mb"] for stage in stages if stage["peak_gpu_mb"] is not None]
        grouped: dict[str, dict[str, float]] = {}
        for stage in stages:
            total = grouped.setdefault(stage["desc"], {"items": 0, "seconds": 0.0})
            total["items"] += stage["items"]
            total["seconds"] += stage["seconds"]
        for total in grouped.values():
            total["s_per_item"] = total["seconds"] / total["items"] if total["items"] else None
        rows.append({
            "notebook": run["notebook"], "status": run["status"], "seconds": run["seconds"],
            "peak_host_mb": max([run["peak_host_mb"]] + [s["peak_host_mb"] for s in stages]),
            "peak_gpu_mb": max(gpu) if gpu else None, "stages": grouped})
    return rows


def checkpoint_sizes(runs: Path | None) -> dict[str, Any]:
    """Disk use of a runs folder: ``{"total_mb", "checkpoints": {experiment: MiB}}``, the
    largest ``.pt`` file of each experiment (top-level folder)."""
    if runs is None or not runs.is_dir():
        return {}
    files = [path for path in runs.rglob("*") if path.is_file()]
    largest: dict[str, float] = {}
    for path in files:
        if path.suffix == ".pt":
            experiment = path.relative_to(runs).parts[0]
            largest[experiment] = max(largest.get(experiment, 0.0), path.stat().st_size / 2 ** 20)
    return {"total_mb": sum(path.stat().st_size for path in files) / 2 ** 20,
            "checkpoints": {name: round(size, 1) for name, size in sorted(largest.items())}}


def measured_rates(profile: str, device: str | None, gpus: int, cache_dir: Path
                   ) -> dict[str, Any]:
    """``throughput.py``'s measurements of ``profile``, trimmed to a few steps of each, on
    slices as wide as the profile's volume (the volume cached in ``cache_dir``)."""
    plan = get_profile(profile)
    options = ["--profile", profile, "--fit-samples", str(plan.unet2d.batch_size),
               "--epochs", "1", "--steps", "1", "--warmup", "1", "--infer-slices", "1",
               "--pp-slices", "2", "--grid-slices", "1", "--engine-gpus", str(gpus),
               "--slab-px", str(plan.synthetic_shape[2]), "--cache-dir", str(cache_dir)]
    return throughput.measure_all(throughput.parse_args(
        options + (["--device", device] if device else [])))


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value / 1024:.1f} GiB"


def _stages(stages: dict[str, dict[str, float]]) -> str:
    parts = [f"{desc} {total['items']:g} x {total['s_per_item']:.3g} s"
             for desc, total in stages.items() if total["s_per_item"] is not None]
    return "; ".join(parts) or "—"


def _hours_by_notebook(rows: list[dict[str, Any]]) -> dict[str, float]:
    hours: dict[str, float] = {}
    for row in rows:
        hours[row["notebook"]] = hours.get(row["notebook"], 0.0) + row["seconds"] / 3600
    return hours


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    env, profile = report["environment"], report["profile"]
    lines = [f"# Dry run of profile `{profile}` (`./run_all.sh --profile {profile} --dry-run`)",
             "", f"{env['date']} · CPU {env['cpu']} ({env['cores']} cores) · GPU "
             f"{env['gpu'] or '—'} · device {env['device']} · torch {env['torch']}", "",
             f"Every notebook at the `{profile}` sizes (volume {report['volume_shape']}, the "
             "profile's widths, crops, batches, tiling and grids), with a few training steps "
             "and prediction slices (`emseg_lib.profiles.dry_run`). Peak host memory: the "
             "largest process (the notebook's kernel). Stages: items x measured seconds per "
             "item of each progress bar (an epoch here is a few steps plus validation).", "",
             "| notebook | exit | wall s | peak host | peak GPU | stages |",
             "|---|---|---|---|---|---|"]
    for row in report["notebooks"]:
        lines.append(f"| {row['notebook']} | {row['status']} | {row['seconds']:.0f} | "
                     f"{_mb(row['peak_host_mb'])} | {_mb(row['peak_gpu_mb'])} | "
                     f"{_stages(row['stages'])} |")
    total_s = sum(row["seconds"] for row in report["notebooks"])
    lines += ["", f"Dry run: {total_s:.0f} s in all."]
    disk = report["disk"]
    if disk:
        largest = ", ".join(f"`{name}` {size:.0f} MiB" for name, size in
                            disk["checkpoints"].items())
        lines += ["", f"Its runs folder: {disk['total_mb']:.0f} MiB; the largest checkpoint of "
                  f"each experiment: {largest or 'none'}."]
    lines += ["",
              f"## Estimated wall time of the real `{profile}` run", "",
              f"From the per-step rates `benchmarks/throughput.py` measured at the `{profile}` "
              f"sizes on this machine ({report['rates_from']}); see `benchmarks/estimate.py` "
              "for what each row counts.", "",
              f"| notebook | hours inline | hours, sweeps as {report['gpus']} jobs at once "
              "(one GPU each) |",
              "|---|---|---|"]
    inline = _hours_by_notebook(report["estimate_inline"])
    spread = _hours_by_notebook(report["estimate_spread"])
    for notebook, hours in inline.items():
        lines.append(f"| {notebook} | {hours:.2f} | {spread[notebook]:.2f} |")
    lines.append(f"| **total** | **{sum(inline.values()):.1f}** | "
                 f"**{sum(spread.values()):.1f}** |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rates is not None:
        rates, rates_from = json.loads(args.rates.read_text()), f"from {args.rates.name}"
        if rates["profile"] != args.profile:
            sys.exit(f"dry_run.py: error: --rates {args.rates} measured profile "
                     f"{rates['profile']!r}, not {args.profile!r}")
        stylegan = rates["gans"]["stylegan_its_per_s"]  # JSON made the resolutions strings
        rates["gans"]["stylegan_its_per_s"] = {int(res): rate for res, rate in stylegan.items()}
    else:
        rates, rates_from = measured_rates(args.profile, args.device, args.gpus,
                                          args.cache_dir), \
            "measured after the notebooks"
    profile = get_profile(args.profile)
    shape = tuple(rates["volume_shape"])
    report = {
        "profile": args.profile, "environment": rates["environment"], "volume_shape": shape,
        "notebooks": notebook_rows(args.records), "disk": checkpoint_sizes(args.runs),
        "rates_from": rates_from, "gpus": args.gpus,
        "estimate_inline": Estimator(profile, shape, rates, 1).all(),
        "estimate_spread": Estimator(profile, shape, rates, args.gpus).all(), "rates": rates}
    throughput.write_results(
        args.results / f"{throughput.default_out(rates).name}_{args.profile}_dry_run",
        markdown(report), report)


if __name__ == "__main__":
    main()
